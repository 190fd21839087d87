//! `bridge-train prepare`: BridgeData sources (raw trajectory directories, TFRecord shards,
//! NumPy releases) decoded once, cropped (when the settings name a crop) and squashed to the
//! training size with [`camera::preprocess::ModelView`] (what `bridge-run` applies at
//! deployment), and appended to a
//! [`bridge_data::cache`] directory.
//!
//! - Every core: sources of a chunk, the trajectories of a source and the frames of a
//!   trajectory are all decoded in parallel (one rayon pool of `jobs` threads).
//! - Interruptible: rows are appended in source order and committed (manifest replaced
//!   atomically) every `commit_interval_s` and at the end. A kill loses at most the work since the
//!   last commit; the next run skips the committed sources and continues, producing the same
//!   bytes as an uninterrupted run over the same sources.
//! - Incremental: a rerun with more inputs reads only the sources the cache has not recorded.
//!   A recorded source whose files changed since is reported and kept as cached (rows are never
//!   rewritten); one that failed before is read again when its files changed.
//! - Robust: a source that cannot be read (corrupt pickle, record, truncated file) or a
//!   trajectory with a frame that cannot be decoded is reported with its path, counted in the
//!   manifest and skipped; the run goes on.
//! - Memory: at most one chunk of sources (`chunk_sources`, default twice the threads) is held
//!   decoded at a time; the rest is on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bridge_data::cache::{
    CacheError, CacheSettings, CacheWriter, Manifest, PreparedSource, PreparedTrajectory,
    SkipRecord, SourceStatus, source_fingerprint,
};
use bridge_data::provenance::Collector;
use bridge_data::sources::{self, ActionRecompute, CameraLag, ReadOptions, Source};
use bridge_data::{StoredFrame, Trajectory};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

/// Why `prepare` stopped (a bad source never stops it: it is skipped and reported).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("input {path}: {reason}")]
    Input { path: PathBuf, reason: String },
    #[error("setting `{field}` = `{value}`: expected {expected}")]
    Setting {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("could not start {jobs} worker threads: {reason}")]
    Threads { jobs: usize, reason: String },
}

/// Something that yields encoded trajectories: a Bridge source on disk
/// ([`discover_inputs`]), or trajectories built in memory (tests, benchmarks).
pub trait TrajectorySource: Send + Sync {
    /// Identifies the source in the cache journal (for files: the canonical path).
    fn path(&self) -> &Path;
    /// The input the source was found under: split names are the trajectories' provenance
    /// relative to it, so a dataset moved elsewhere keeps its split.
    fn root(&self) -> &Path;
    /// Content fingerprint recorded with the source ([`source_fingerprint`] for files).
    fn fingerprint(&self) -> Result<String, String>;
    /// Reads the trajectories (frames still encoded); the error names the file at fault.
    fn read(&self) -> Result<Vec<Trajectory>, String>;
}

/// A source found by [`bridge_data::sources::discover`], read with fixed options.
#[derive(Debug, Clone)]
pub struct DiskSource {
    source: Source,
    root: PathBuf,
    options: ReadOptions,
}

impl TrajectorySource for DiskSource {
    fn path(&self) -> &Path {
        self.source.path()
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn fingerprint(&self) -> Result<String, String> {
        source_fingerprint(self.source.path()).map_err(|e| e.to_string())
    }

    fn read(&self) -> Result<Vec<Trajectory>, String> {
        self.source.read(&self.options).map_err(|e| e.to_string())
    }
}

/// Trajectories made in memory on demand (tests, benchmarks): `make` runs at each read, so a
/// large synthetic dataset is never held whole.
pub struct MemorySource {
    path: PathBuf,
    root: PathBuf,
    fingerprint: String,
    make: MakeTrajectories,
}

type MakeTrajectories = Box<dyn Fn() -> Result<Vec<Trajectory>, String> + Send + Sync>;

impl MemorySource {
    /// A source named `path` (its trajectories' split names are relative to its parent).
    pub fn new(
        path: impl Into<PathBuf>,
        fingerprint: impl Into<String>,
        make: impl Fn() -> Result<Vec<Trajectory>, String> + Send + Sync + 'static,
    ) -> Self {
        let path = path.into();
        let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Self {
            path,
            root,
            fingerprint: fingerprint.into(),
            make: Box::new(make),
        }
    }
}

impl TrajectorySource for MemorySource {
    fn path(&self) -> &Path {
        &self.path
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn fingerprint(&self) -> Result<String, String> {
        Ok(self.fingerprint.clone())
    }

    fn read(&self) -> Result<Vec<Trajectory>, String> {
        (self.make)()
    }
}

/// The readers' options of cache `settings`.
pub fn read_options(settings: &CacheSettings) -> Result<ReadOptions, PrepareError> {
    let recompute_actions = match settings.recompute_actions.as_str() {
        "off" => ActionRecompute::Off,
        "state-difference" => ActionRecompute::StateDifference,
        "relative-rotation" => ActionRecompute::RelativeRotation,
        other => {
            return Err(PrepareError::Setting {
                field: "recompute_actions",
                value: other.into(),
                expected: "off, state-difference or relative-rotation",
            });
        }
    };
    let camera_lag = match settings.camera_lag.as_str() {
        "auto" => CameraLag::Auto,
        "correct" => CameraLag::Correct,
        "keep" => CameraLag::Keep,
        other => {
            return Err(PrepareError::Setting {
                field: "camera_lag",
                value: other.into(),
                expected: "auto, correct or keep",
            });
        }
    };
    Ok(ReadOptions {
        camera: settings.camera,
        binarize_gripper: settings.binarise_gripper,
        recompute_actions,
        camera_lag,
    })
}

/// A camera given as `images0`, `image_0` or `0`.
pub fn parse_camera(text: &str) -> Result<usize, PrepareError> {
    let digits = text
        .strip_prefix("images")
        .or_else(|| text.strip_prefix("image_"))
        .unwrap_or(text);
    digits.parse().map_err(|_| PrepareError::Setting {
        field: "camera",
        value: text.into(),
        expected: "a camera such as images0, image_0 or 0",
    })
}

/// Every source under each input, in input order then path order; paths canonical.
pub fn discover_inputs(
    inputs: &[PathBuf],
    settings: &CacheSettings,
) -> Result<Vec<Arc<dyn TrajectorySource>>, PrepareError> {
    let options = read_options(settings)?;
    let mut found: Vec<Arc<dyn TrajectorySource>> = Vec::new();
    for input in inputs {
        let root = input.canonicalize().map_err(|e| PrepareError::Input {
            path: input.clone(),
            reason: e.to_string(),
        })?;
        let sources = sources::discover(&root).map_err(|e| PrepareError::Input {
            path: input.clone(),
            reason: e.to_string(),
        })?;
        let root_dir = if root.is_dir() {
            root.clone()
        } else {
            root.parent().map_or(root.clone(), Path::to_path_buf)
        };
        for source in sources {
            found.push(Arc::new(DiskSource {
                source,
                root: root_dir.clone(),
                options: options.clone(),
            }));
        }
    }
    Ok(found)
}

/// How to run.
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// Frame size and reader settings; must equal an existing cache's.
    pub settings: CacheSettings,
    /// Worker threads; 0 uses every core.
    pub jobs: usize,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Seconds between commits (a kill loses at most about this much work).
    pub commit_interval_s: f64,
    /// Sources decoded per chunk (the memory bound); 0 picks twice the threads.
    pub chunk_sources: usize,
}

impl PrepareOptions {
    /// Defaults: every core, a commit every 10 s, chunks of twice the threads, no bar.
    pub fn new(settings: CacheSettings) -> Self {
        Self {
            settings,
            jobs: 0,
            progress: false,
            commit_interval_s: 10.0,
            chunk_sources: 0,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct PrepareReport {
    /// Sources given.
    pub sources_found: usize,
    /// Already recorded with the same fingerprint (cached, or failed and unchanged), or given
    /// twice (overlapping inputs).
    pub sources_already_recorded: usize,
    /// Recorded before but changed since: kept as cached (rows are never rewritten).
    pub sources_changed: Vec<String>,
    /// Sources read (or attempted) by this run.
    pub sources_read: usize,
    /// Trajectories appended by this run.
    pub trajectories_added: u64,
    /// Frames appended by this run.
    pub frames_added: u64,
    /// Sources this run could not read, and trajectories it skipped, with the reasons.
    pub skipped: Vec<SkipRecord>,
    /// Wall time of the run.
    pub elapsed_s: f64,
    /// Worker threads used.
    pub jobs: usize,
    /// The manifest after the final commit.
    pub manifest: Manifest,
}

impl PrepareReport {
    /// Frames decoded and written per second.
    pub fn frames_per_s(&self) -> f64 {
        self.frames_added as f64 / self.elapsed_s.max(1e-9)
    }

    /// The end-of-run summary.
    pub fn summary(&self) -> String {
        let m = &self.manifest;
        let mut out = format!(
            "read {} of {} sources ({} already cached) in {:.1} s with {} threads: +{} trajectories, +{} frames ({:.0} frames/s); skipped this run: {}\n\
             cache: {} trajectories, {} frames of {}x{} px, {} sources, {} failed sources, {} skipped trajectories",
            self.sources_read,
            self.sources_found,
            self.sources_already_recorded,
            self.elapsed_s,
            self.jobs,
            self.trajectories_added,
            self.frames_added,
            self.frames_per_s(),
            self.skipped.len(),
            m.counts.episodes,
            m.counts.rows,
            m.settings.size_px,
            m.settings.size_px,
            m.counts.sources,
            m.counts.failed_sources,
            m.counts.skipped_trajectories,
        );
        for s in &self.skipped {
            out.push_str(&format!("\n  skipped {}: {}", s.path, s.reason));
        }
        for path in &self.sources_changed {
            out.push_str(&format!(
                "\n  changed since cached (kept the cached copy; prepare a new cache to refresh it): {path}"
            ));
        }
        out
    }
}

/// Appends every source not yet recorded in the cache at `out` (created if needed).
pub fn prepare(
    sources: &[Arc<dyn TrajectorySource>],
    out: &Path,
    options: &PrepareOptions,
) -> Result<PrepareReport, PrepareError> {
    let started = Instant::now();
    let jobs = if options.jobs == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        options.jobs
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .thread_name(|i| format!("prepare-{i}"))
        .build()
        .map_err(|e| PrepareError::Threads {
            jobs,
            reason: e.to_string(),
        })?;
    let mut writer = CacheWriter::open(out, options.settings.clone())?;
    let plan = pool.install(|| plan(sources, &writer));
    let bar = progress_bar(options.progress, plan.pending.len() as u64);
    for path in &plan.changed {
        bar.suspend(|| {
            tracing::warn!("{path}: changed since it was cached; keeping the cached copy")
        });
    }
    let mut report = PrepareReport {
        sources_found: sources.len(),
        sources_already_recorded: plan.already,
        sources_changed: plan.changed,
        sources_read: plan.pending.len(),
        trajectories_added: 0,
        frames_added: 0,
        skipped: Vec::new(),
        elapsed_s: 0.0,
        jobs,
        manifest: writer.manifest().clone(),
    };
    let chunk = if options.chunk_sources == 0 {
        2 * jobs
    } else {
        options.chunk_sources
    };
    let frames_done = AtomicU64::new(0);
    let crop = options
        .settings
        .crop_px
        .map(camera::preprocess::Crop::from_array)
        .transpose()
        .map_err(|_| PrepareError::Setting {
            field: "crop_px",
            value: format!("{:?}", options.settings.crop_px),
            expected: "x, y, width, height with width and height >= 1",
        })?;
    let context = Context {
        view: camera::preprocess::ModelView {
            size_px: options.settings.size_px,
            crop,
        },
        camera: options.settings.camera,
        keep_aborted: options.settings.keep_aborted,
        keep_intervened: options.settings.keep_intervened,
        bar: &bar,
        frames_done: &frames_done,
        started,
    };
    let mut last_commit = Instant::now();
    for part in plan.pending.chunks(chunk) {
        let prepared: Vec<PreparedSource> = pool.install(|| {
            part.par_iter()
                .map(|(source, hash)| prepare_source(source.as_ref(), hash, &context))
                .collect()
        });
        for source in prepared {
            record(&mut report, &source, &bar);
            writer.append(source)?;
        }
        if last_commit.elapsed().as_secs_f64() >= options.commit_interval_s {
            writer.commit()?;
            last_commit = Instant::now();
        }
    }
    report.manifest = writer.commit()?.clone();
    bar.finish_and_clear();
    report.elapsed_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Which sources to read, with their fingerprints.
struct Plan {
    pending: Vec<(Arc<dyn TrajectorySource>, Result<String, String>)>,
    already: usize,
    changed: Vec<String>,
}

fn plan(sources: &[Arc<dyn TrajectorySource>], writer: &CacheWriter) -> Plan {
    let hashes: Vec<Result<String, String>> = sources.par_iter().map(|s| s.fingerprint()).collect();
    let mut plan = Plan {
        pending: Vec::new(),
        already: 0,
        changed: Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    for (source, hash) in sources.iter().zip(hashes) {
        let key = source.path().to_string_lossy().into_owned();
        if !seen.insert(key.clone()) {
            // Found under two overlapping inputs: cache it once.
            plan.already += 1;
            continue;
        }
        match (writer.status(&key), &hash) {
            (SourceStatus::New, _) => plan.pending.push((source.clone(), hash)),
            (SourceStatus::Recorded { hash: old, .. }, Ok(new)) if &old == new => plan.already += 1,
            (SourceStatus::Recorded { failed: true, .. }, _) => {
                plan.pending.push((source.clone(), hash))
            }
            (SourceStatus::Recorded { failed: false, .. }, _) => plan.changed.push(key),
        }
    }
    plan
}

/// Shared by the workers.
struct Context<'a> {
    /// Crop and size of the training frames.
    view: camera::preprocess::ModelView,
    camera: usize,
    /// `CacheSettings::keep_aborted` and `keep_intervened`.
    keep_aborted: bool,
    keep_intervened: bool,
    bar: &'a ProgressBar,
    frames_done: &'a AtomicU64,
    started: Instant,
}

fn prepare_source(
    source: &dyn TrajectorySource,
    hash: &Result<String, String>,
    context: &Context<'_>,
) -> PreparedSource {
    let path = source.path().to_string_lossy().into_owned();
    let read = hash
        .as_ref()
        .map_err(|e| format!("cannot fingerprint: {e}"))
        .and_then(|_| source.read());
    let mut prepared = PreparedSource {
        path,
        hash: hash.clone().unwrap_or_else(|_| "unavailable".into()),
        failed: None,
        trajectories: Vec::new(),
        skipped: Vec::new(),
        simulated: false,
        intervened_steps_left_out: 0,
    };
    match bridge_data::provenance::collector_of(source.path()) {
        Ok(collector) => prepared.simulated = collector == Collector::Simulator,
        Err(e) => {
            prepared.failed = Some(e.to_string());
            return prepared;
        }
    }
    match read {
        Err(reason) => prepared.failed = Some(reason),
        Ok(trajectories) => {
            let mut parts = Vec::new();
            for trajectory in trajectories {
                match screen(trajectory, context) {
                    Ok(screened) => {
                        prepared.intervened_steps_left_out += screened.left_out as u64;
                        parts.extend(screened.parts);
                    }
                    Err(skip) => prepared.skipped.push(skip),
                }
            }
            let results: Vec<Result<PreparedTrajectory, SkipRecord>> = parts
                .into_par_iter()
                .map(|part| prepare_trajectory(part, source.root(), context))
                .collect();
            for result in results {
                match result {
                    Ok(t) => prepared.trajectories.push(t),
                    Err(skip) => prepared.skipped.push(skip),
                }
            }
        }
    }
    context.bar.inc(1);
    let frames = context.frames_done.load(Ordering::Relaxed);
    let rate = frames as f64 / context.started.elapsed().as_secs_f64().max(1e-9);
    context
        .bar
        .set_message(format!("{frames} frames, {rate:.0} frames/s"));
    prepared
}

/// What of one recorded episode goes into the cache.
struct Screened {
    parts: Vec<Part>,
    /// Steps left out because the operator acted in them.
    left_out: usize,
}

/// A trajectory, or the run of it between operator interventions (`steps`).
struct Part {
    trajectory: Trajectory,
    steps: Option<std::ops::Range<usize>>,
}

/// Skips an aborted episode and splits one around its intervened steps, unless the settings
/// keep them.
fn screen(trajectory: Trajectory, context: &Context<'_>) -> Result<Screened, SkipRecord> {
    if let Some(bridge_data::Outcome::Aborted { reason }) = &trajectory.outcome
        && !context.keep_aborted
    {
        return Err(SkipRecord {
            path: trajectory.source.to_string_lossy().into_owned(),
            reason: format!("aborted episode ({reason}); --keep-aborted keeps it"),
        });
    }
    let left_out = trajectory.intervened_steps();
    if left_out == 0 || context.keep_intervened {
        let parts = vec![Part {
            trajectory,
            steps: None,
        }];
        return Ok(Screened { parts, left_out: 0 });
    }
    let parts = trajectory
        .policy_runs()
        .into_iter()
        .map(|steps| Part {
            trajectory: trajectory.segment(steps.clone()),
            steps: Some(steps),
        })
        .collect();
    Ok(Screened { parts, left_out })
}

/// Decodes and squashes one trajectory (or part of one), or says why it is skipped.
fn prepare_trajectory(
    part: Part,
    root: &Path,
    context: &Context<'_>,
) -> Result<PreparedTrajectory, SkipRecord> {
    let Part { trajectory, steps } = part;
    let mut provenance = trajectory.source.to_string_lossy().into_owned();
    if let Some(steps) = steps {
        // The same episode's parts share its split name (below), so they land in one split.
        provenance.push_str(&format!("#steps{}-{}", steps.start, steps.end));
    }
    let skip = |reason: String| SkipRecord {
        path: provenance.clone(),
        reason,
    };
    let rows = trajectory.frames.len();
    if trajectory.states.len() != rows || trajectory.actions.len() + 1 != rows || rows < 2 {
        return Err(skip(format!(
            "{rows} frames, {} states, {} actions: expected T + 1 frames and states for T >= 1 actions",
            trajectory.states.len(),
            trajectory.actions.len()
        )));
    }
    let frame_len = context.view.input_len();
    let mut frames = vec![0u8; rows * frame_len];
    let outcomes: Vec<Result<(), String>> = frames
        .par_chunks_mut(frame_len)
        .zip(trajectory.frames.par_iter())
        .map(|(out, frame)| squash_frame(frame, &context.view, out))
        .collect();
    if let Some((t, reason)) = outcomes
        .iter()
        .enumerate()
        .find_map(|(t, r)| r.as_ref().err().map(|e| (t, e)))
    {
        return Err(skip(format!(
            "frame {t} (camera images{}): {reason}",
            context.camera
        )));
    }
    let split_name = trajectory
        .source
        .strip_prefix(root)
        .unwrap_or(&trajectory.source)
        .to_string_lossy()
        .into_owned();
    let prepared = PreparedTrajectory {
        provenance: provenance.clone(),
        split_name,
        language: trajectory.language,
        frames,
        states: trajectory.states,
        actions: trajectory.actions,
    };
    prepared.check(frame_len).map_err(|e| skip(e.to_string()))?;
    context
        .frames_done
        .fetch_add(rows as u64, Ordering::Relaxed);
    Ok(prepared)
}

/// One frame, decoded if needed, cropped and squashed by `view`, into `out`.
fn squash_frame(
    frame: &StoredFrame,
    view: &camera::preprocess::ModelView,
    out: &mut [u8],
) -> Result<(), String> {
    let mut squashed = Vec::with_capacity(out.len());
    match frame {
        StoredFrame::Jpeg(bytes) => view.apply_encoded(bytes, &mut squashed),
        StoredFrame::Rgb {
            width_px,
            height_px,
            data,
        } => view.apply(data, *width_px, *height_px, &mut squashed),
    }
    .map_err(|e| e.to_string())?;
    if squashed.len() != out.len() {
        return Err(format!(
            "squashed to {} bytes, expected {}",
            squashed.len(),
            out.len()
        ));
    }
    out.copy_from_slice(&squashed);
    Ok(())
}

/// Counts a source into the report and says what went wrong with it, as it happens.
fn record(report: &mut PrepareReport, source: &PreparedSource, bar: &ProgressBar) {
    report.trajectories_added += source.trajectories.len() as u64;
    report.frames_added += source
        .trajectories
        .iter()
        .map(|t| t.states.len() as u64)
        .sum::<u64>();
    if let Some(reason) = &source.failed {
        bar.suspend(|| tracing::warn!("skipped source {}: {reason}", source.path));
        report.skipped.push(SkipRecord {
            path: source.path.clone(),
            reason: reason.clone(),
        });
    }
    for skip in &source.skipped {
        bar.suspend(|| tracing::warn!("skipped trajectory {}: {}", skip.path, skip.reason));
        report.skipped.push(skip.clone());
    }
}

fn progress_bar(show: bool, sources: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(sources);
    let template = "{elapsed_precise} [{bar:30}] {pos}/{len} sources, eta {eta} {msg}";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cameras_and_reader_settings_parse() {
        assert_eq!(parse_camera("images0").unwrap(), 0);
        assert_eq!(parse_camera("image_2").unwrap(), 2);
        assert_eq!(parse_camera("1").unwrap(), 1);
        let err = parse_camera("wrist").unwrap_err();
        assert!(err.to_string().contains("wrist"), "{err}");
        let mut settings = CacheSettings {
            size_px: 64,
            camera: 1,
            binarise_gripper: true,
            recompute_actions: "state-difference".into(),
            camera_lag: "keep".into(),
            crop_px: None,
            keep_aborted: false,
            keep_intervened: false,
        };
        let options = read_options(&settings).unwrap();
        assert_eq!(options.camera, 1);
        assert!(options.binarize_gripper);
        assert_eq!(options.recompute_actions, ActionRecompute::StateDifference);
        assert_eq!(options.camera_lag, CameraLag::Keep);
        settings.recompute_actions = "sometimes".into();
        let err = read_options(&settings).unwrap_err();
        assert!(err.to_string().contains("recompute_actions"), "{err}");
    }

    #[test]
    fn rgb_frames_are_squashed_and_bad_jpegs_explained() {
        let mut out = vec![0u8; 4 * 4 * 3];
        let rgb = StoredFrame::Rgb {
            width_px: 8,
            height_px: 6,
            data: vec![200; 8 * 6 * 3],
        };
        squash_frame(&rgb, &4.into(), &mut out).unwrap();
        assert!(out.iter().all(|&v| v == 200));
        let err = squash_frame(
            &StoredFrame::Jpeg(vec![0xff, 0xd8, 1, 2]),
            &4.into(),
            &mut out,
        )
        .unwrap_err();
        assert!(err.contains("decode"), "{err}");
    }
}
