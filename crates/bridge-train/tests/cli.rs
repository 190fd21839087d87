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

/// A stand-in for the Python that runs tools/ogbench-eval: it answers the package check, and
/// for an evaluation checks that the checkpoint it is given exists, logs the call and writes
/// the evaluator's JSON record (or fails, when `fail` is set). The real evaluator runs in
/// `.ci/run` against OGBench's own environment; this checks the trainer's side of the contract.
fn fake_evaluator_python(dir: &Path, fail: Option<&str>) -> PathBuf {
    let script = dir.join("fake-python");
    let evaluate = match fail {
        Some(message) => format!("echo 'Traceback: ...' >&2; echo '{message}' >&2; exit 1"),
        None => r#"test -f "$ckpt/model.safetensors" || { echo "no checkpoint in $ckpt" >&2; exit 1; }
echo "$env $episodes" >> "$(dirname "$0")/calls.txt"
printf '{"env": "%s", "checkpoint": "%s", "episodes_per_task": %s, "tasks": [{"task_id": 1, "successes": 1, "episodes": 2, "success_rate": 0.5}, {"task_id": 2, "successes": 2, "episodes": 2, "success_rate": 1.0}], "mean_success": 0.75, "wall_s": 0.1, "seed": 0}' "$env" "$ckpt" "$episodes" > "$json""#
            .to_string(),
    };
    let text = format!(
        r#"#!/bin/sh
if [ "$1" = "-c" ]; then exit 0; fi
shift
while [ $# -gt 0 ]; do
  case "$1" in
    --checkpoint) ckpt="$2"; shift 2;;
    --env) env="$2"; shift 2;;
    --episodes) episodes="$2"; shift 2;;
    --json) json="$2"; shift 2;;
    *) shift;;
  esac
done
{evaluate}
"#
    );
    write_executable(&script, &text);
    script
}

/// `fit --eval-every` arguments with the stand-in Python; the script and server paths only need
/// to exist.
fn eval_args<'a>(python: &'a Path, stand_in: &'a Path) -> Vec<&'a str> {
    vec![
        "--eval-every",
        "2",
        "--eval-episodes",
        "2",
        "--eval-python",
        s(python),
        "--eval-script",
        s(stand_in),
        "--eval-server",
        s(stand_in),
    ]
}

fn tiny_fit<'a>(data: &'a Path, out: &'a Path) -> Vec<&'a str> {
    let mut args = vec![
        "fit",
        "--data",
        s(data),
        "--out",
        s(out),
        "--steps",
        "5",
        "--batch-size",
        "8",
        "--no-progress",
        "--device",
        "cpu",
    ];
    args.extend(SMALL_NETS);
    args
}

#[test]
fn fit_scores_the_checkpoint_in_the_environment_every_n_steps_and_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pointmaze-tiny-stitch-v0.npz");
    write_state_npz(&data, 6, 10);
    let python = fake_evaluator_python(dir.path(), None);
    let out = dir.path().join("run");
    let mut args = tiny_fit(&data, &out);
    args.extend(eval_args(&python, &data));
    let result = bridge_train(&args);
    assert!(result.status.success(), "{}", stderr(&result));

    let calls = std::fs::read_to_string(dir.path().join("calls.txt")).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        ["pointmaze-tiny-stitch-v0 2"; 3],
        "steps 2, 4 and the last, 5; the environment named after the dataset"
    );
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let env_records: Vec<bridge_train::env_eval::EnvEvalRecord> = log
        .lines()
        .filter(|l| l.contains(r#""split":"env""#))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<u64> = env_records.iter().map(|r| r.step).collect();
    assert_eq!(steps, [2, 4, 5]);
    assert!(
        env_records
            .iter()
            .all(|r| r.mean_success == 0.75 && r.tasks.len() == 2)
    );
    // The loss records are still there, each line one of the two kinds.
    let losses: Vec<LogRecord> = log
        .lines()
        .filter(|l| !l.contains(r#""split":"env""#))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(losses.iter().any(|r| r.split == Split::Train));
    assert!(
        stderr(&result).contains("success 75% (50/100)"),
        "{}",
        stderr(&result)
    );
}

#[test]
fn a_failing_evaluation_stops_training_and_says_the_checkpoint_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pointmaze-tiny-stitch-v0.npz");
    write_state_npz(&data, 6, 10);
    let python = fake_evaluator_python(dir.path(), Some("error: unknown environment"));
    let out = dir.path().join("run");
    let mut args = tiny_fit(&data, &out);
    args.extend(eval_args(&python, &data));
    let result = bridge_train(&args);
    assert_eq!(result.status.code(), Some(1), "{}", stderr(&result));
    let err = stderr(&result);
    assert!(err.contains("evaluating the checkpoint at step 2"), "{err}");
    assert!(err.contains("error: unknown environment"), "{err}");
    assert!(!err.contains("Traceback"), "only the error line: {err}");
    let saved = Agent::load(&out, &Device::Cpu).unwrap();
    assert_eq!(saved.step(), 2);
}

#[test]
fn eval_every_refuses_a_python_without_ogbench_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pointmaze-tiny-stitch-v0.npz");
    write_state_npz(&data, 6, 10);
    let python = dir.path().join("python-without-ogbench");
    write_executable(
        &python,
        "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'ogbench'\" >&2\nexit 1\n",
    );
    let out = dir.path().join("run");
    let mut args = tiny_fit(&data, &out);
    args.extend(eval_args(&python, &data));
    let result = bridge_train(&args);
    assert_eq!(result.status.code(), Some(1));
    let err = stderr(&result);
    assert!(err.contains("cannot import ogbench and mujoco"), "{err}");
    assert!(err.contains("No module named 'ogbench'"), "{err}");
    assert!(!out.exists(), "nothing trained or written");
}

/// Writes a script and makes it executable (mode 0755), as a stand-in interpreter.
fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
