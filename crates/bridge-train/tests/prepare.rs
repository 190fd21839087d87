//! `prepare` on small in-memory trajectories with real JPEG frames: the cache it writes, an
//! interrupted run resumed, incremental additions, corrupt and changed sources, and a short
//! `fit` on the result whose checkpoint carries the cache's action normalisation.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bridge_data::cache::{
    ACTIONS_FILE, Cache, CacheSettings, FRAMES_FILE, GRIPPER_DIM, STATES_FILE,
};
use bridge_data::{StoredFrame, Trajectory};
use bridge_train::config::{DataTraits, Override, RunConfig, resolve};
use bridge_train::data::action_norm_from_bounds;
use bridge_train::fit::{FitOptions, fit};
use bridge_train::prepare::{MemorySource, PrepareOptions, TrajectorySource, prepare};
use candle_core::Device;
use mqe::{Agent, EncoderKind, ObsKind};

const SIZE_PX: u32 = 16;

/// A 40x30 JPEG whose colour encodes (episode, t), so frames are told apart after squashing.
fn jpeg(episode: usize, t: usize) -> Vec<u8> {
    let (w, h) = (40u32, 30u32);
    let colour = [
        (episode * 40 % 256) as u8,
        (t * 30 % 256) as u8,
        ((episode + t) * 17 % 256) as u8,
    ];
    let rgb: Vec<u8> = (0..w * h).flat_map(|_| colour).collect();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
        .encode(&rgb, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn trajectory(episode: usize, len: usize) -> Trajectory {
    Trajectory {
        source: PathBuf::from(format!("/data/run/traj{episode}")),
        frames: (0..len)
            .map(|t| StoredFrame::Jpeg(jpeg(episode, t)))
            .collect(),
        states: (0..len)
            .map(|t| [t as f32, episode as f32, 0.1, 0.0, 0.0, 0.0, 1.0])
            .collect(),
        actions: (0..len - 1)
            .map(|t| {
                let x = ((episode * 7 + t) as f32 * 0.9).sin() * 0.05;
                [x, -x, 0.3 * x, 0.1 * x, 0.0, -0.2 * x, (t % 2) as f32]
            })
            .collect(),
        language: Some(format!("task {episode}")),
        step_kinds: Vec::new(),
        outcome: None,
    }
}

/// Source `i` holds one trajectory of 4 + i % 3 observations; `reads` counts its reads.
fn source(i: usize, reads: &Arc<AtomicUsize>) -> Arc<dyn TrajectorySource> {
    let reads = reads.clone();
    Arc::new(MemorySource::new(
        format!("/data/run/traj{i}"),
        format!("v1-{i}"),
        move || {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok(vec![trajectory(i, 4 + i % 3)])
        },
    ))
}

fn sources(
    range: std::ops::Range<usize>,
    reads: &Arc<AtomicUsize>,
) -> Vec<Arc<dyn TrajectorySource>> {
    range.map(|i| source(i, reads)).collect()
}

fn options() -> PrepareOptions {
    PrepareOptions {
        jobs: 2,
        chunk_sources: 2,
        commit_interval_s: 0.0,
        ..PrepareOptions::new(CacheSettings::whole_frame(SIZE_PX))
    }
}

fn file(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap()
}

/// Same frames, states, actions and trajectory records.
fn assert_same_cache(a: &Path, b: &Path) {
    for name in [FRAMES_FILE, STATES_FILE, ACTIONS_FILE] {
        assert!(file(a, name) == file(b, name), "{name} differs");
    }
    let (a, b) = (Cache::open(a).unwrap(), Cache::open(b).unwrap());
    assert_eq!(a.trajectories(), b.trajectories());
    assert_eq!(a.manifest().counts, b.manifest().counts);
    assert_eq!(a.manifest().action_norm, b.manifest().action_norm);
    assert_eq!(a.manifest().sources_hash, b.manifest().sources_hash);
}

#[test]
fn prepared_cache_holds_squashed_frames_states_and_padded_actions() {
    let dir = tempfile::tempdir().unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    let report = prepare(&sources(0..5, &reads), dir.path(), &options()).unwrap();
    assert_eq!(report.trajectories_added, 5);
    assert_eq!(report.frames_added, 4 + 5 + 6 + 4 + 5);
    assert!(report.skipped.is_empty());
    assert!(
        report.summary().contains("+5 trajectories"),
        "{}",
        report.summary()
    );

    let cache = Cache::open(dir.path()).unwrap();
    let frame_len = (SIZE_PX * SIZE_PX * 3) as usize;
    assert_eq!(cache.frames().len(), 24 * frame_len);
    // Trajectory 2, observation 1 (row 4 + 5 + 1): a uniform colour survives squashing
    // (JPEG-rounded).
    let row = 10;
    let pixel = &cache.frames()[row * frame_len..row * frame_len + 3];
    let expected = [80u8, 30, 51];
    for (got, want) in pixel.iter().zip(expected) {
        assert!(got.abs_diff(want) <= 3, "{pixel:?} vs {expected:?}");
    }
    assert_eq!(cache.states()[row * 7..row * 7 + 2], [1.0, 2.0]);
    let pad_row = 4 + 5 - 1;
    assert_eq!(cache.actions()[pad_row * 7..pad_row * 7 + 7], [0.0; 7]);
    let traj = &cache.trajectories()[2];
    assert_eq!((traj.first_row, traj.rows), (9, 6));
    assert_eq!(traj.provenance, "/data/run/traj2");
    assert_eq!(traj.split_key, bridge_data::cache::split_key("traj2"));
    assert_eq!(traj.language.as_deref(), Some("task 2"));
    let norm = cache.action_bounds().unwrap();
    assert_eq!(norm.transitions, 19);
    assert_eq!((norm.low[GRIPPER_DIM], norm.high[GRIPPER_DIM]), (0.0, 1.0));
    // The 1st..99th percentiles of the transitions' actions, pads excluded.
    let mut column: Vec<f32> = (0..5)
        .flat_map(|e| trajectory(e, 4 + e % 3).actions)
        .map(|a| a[0])
        .collect();
    let low = bridge_data::stats::quantile(&mut column, 0.01).unwrap() as f32;
    let high = bridge_data::stats::quantile(&mut column, 0.99).unwrap() as f32;
    assert_eq!((norm.low[0], norm.high[0]), (low, high));
    assert!(low < -0.01 && high > 0.01, "{norm:?}");
    assert_eq!(
        (norm.low[4], norm.high[4]),
        (-1.0, 1.0),
        "constant dimension"
    );
}

#[test]
fn interrupted_run_resumes_to_the_same_bytes_as_one_run() {
    let reads = Arc::new(AtomicUsize::new(0));
    let whole = tempfile::tempdir().unwrap();
    prepare(&sources(0..10, &reads), whole.path(), &options()).unwrap();

    // Source 7 crashes the first run (a panic unwinds through prepare, like a kill after the
    // commit of the chunk before).
    let crash = Arc::new(AtomicBool::new(true));
    let mut interrupted = sources(0..10, &reads);
    let flag = crash.clone();
    interrupted[7] = Arc::new(MemorySource::new("/data/run/traj7", "v1-7", move || {
        if flag.load(Ordering::SeqCst) {
            panic!("simulated crash while reading source 7");
        }
        Ok(vec![trajectory(7, 4 + 7 % 3)])
    }));
    let resumed = tempfile::tempdir().unwrap();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        prepare(&interrupted, resumed.path(), &options())
    }));
    assert!(outcome.is_err(), "the first run must have crashed");
    let partial = Cache::open(resumed.path()).unwrap();
    let committed = partial.manifest().counts.episodes;
    assert_eq!(
        committed, 6,
        "chunks of 2 sources: 0..6 committed before the crash"
    );
    drop(partial);

    crash.store(false, Ordering::SeqCst);
    reads.store(0, Ordering::SeqCst);
    let report = prepare(&interrupted, resumed.path(), &options()).unwrap();
    assert_eq!(report.sources_already_recorded, 6);
    assert_eq!(report.sources_read, 4);
    assert_eq!(
        reads.load(Ordering::SeqCst),
        3,
        "sources 6, 8, 9 (7 is counted apart)"
    );
    assert_same_cache(whole.path(), resumed.path());
}

#[test]
fn new_inputs_are_added_incrementally_and_unchanged_ones_not_reread() {
    let reads = Arc::new(AtomicUsize::new(0));
    let once = tempfile::tempdir().unwrap();
    prepare(&sources(0..8, &reads), once.path(), &options()).unwrap();

    let grown = tempfile::tempdir().unwrap();
    prepare(&sources(0..5, &reads), grown.path(), &options()).unwrap();
    reads.store(0, Ordering::SeqCst);
    let report = prepare(&sources(0..8, &reads), grown.path(), &options()).unwrap();
    assert_eq!(
        reads.load(Ordering::SeqCst),
        3,
        "only the three new sources are read"
    );
    assert_eq!(
        (report.sources_already_recorded, report.trajectories_added),
        (5, 3)
    );
    assert_same_cache(once.path(), grown.path());

    // Overlapping inputs list a source twice: it is cached once.
    let twice = tempfile::tempdir().unwrap();
    let mut doubled = sources(0..8, &reads);
    doubled.extend(sources(3..5, &reads));
    let report = prepare(&doubled, twice.path(), &options()).unwrap();
    assert_eq!(
        (report.trajectories_added, report.sources_already_recorded),
        (8, 2)
    );
    assert_same_cache(once.path(), twice.path());

    // Nothing new: nothing read, nothing added, the cache untouched.
    reads.store(0, Ordering::SeqCst);
    let report = prepare(&sources(0..8, &reads), grown.path(), &options()).unwrap();
    assert_eq!((reads.load(Ordering::SeqCst), report.frames_added), (0, 0));
    assert_same_cache(once.path(), grown.path());
}

#[test]
fn corrupt_frames_and_unreadable_sources_are_skipped_counted_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    let mut all = sources(0..4, &reads);
    all.push(Arc::new(MemorySource::new(
        "/data/run/traj_bad_jpeg",
        "v1",
        || {
            let mut t = trajectory(9, 5);
            let StoredFrame::Jpeg(bytes) = &mut t.frames[3] else {
                unreachable!()
            };
            bytes.truncate(bytes.len() / 3); // a JPEG cut short
            t.source = PathBuf::from("/data/run/traj_bad_jpeg");
            Ok(vec![t])
        },
    )));
    all.push(Arc::new(MemorySource::new(
        "/data/run/traj_bad_pickle",
        "v1",
        || Err("/data/run/traj_bad_pickle/obs_dict.pkl: pickle truncated at byte 812".into()),
    )));
    let report = prepare(&all, dir.path(), &options()).unwrap();
    assert_eq!(report.trajectories_added, 4, "the run went on");
    assert_eq!(report.skipped.len(), 2);
    let summary = report.summary();
    assert!(
        summary.contains("/data/run/traj_bad_jpeg") && summary.contains("frame 3"),
        "{summary}"
    );
    assert!(
        summary.contains("obs_dict.pkl: pickle truncated"),
        "{summary}"
    );
    let manifest = Cache::open(dir.path()).unwrap().manifest().clone();
    assert_eq!(manifest.counts.skipped_trajectories, 1);
    assert_eq!(manifest.counts.failed_sources, 1);
    assert_eq!(manifest.counts.episodes, 4);
    let paths: Vec<&str> = manifest.skipped.iter().map(|s| s.path.as_str()).collect();
    assert!(paths.contains(&"/data/run/traj_bad_jpeg"), "{paths:?}");
    assert!(paths.contains(&"/data/run/traj_bad_pickle"), "{paths:?}");

    // Unchanged, the failed source is not read again; once its files change it is.
    let retried = Arc::new(AtomicUsize::new(0));
    let counter = retried.clone();
    let fixed: Arc<dyn TrajectorySource> = Arc::new(MemorySource::new(
        "/data/run/traj_bad_pickle",
        "v2",
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(vec![trajectory(11, 4)])
        },
    ));
    let report = prepare(std::slice::from_ref(&fixed), dir.path(), &options()).unwrap();
    assert_eq!(
        (retried.load(Ordering::SeqCst), report.trajectories_added),
        (1, 1)
    );
    let manifest = Cache::open(dir.path()).unwrap().manifest().clone();
    assert_eq!(manifest.counts.failed_sources, 0);
    assert_eq!(manifest.counts.episodes, 5);
}

#[test]
fn changed_sources_are_reported_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    prepare(&sources(0..3, &reads), dir.path(), &options()).unwrap();
    let before = file(dir.path(), FRAMES_FILE);
    let changed: Arc<dyn TrajectorySource> =
        Arc::new(MemorySource::new("/data/run/traj1", "v2-1", || {
            Ok(vec![trajectory(50, 4)])
        }));
    let report = prepare(&[changed], dir.path(), &options()).unwrap();
    assert_eq!(report.sources_changed, ["/data/run/traj1"]);
    assert_eq!(report.trajectories_added, 0);
    assert!(
        report.summary().contains("changed since cached"),
        "{}",
        report.summary()
    );
    assert_eq!(file(dir.path(), FRAMES_FILE), before);
}

#[test]
fn episodes_of_simulator_sessions_are_counted_in_the_cache() {
    let root = tempfile::tempdir().unwrap();
    let sim_session = root.path().join("sim_play/00/2026-12-03_10-00-00");
    bridge_data::provenance::Collection {
        source: bridge_data::provenance::Collector::Simulator,
    }
    .write(&sim_session)
    .unwrap();
    let traj = |session: &Path, i: usize| -> Arc<dyn TrajectorySource> {
        let path = session.join(format!("raw/traj_group0/traj{i}"));
        Arc::new(MemorySource::new(
            path.to_string_lossy().into_owned(),
            format!("v1-{i}"),
            move || Ok(vec![trajectory(i, 5)]),
        ))
    };
    let robot_session = root.path().join("put_spoon/00/2021-08-01_10-00-00");
    let sources = vec![
        traj(&sim_session, 0),
        traj(&sim_session, 1),
        traj(&robot_session, 2),
    ];
    let out = root.path().join("cache");
    prepare(&sources, &out, &options()).unwrap();
    let counts = Cache::open(&out).unwrap().manifest().counts.clone();
    assert_eq!((counts.simulated_episodes, counts.episodes), (2, 3));
    assert_eq!(
        mqe::DataSource::of_episodes(counts.simulated_episodes, counts.episodes),
        mqe::DataSource::Mixed
    );
}

#[test]
fn a_cache_of_other_settings_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reads = Arc::new(AtomicUsize::new(0));
    prepare(&sources(0..1, &reads), dir.path(), &options()).unwrap();
    let mut other = options();
    other.settings.size_px = 32;
    let err = prepare(&sources(1..2, &reads), dir.path(), &other).unwrap_err();
    assert!(err.to_string().contains("size_px"), "{err}");
}

#[test]
fn fit_on_a_cache_stores_its_action_normalisation_in_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let reads = Arc::new(AtomicUsize::new(0));
    prepare(&sources(0..12, &reads), &cache_dir, &options()).unwrap();
    let cache = Cache::open(&cache_dir).unwrap();
    let split = cache.split(0.25).unwrap();
    let norm = action_norm_from_bounds(&split.train_action_bounds).unwrap();
    assert!(split.val.is_some());

    let sets = [
        "steps=3",
        "batch_size=8",
        "latent_dim=16",
        "mrn_components=2",
        "mlp_hidden=[16]",
        "actor_hidden=[16]",
        "encoder_dim=16",
        "eval_interval_steps=3",
    ];
    let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
    let base = RunConfig::defaults_for(DataTraits::bridge(SIZE_PX as usize));
    let config = resolve(base, None, &overrides).unwrap();
    let out = dir.path().join("run");
    let options = FitOptions {
        action_norm: Some(norm.clone()),
        loader_threads: 2,
        input_crop_px: Some([2, 1, 36, 28]),
        data_source: mqe::DataSource::Unknown,
        ..FitOptions::new(&out, cache_dir.display().to_string())
    };
    let outcome = fit(
        &split.train,
        split.val.as_ref(),
        &config,
        &options,
        &Device::Cpu,
    )
    .unwrap();
    assert!(
        outcome
            .records
            .iter()
            .any(|r| r.split == bridge_train::fit::Split::Val)
    );

    let agent = Agent::load(&out, &Device::Cpu).unwrap();
    assert_eq!(agent.step(), 3);
    let written = mqe::CheckpointConfig::read(&out).unwrap();
    assert_eq!(written.data.input_crop_px, Some([2, 1, 36, 28]));
    assert_eq!(agent.action_norm(), &norm);
    assert_eq!(agent.model_config().encoder, EncoderKind::ImpalaSmall);
    assert_eq!(
        agent.model_config().obs,
        ObsKind::Pixels {
            size_px: SIZE_PX as usize,
            channels: 3
        }
    );
    assert_eq!(agent.train_config().gamma, 0.98, "Bridge default");
}

/// A 40x30 JPEG, left half red, right half blue.
fn halves_jpeg() -> Vec<u8> {
    let (w, h) = (40u32, 30u32);
    let rgb: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            if i % w < w / 2 {
                [220, 20, 20]
            } else {
                [20, 20, 220]
            }
        })
        .collect();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
        .encode(&rgb, w, h, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

#[test]
fn a_crop_is_applied_before_squashing_and_kept_in_the_cache_settings() {
    let dir = tempfile::tempdir().unwrap();
    let source: Arc<dyn TrajectorySource> =
        Arc::new(MemorySource::new("/data/run/halves", "v1", || {
            let mut t = trajectory(0, 3);
            t.frames = (0..3).map(|_| StoredFrame::Jpeg(halves_jpeg())).collect();
            Ok(vec![t])
        }));
    // The right half, away from the JPEG ringing at the seam.
    let mut cropped = options();
    cropped.settings.crop_px = Some([24, 0, 16, 30]);
    prepare(std::slice::from_ref(&source), dir.path(), &cropped).unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    assert_eq!(cache.manifest().settings.crop_px, Some([24, 0, 16, 30]));
    for pixel in cache.frames().chunks(3) {
        assert!(
            pixel[2] > 180 && pixel[0] < 60,
            "every pixel is blue: {pixel:?}"
        );
    }
    // The same cache cannot be extended with another crop.
    let mut other = options();
    other.settings.crop_px = Some([0, 0, 16, 30]);
    let err = prepare(std::slice::from_ref(&source), dir.path(), &other)
        .unwrap_err()
        .to_string();
    assert!(err.contains("crop_px"), "{err}");
    // A crop outside the frames skips the trajectory and says why.
    let skipped_dir = tempfile::tempdir().unwrap();
    let mut outside = options();
    outside.settings.crop_px = Some([30, 0, 16, 30]);
    let report = prepare(std::slice::from_ref(&source), skipped_dir.path(), &outside).unwrap();
    assert_eq!(report.trajectories_added, 0);
    assert!(
        report.skipped[0]
            .reason
            .contains("does not fit in a 40x30 frame"),
        "{:?}",
        report.skipped
    );
}
