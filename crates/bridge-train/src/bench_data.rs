//! `bridge-train bench-data`: the data pipeline against the trainer's appetite.
//!
//! - prepare throughput: raw trajectories on disk (640x480 JPEGs written with the raw writer,
//!   pickles included) through `discover` + [`prepare`] to a 128 px cache, in frames per second;
//! - loader throughput: batches per second of the background [`Loader`] at the training batch
//!   size on a memory-mapped cache of each frame size;
//! - training speed: steps per second of the pixel agent on those batches (impala-small at 64 px,
//!   impala at 128 px), and the ratio loader / trainer (the loader must stay well ahead).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bridge_data::cache::{Cache, CacheError, CacheSettings};
use bridge_data::raw::{RawEpisodeWriter, RawStep};
use bridge_data::{SamplerConfig, StoredFrame, Trajectory};
use candle_core::Device;
use mqe::{ActionNorm, Agent, EncoderKind, ModelConfig, TrainConfig};

use crate::data::BatchConverter;
use crate::fit::FitError;
use crate::loader::{Loader, LoaderConfig, LoaderError};
use crate::prepare::{
    MemorySource, PrepareError, PrepareOptions, TrajectorySource, discover_inputs, prepare,
};

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Fit(#[from] FitError),
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error("benchmark data in {path}: {reason}")]
    Setup { path: PathBuf, reason: String },
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct DataBenchOptions {
    /// Where the benchmark writes its raw data and caches: a new `bench-data-*` subdirectory
    /// of it, removed at the end unless `keep_files` (nothing else in it is touched).
    pub work_dir: PathBuf,
    /// Leave the raw data and caches on disk (their directory is printed in the table).
    pub keep_files: bool,
    /// Raw episodes written for the prepare measurement.
    pub prepare_episodes: usize,
    /// Observations per episode (Bridge: about 36).
    pub episode_len: usize,
    /// Threads of `prepare`; 0 uses every core.
    pub jobs: usize,
    /// Batch size of the loader and trainer measurements (docs/mqe.md: 256).
    pub batch_size: usize,
    /// Background loader threads.
    pub loader_threads: usize,
    /// Batches timed per loader measurement.
    pub loader_batches: usize,
    /// Training steps timed per encoder (after one warm-up step).
    pub train_steps: usize,
    /// Episodes of each synthetic cache the loader and trainer read.
    pub cache_episodes: usize,
    /// Frame sizes measured (64 -> impala-small, 128 -> impala).
    pub sizes_px: Vec<u32>,
}

impl DataBenchOptions {
    /// The documented defaults, writing under `work_dir`.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        Self {
            work_dir: work_dir.into(),
            keep_files: false,
            prepare_episodes: 40,
            episode_len: 36,
            jobs: 0,
            batch_size: 256,
            loader_threads: 2,
            loader_batches: 40,
            train_steps: 2,
            cache_episodes: 200,
            sizes_px: vec![64, 128],
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct DataBenchRow {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// How it was measured.
    pub detail: String,
}

/// Runs every measurement; rows in table order.
pub fn run(options: &DataBenchOptions, device: &Device) -> Result<Vec<DataBenchRow>, BenchError> {
    std::fs::create_dir_all(&options.work_dir).map_err(|e| setup(&options.work_dir, e))?;
    let mut scratch = tempfile::Builder::new()
        .prefix("bench-data-")
        .tempdir_in(&options.work_dir)
        .map_err(|e| setup(&options.work_dir, e))?;
    scratch.disable_cleanup(options.keep_files);
    let dir = scratch.path();
    let mut rows = vec![bench_prepare(options, dir)?];
    for &size_px in &options.sizes_px {
        rows.extend(bench_loader_and_trainer(options, dir, size_px, device)?);
    }
    if options.keep_files {
        rows.push(DataBenchRow {
            name: "files kept in".into(),
            value: 0.0,
            unit: "",
            detail: dir.display().to_string(),
        });
    }
    Ok(rows)
}

fn setup(path: &Path, reason: impl ToString) -> BenchError {
    BenchError::Setup {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// A 640x480 scene-like frame (smooth gradients, blocks, fine texture) as JPEG at quality 90:
/// decoding cost depends on the content, so the frame is not flat.
pub fn synthetic_jpeg(seed: u32, width_px: u32, height_px: u32) -> Result<Vec<u8>, String> {
    let mut rgb = Vec::with_capacity((width_px * height_px * 3) as usize);
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    for y in 0..height_px {
        for x in 0..width_px {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state % 24) as u8;
            let block = if (x / 80 + y / 60 + seed).is_multiple_of(3) {
                60
            } else {
                0
            };
            rgb.push(((x * 255 / width_px) as u8).saturating_add(noise));
            rgb.push(((y * 255 / height_px) as u8).saturating_sub(block));
            rgb.push((((x + y + seed * 7) % 256) as u8 / 2).saturating_add(noise));
        }
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(&rgb, width_px, height_px, image::ExtendedColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn raw_step(jpeg: Vec<u8>, t: usize) -> RawStep {
    let s = t as f64 * 0.01;
    RawStep {
        jpeg,
        state: [0.3 + s, 0.0, 0.15 - s, 0.0, 0.0, s, 1.0],
        qpos: [0.0; 6],
        qvel: [0.0; 6],
        joint_effort: [0.0; 6],
        eef_transform: [
            [1.0, 0.0, 0.0, 0.3],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.15],
            [0.0, 0.0, 0.0, 1.0],
        ],
        time_stamp_s: t as f64 * 0.2,
    }
}

/// Writes `episodes` raw trajectories of `len` 640x480 JPEG observations under `root`.
pub fn write_raw_episodes(root: &Path, episodes: usize, len: usize) -> Result<(), BenchError> {
    let frames: Vec<Vec<u8>> = (0..8)
        .map(|seed| synthetic_jpeg(seed, 640, 480))
        .collect::<Result<_, _>>()
        .map_err(|e| setup(root, e))?;
    for e in 0..episodes {
        let dir = root.join(format!("traj_group0/traj{e}"));
        let mut writer =
            RawEpisodeWriter::create(&dir, Some("bench task")).map_err(|err| setup(&dir, err))?;
        for t in 0..len {
            let jpeg = frames[(e + t) % frames.len()].clone();
            writer
                .push_observation(&raw_step(jpeg, t))
                .map_err(|err| setup(&dir, err))?;
            if t + 1 < len {
                let action = [0.01, -0.01, 0.0, 0.0, 0.0, 0.02, (t % 2) as f64];
                writer.push_action(action).map_err(|err| setup(&dir, err))?;
            }
        }
        writer
            .finish(&bridge_data::Outcome::Completed)
            .map_err(|err| setup(&dir, err))?;
    }
    Ok(())
}

fn settings(size_px: u32) -> CacheSettings {
    CacheSettings::whole_frame(size_px)
}

fn bench_prepare(options: &DataBenchOptions, dir: &Path) -> Result<DataBenchRow, BenchError> {
    let raw = dir.join("raw");
    write_raw_episodes(&raw, options.prepare_episodes, options.episode_len)?;
    let cache_dir = dir.join("cache-prepare-128");
    let settings = settings(128);
    let sources = discover_inputs(std::slice::from_ref(&raw), &settings)?;
    let prepare_options = PrepareOptions {
        jobs: options.jobs,
        ..PrepareOptions::new(settings)
    };
    let report = prepare(&sources, &cache_dir, &prepare_options)?;
    Ok(DataBenchRow {
        name: "prepare 640x480 JPEG -> 128x128 (raw layout on disk)".into(),
        value: report.frames_per_s(),
        unit: "frames/s",
        detail: format!(
            "{} frames, {} threads, {:.2} s",
            report.frames_added, report.jobs, report.elapsed_s
        ),
    })
}

/// A synthetic cache of `episodes` x `len` frames of `size_px`, frames made on the fly.
fn synthetic_cache(
    dir: &Path,
    size_px: u32,
    episodes: usize,
    len: usize,
) -> Result<Cache, BenchError> {
    let side = size_px as usize;
    let per_source = 20;
    let sources: Vec<Arc<dyn TrajectorySource>> = (0..episodes.div_ceil(per_source))
        .map(|s| {
            let count = per_source.min(episodes - s * per_source);
            let source = MemorySource::new(format!("/bench/source{s}"), "synthetic", move || {
                Ok((0..count)
                    .map(|e| synthetic_trajectory(s * per_source + e, side, len))
                    .collect())
            });
            Arc::new(source) as Arc<dyn TrajectorySource>
        })
        .collect();
    prepare(&sources, dir, &PrepareOptions::new(settings(size_px)))?;
    Ok(Cache::open(dir)?)
}

/// One trajectory of `len` RGB frames already at `side` (squashing copies them).
pub fn synthetic_trajectory(index: usize, side: usize, len: usize) -> Trajectory {
    let frame = |t: usize| StoredFrame::Rgb {
        width_px: side as u32,
        height_px: side as u32,
        data: (0..side * side * 3)
            .map(|i| ((i * 31 + t * 17 + index * 101) % 251) as u8)
            .collect(),
    };
    let state = |t: usize| {
        let s = t as f32 * 0.01;
        [0.3 + s, 0.0, 0.15 - s, 0.0, 0.0, s, 1.0]
    };
    Trajectory {
        source: PathBuf::from(format!("/bench/traj{index}")),
        frames: (0..len).map(frame).collect(),
        states: (0..len).map(state).collect(),
        actions: (0..len - 1)
            .map(|t| {
                let x = ((index + t) as f32 * 0.37).sin() * 0.02;
                [x, -x, 0.5 * x, 0.0, 0.0, 2.0 * x, (t % 2) as f32]
            })
            .collect(),
        language: None,
        step_kinds: Vec::new(),
        outcome: None,
    }
}

fn bench_loader_and_trainer(
    options: &DataBenchOptions,
    work_dir: &Path,
    size_px: u32,
    device: &Device,
) -> Result<Vec<DataBenchRow>, BenchError> {
    let dir = work_dir.join(format!("cache-synthetic-{size_px}"));
    let cache = synthetic_cache(&dir, size_px, options.cache_episodes, options.episode_len)?;
    let data = cache.dataset()?;
    let encoder = if size_px as usize >= crate::config::IMPALA_FROM_PX {
        EncoderKind::Impala
    } else {
        EncoderKind::ImpalaSmall
    };
    let encoder_name = match encoder {
        EncoderKind::Impala => "impala",
        EncoderKind::ImpalaSmall => "impala-small",
    };
    let train = TrainConfig {
        batch_size: options.batch_size,
        ..TrainConfig::bridge()
    };
    let sampler = SamplerConfig {
        batch_size: options.batch_size,
        ..SamplerConfig::bridge_pixels()
    };
    let loader_cfg = LoaderConfig {
        sampler,
        seed: 0,
        threads: options.loader_threads,
        depth: 0,
    };
    let batches = options.loader_batches.max(1) as u64;
    let mut loader = Loader::start(&data, &loader_cfg, 0, batches + 1)?;
    loader.next_batch()?; // threads started, first batch out
    let started = Instant::now();
    for _ in 0..batches {
        loader.next_batch()?;
    }
    let loader_rate = batches as f64 / started.elapsed().as_secs_f64();
    drop(loader);

    let mut model = ModelConfig::pixels(size_px as usize, 3, 7);
    model.encoder = encoder;
    let mut agent = Agent::new(model, train, device).map_err(FitError::from)?;
    let mut loader = Loader::start(&data, &loader_cfg, 0, options.train_steps as u64 + 1)?;
    let mut converter = BatchConverter::new(device, ActionNorm::identity(7));
    let batch = converter
        .convert(loader.next_batch()?)
        .map_err(FitError::from)?;
    agent.train_step(&batch).map_err(FitError::from)?; // warm-up
    let started = Instant::now();
    for _ in 0..options.train_steps {
        let batch = converter
            .convert(loader.next_batch()?)
            .map_err(FitError::from)?;
        agent.train_step(&batch).map_err(FitError::from)?;
    }
    device
        .synchronize()
        .map_err(|e| FitError::from(mqe::MqeError::from(e)))?;
    let train_rate = options.train_steps as f64 / started.elapsed().as_secs_f64();
    let cache_mb = cache.frames().len() as f64 / 1e6;
    let what = format!("{size_px} px, batch {}", options.batch_size);
    Ok(vec![
        DataBenchRow {
            name: format!("loader, {what}"),
            value: loader_rate,
            unit: "batches/s",
            detail: format!(
                "{} threads, {batches} batches from a {cache_mb:.0} MB mapped cache",
                options.loader_threads
            ),
        },
        DataBenchRow {
            name: format!("train step {encoder_name}, {what}"),
            value: train_rate,
            unit: "steps/s",
            detail: format!("{} timed steps on {device:?}", options.train_steps),
        },
        DataBenchRow {
            name: format!("loader / trainer, {what}"),
            value: loader_rate / train_rate,
            unit: "x",
            detail: "must be >= 5".into(),
        },
    ])
}

/// The rows as an aligned text table.
pub fn format_table(rows: &[DataBenchRow]) -> String {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut out = format!(
        "{:<width$}  {:>12}  {:<9}  {}\n",
        "measure", "value", "unit", "how"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<width$}  {:>12.3}  {:<9}  {}\n",
            r.name, r.value, r.unit, r.detail
        ));
    }
    out
}

/// This process's anonymous resident memory (`RssAnon` of `/proc/self/status`), in KiB: what
/// a memory-mapped cache does not add to. None where /proc is unavailable.
pub fn rss_anon_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_jpegs_decode_at_their_size() {
        let jpeg = synthetic_jpeg(3, 64, 48).unwrap();
        let image = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((image.width(), image.height()), (64, 48));
    }

    #[test]
    fn a_tiny_run_measures_every_stage_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let options = DataBenchOptions {
            prepare_episodes: 1,
            episode_len: 3,
            batch_size: 4,
            loader_batches: 2,
            train_steps: 1,
            cache_episodes: 3,
            sizes_px: vec![16],
            ..DataBenchOptions::new(dir.path())
        };
        let rows = run(&options, &Device::Cpu).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(rows.len(), 4, "{names:?}");
        assert!(rows[0].detail.starts_with("3 frames"), "{:?}", rows[0]);
        assert!(
            rows.iter().all(|r| r.value.is_finite() && r.value > 0.0),
            "{rows:?}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "scratch removed"
        );
    }

    #[test]
    fn anonymous_memory_is_readable_here() {
        let kib = rss_anon_kib().unwrap();
        assert!(kib > 0);
    }

    #[test]
    fn table_lists_every_row() {
        let rows = [DataBenchRow {
            name: "loader".into(),
            value: 12.5,
            unit: "batches/s",
            detail: "2 threads".into(),
        }];
        let table = format_table(&rows);
        assert!(
            table.contains("12.500") && table.contains("batches/s"),
            "{table}"
        );
    }
}
