//! `bridge-train prepare` then `fit` through the binary on the reference fixtures of
//! tools/fixtures (raw trajectories pickled by Python, TFRecord shards from an independent
//! writer, a NumPy release): a checkpoint comes out, loads, and carries the cache's action
//! normalisation; reruns add only new inputs; corrupt files are skipped and named.

use std::path::{Path, PathBuf};
use std::process::Output;

use bridge_data::cache::Cache;
use bridge_train::data::action_norm_from_bounds;
use candle_core::Device;
use mqe::{Agent, ObsKind};

mod common;
use common::{SMALL_NETS, bridge_train};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/fixtures/data")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn sources_under(path: &Path) -> usize {
    bridge_data::sources::discover(path).unwrap().len()
}

#[test]
fn prepare_then_fit_on_the_fixtures_gives_a_loadable_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let raw = fixtures().join("raw");
    let prep = |inputs: &[&Path]| {
        let mut args = vec![
            "prepare",
            "--out",
            s(&cache),
            "--size-px",
            "64",
            "--no-progress",
        ];
        for input in inputs {
            args.extend(["--input", s(input)]);
        }
        bridge_train(&args)
    };
    let first = prep(&[&raw]);
    assert!(first.status.success(), "{}", text(&first));
    let raw_sources = sources_under(&raw);
    assert!(raw_sources >= 2);
    assert_eq!(
        Cache::open(&cache).unwrap().manifest().counts.sources,
        raw_sources as u64
    );

    // Incremental: the whole fixture tree, raw included; only the other formats are read.
    let all = fixtures();
    let second = prep(&[&all]);
    assert!(second.status.success(), "{}", text(&second));
    let summary = text(&second);
    let total = sources_under(&all);
    assert!(
        summary.contains(&format!(
            "read {} of {total} sources ({raw_sources} already cached)",
            total - raw_sources
        )),
        "{summary}"
    );
    let opened = Cache::open(&cache).unwrap();
    let manifest = opened.manifest().clone();
    assert_eq!(manifest.counts.sources, total as u64);
    assert_eq!(manifest.counts.failed_sources, 0, "{:?}", manifest.skipped);
    assert_eq!(
        manifest.counts.rows as usize * 64 * 64 * 3,
        opened.frames().len()
    );
    // The model's action map covers the training trajectories of the 0.3 split only.
    let split = opened.split(0.3).unwrap();
    let norm = action_norm_from_bounds(&split.train_action_bounds).unwrap();
    let whole = action_norm_from_bounds(opened.action_bounds().unwrap()).unwrap();
    // The fixtures' held-out trajectories widen the map, so the test tells the two apart.
    assert_ne!(norm, whole);
    drop((split, opened));

    let out = dir.path().join("run");
    let mut args = vec![
        "fit",
        "--data",
        s(&cache),
        "--out",
        s(&out),
        "--steps",
        "3",
        "--batch-size",
        "8",
        "--val-fraction",
        "0.3",
        "--no-progress",
        "--device",
        "cpu",
    ];
    args.extend(SMALL_NETS);
    let run = bridge_train(&args);
    assert!(run.status.success(), "{}", text(&run));
    let agent = Agent::load(&out, &Device::Cpu).unwrap();
    assert_eq!(agent.step(), 3);
    assert_eq!(
        agent.model_config().obs,
        ObsKind::Pixels {
            size_px: 64,
            channels: 3
        }
    );
    assert_eq!(
        agent.action_norm(),
        &norm,
        "the training trajectories' action map"
    );
    // No collection marker in the fixtures: recorded by a robot, as BridgeData V2 is.
    let written = mqe::CheckpointConfig::read(&out).unwrap();
    assert_eq!(written.data.data_source, mqe::DataSource::Robot);

    let config = bridge_train(&["config", "--data", s(&cache)]);
    assert!(config.status.success(), "{}", text(&config));
    assert!(text(&config).contains("gamma = 0.98"), "{}", text(&config));
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn corrupt_files_are_named_skipped_and_the_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_tree(&fixtures().join("raw"), &data);
    let trajectories = bridge_data::raw::find_trajectories(&data).unwrap();
    assert!(trajectories.len() >= 3, "{trajectories:?}");
    // A JPEG cut short in one trajectory, a pickle cut short in another.
    let jpeg = trajectories[0].join("images0/im_1.jpg");
    let bytes = std::fs::read(&jpeg).unwrap();
    std::fs::write(&jpeg, &bytes[..bytes.len() / 2]).unwrap();
    let pickle = trajectories[1].join("obs_dict.pkl");
    let bytes = std::fs::read(&pickle).unwrap();
    std::fs::write(&pickle, &bytes[..bytes.len() / 2]).unwrap();

    let cache = dir.path().join("cache");
    let run = bridge_train(&[
        "prepare",
        "--input",
        s(&data),
        "--out",
        s(&cache),
        "--size-px",
        "64",
        "--no-progress",
    ]);
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(out.contains("im_1.jpg"), "the JPEG is named: {out}");
    assert!(out.contains("obs_dict.pkl"), "the pickle is named: {out}");
    let manifest = Cache::open(&cache).unwrap().manifest().clone();
    let good = trajectories.len() as u64 - 2;
    assert_eq!(manifest.counts.episodes, good);
    assert_eq!(
        manifest.counts.failed_sources + manifest.counts.skipped_trajectories,
        2
    );
    assert_eq!(manifest.skipped.len(), 2);
}

#[test]
fn bad_inputs_are_refused_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-input");
    let cache = dir.path().join("cache");
    let run = bridge_train(&["prepare", "--input", s(&missing), "--out", s(&cache)]);
    assert!(!run.status.success());
    assert!(text(&run).contains("no-such-input"), "{}", text(&run));

    let run = bridge_train(&[
        "prepare",
        "--input",
        s(&fixtures().join("raw")),
        "--out",
        s(&cache),
        "--camera",
        "wrist",
    ]);
    assert!(!run.status.success());
    assert!(text(&run).contains("wrist"), "{}", text(&run));

    let not_data = dir.path().join("empty");
    std::fs::create_dir_all(&not_data).unwrap();
    let run = bridge_train(&[
        "fit",
        "--data",
        s(&not_data),
        "--out",
        s(&dir.path().join("r")),
    ]);
    assert!(!run.status.success());
    assert!(text(&run).contains("manifest.toml"), "{}", text(&run));
}
