//! `bridge-train` end to end: fit on small OGBench-format files written here, load the
//! checkpoint, resume from it, print the configuration, and the errors for bad input.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Output;

use bridge_train::config::RunConfig;
use bridge_train::fit::{LogRecord, Split};
use candle_core::Device;
use mqe::{ActionNorm, Agent, ObsKind};
use test_support::npy::{f32_bytes, npy};

mod common;
use common::{SMALL_NETS, bridge_train};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write_npz(path: &Path, entries: &[(&str, Vec<u8>)]) {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (key, bytes) in entries {
        writer.start_file(format!("{key}.npy"), options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    std::fs::write(path, writer.finish().unwrap().into_inner()).unwrap();
}

/// `episodes` episodes of `len` rows: a 2-d point drifting by its action; actions in [-5, 5]
/// (outside [-1, 1], so the trainer must normalise them).
fn write_state_npz(path: &Path, episodes: usize, len: usize) {
    let rows = episodes * len;
    let mut obs = Vec::with_capacity(rows * 2);
    let mut actions = Vec::with_capacity(rows * 2);
    let mut terminals = Vec::with_capacity(rows);
    for e in 0..episodes {
        let mut p = [e as f32 * 0.1, 0.0];
        for t in 0..len {
            let a = [5.0 * ((e + t) as f32).sin(), 5.0 * ((e * t) as f32).cos()];
            obs.extend_from_slice(&p);
            actions.extend_from_slice(&a);
            terminals.push(u8::from(t + 1 == len));
            p = [p[0] + 0.02 * a[0], p[1] + 0.02 * a[1]];
        }
    }
    write_npz(
        path,
        &[
            ("observations", npy("<f4", &[rows, 2], &f32_bytes(&obs))),
            ("actions", npy("<f4", &[rows, 2], &f32_bytes(&actions))),
            ("terminals", npy("|b1", &[rows], &terminals)),
        ],
    );
}

/// 8x8x3 images, 7-d actions in [-1, 1].
fn write_pixel_npz(path: &Path, episodes: usize, len: usize) {
    let rows = episodes * len;
    let frames: Vec<u8> = (0..rows * 8 * 8 * 3)
        .map(|i| (i * 37 % 251) as u8)
        .collect();
    let actions: Vec<f32> = (0..rows * 7).map(|i| ((i as f32) * 0.3).sin()).collect();
    let terminals: Vec<u8> = (0..rows).map(|r| u8::from((r + 1) % len == 0)).collect();
    write_npz(
        path,
        &[
            ("observations", npy("|u1", &[rows, 8, 8, 3], &frames)),
            ("actions", npy("<f4", &[rows, 7], &f32_bytes(&actions))),
            ("terminals", npy("|b1", &[rows], &terminals)),
        ],
    );
}

fn records(dir: &Path) -> Vec<LogRecord> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn steps_of(records: &[LogRecord], split: Split) -> Vec<u64> {
    records
        .iter()
        .filter(|r| r.split == split)
        .map(|r| r.step)
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn fit_writes_a_loadable_checkpoint_with_metrics_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny-stitch.npz");
    write_state_npz(&data, 12, 10);
    write_state_npz(&dir.path().join("tiny-stitch-val.npz"), 4, 10);
    let out = dir.path().join("run");
    let mut args = vec![
        "fit",
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--steps",
        "6",
        "--batch-size",
        "16",
        "--no-progress",
        "--set",
        "log_interval_steps=2",
        "--set",
        "eval_interval_steps=3",
        "--device",
        "cpu",
    ];
    args.extend(SMALL_NETS);
    let run = bridge_train(&args);
    assert!(run.status.success(), "{}", stderr(&run));

    let agent = Agent::load(&out, &Device::Cpu).unwrap();
    assert_eq!(agent.step(), 6);
    assert_eq!(agent.model_config().obs, ObsKind::State { dim: 2 });
    assert_eq!(agent.model_config().latent_dim, 16);
    assert_eq!(agent.train_config().batch_size, 16);
    // "stitch" in the file name: half of the actor goals from the whole dataset.
    assert_eq!(agent.train_config().actor_random_goal_share, 0.5);
    // Actions span [-5, 5]: the 1st..99th percentile map, not the identity.
    let norm = agent.action_norm();
    assert_ne!(norm, &ActionNorm::identity(2));
    assert!(
        norm.low.iter().all(|&l| l < -4.0) && norm.high.iter().all(|&h| h > 4.0),
        "{norm:?}"
    );
    let log = records(&out);
    assert_eq!(steps_of(&log, Split::Train), [2, 4, 6]);
    assert_eq!(steps_of(&log, Split::Val), [3, 6]);
    assert!(
        log.iter()
            .all(|r| r.total_loss.is_finite() && r.loss_backup != 0.0)
    );

    let resumed = bridge_train(&[
        "fit",
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--resume",
        s(&out),
        "--steps",
        "8",
        "--no-progress",
    ]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(Agent::load(&out, &Device::Cpu).unwrap().step(), 8);
    assert_eq!(steps_of(&records(&out), Split::Train), [2, 4, 6, 8]);

    let again = bridge_train(&[
        "fit",
        "--data",
        s(&data),
        "--out",
        s(&out),
        "--steps",
        "2",
        "--no-progress",
    ]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already holds a checkpoint"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn fit_trains_pixel_data_and_gcbc() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pixels.npz");
    write_pixel_npz(&data, 4, 6);
    for algo in ["mqe", "gcbc"] {
        let out = dir.path().join(algo);
        let mut args = vec![
            "fit",
            "--data",
            s(&data),
            "--out",
            s(&out),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--algo",
            algo,
            "--no-progress",
        ];
        args.extend(SMALL_NETS);
        let run = bridge_train(&args);
        assert!(run.status.success(), "{algo}: {}", stderr(&run));
        let agent = Agent::load(&out, &Device::Cpu).unwrap();
        assert_eq!(
            agent.model_config().obs,
            ObsKind::Pixels {
                size_px: 8,
                channels: 3
            }
        );
        assert_eq!(
            agent.action_norm(),
            &ActionNorm::identity(7),
            "actions already in [-1, 1]"
        );
        assert_eq!(agent.train_config().one_step_prob, 0.1, "pixel default");
        assert_eq!(agent.step(), 2);
    }
}

#[test]
fn config_prints_the_resolved_toml() {
    let run = bridge_train(&[
        "config",
        "--algo",
        "gcbc",
        "--steps",
        "77",
        "--set",
        "gamma=0.9",
        "--set",
        "mlp_hidden=[8, 8]",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let config: RunConfig = toml::from_str(&String::from_utf8(run.stdout).unwrap()).unwrap();
    assert_eq!(config.model.algo, mqe::Algo::Gcbc);
    assert_eq!((config.train.steps, config.train.gamma), (77, 0.9));
    assert_eq!(config.model.mlp_hidden, [8, 8]);
    assert_eq!(config.train.lr, 3e-4);
}

#[test]
fn bad_keys_and_missing_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.toml");
    std::fs::write(&config, "[train]\ngama = 0.9\n").unwrap();
    let run = bridge_train(&["config", "--config", s(&config)]);
    assert!(!run.status.success());
    let err = stderr(&run);
    assert!(err.contains("gama") && err.contains("run.toml"), "{err}");
    // One plain message, as bridge-run prints its errors: no Debug report, no repeated causes.
    assert!(err.contains("bridge-train: error: "), "{err}");
    assert!(
        !err.contains("Caused by") && !err.contains("Error: "),
        "{err}"
    );
    assert_eq!(err.matches("unknown field `gama`").count(), 1, "{err}");

    let run = bridge_train(&["config", "--set", "bogus_setting=1"]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains("bogus_setting"), "{}", stderr(&run));

    let missing: PathBuf = dir.path().join("no-such-data.npz");
    let out = dir.path().join("out");
    let run = bridge_train(&["fit", "--data", s(&missing), "--out", s(&out)]);
    assert!(!run.status.success());
    assert!(stderr(&run).contains(s(&missing)), "{}", stderr(&run));
    assert!(
        !out.exists(),
        "nothing is written when the data are missing"
    );
}
