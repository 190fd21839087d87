//! Exact resume: N steps in one go equal N/2 steps, a checkpoint, and N/2 more from it, loss for
//! loss and parameter for parameter; and the guards around resuming.

use std::path::Path;

use bridge_train::config::{Override, RunConfig, resolve};
use bridge_train::fit::{FitError, FitOptions, LogRecord, Split, fit};
use bridge_train::maze::Maze;
use candle_core::Device;

const STEPS: u64 = 12;

fn config(steps: u64, extra: &[&str]) -> RunConfig {
    let mut sets = vec![
        format!("steps={steps}"),
        "batch_size=32".into(),
        "latent_dim=16".into(),
        "mrn_components=2".into(),
        "mlp_hidden=[32, 32]".into(),
        "actor_hidden=[32, 32]".into(),
        "gamma=0.97".into(),
        "actor_random_goal_share=0.5".into(),
        "log_interval_steps=1".into(),
        "eval_interval_steps=3".into(),
        "checkpoint_interval_steps=4".into(),
        "seed=5".into(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
    resolve(RunConfig::default(), None, &overrides).unwrap()
}

fn options(out: &Path, resume: Option<&Path>) -> FitOptions {
    FitOptions {
        out_dir: out.to_path_buf(),
        resume: resume.map(Path::to_path_buf),
        dataset_name: "u-maze segments".into(),
        progress: false,
        action_norm: None,
        loader_threads: 1,
        input_crop_px: None,
        data_source: mqe::DataSource::Unknown,
        env_eval: None,
    }
}

fn train_records(records: &[LogRecord]) -> Vec<&LogRecord> {
    records.iter().filter(|r| r.split == Split::Train).collect()
}

fn same_losses(a: &LogRecord, b: &LogRecord) {
    assert_eq!(a.step, b.step);
    for (name, x, y) in [
        ("total_loss", a.total_loss, b.total_loss),
        ("loss_backup", a.loss_backup, b.loss_backup),
        ("loss_inv", a.loss_inv, b.loss_inv),
        ("q_loss", a.q_loss, b.q_loss),
        ("bc_loss", a.bc_loss, b.bc_loss),
        ("pair_accuracy", a.pair_accuracy, b.pair_accuracy),
    ] {
        assert!((x - y).abs() <= 1e-6, "step {}: {name} {x} vs {y}", a.step);
    }
}

#[test]
fn resumed_run_matches_an_uninterrupted_one() {
    let maze = Maze::new();
    let train = maze.segments(60, 8, 0.3, 1).to_dataset().unwrap();
    let val = maze.segments(20, 8, 0.3, 2).to_dataset().unwrap();
    let dev = Device::Cpu;
    let whole_dir = tempfile::tempdir().unwrap();
    let whole = fit(
        &train,
        Some(&val),
        &config(STEPS, &[]),
        &options(whole_dir.path(), None),
        &dev,
    )
    .unwrap();

    // The halves draw their batches on the training thread, the whole run on a background
    // loader thread: the loader must not change a single batch.
    let split_dir = tempfile::tempdir().unwrap();
    let on_trainer_thread = |out: &Path, resume: Option<&Path>| FitOptions {
        loader_threads: 0,
        ..options(out, resume)
    };
    let first = fit(
        &train,
        Some(&val),
        &config(STEPS / 2, &[]),
        &on_trainer_thread(split_dir.path(), None),
        &dev,
    )
    .unwrap();
    assert_eq!(first.agent.step(), STEPS / 2);
    drop(first);
    // A run stopped after its last checkpoint has logged steps that the resumed run trains
    // again: that record must not stay in the log beside the new one.
    append_a_record_after_the_checkpoint(split_dir.path());
    let second = fit(
        &train,
        Some(&val),
        &config(STEPS, &[]),
        &on_trainer_thread(split_dir.path(), Some(split_dir.path())),
        &dev,
    )
    .unwrap();
    assert_eq!(second.agent.step(), STEPS);

    let whole_train = train_records(&whole.records);
    let resumed_train = train_records(&second.records);
    assert_eq!(whole_train.len(), STEPS as usize);
    assert_eq!(resumed_train.len(), (STEPS / 2) as usize);
    for (a, b) in whole_train[(STEPS / 2) as usize..]
        .iter()
        .zip(&resumed_train)
    {
        same_losses(a, b);
    }
    // The losses moved: the comparison above is not between constant numbers.
    assert_ne!(
        whole_train[0].total_loss,
        whole_train[STEPS as usize - 1].total_loss
    );
    for ((name, a), (_, b)) in whole
        .agent
        .parameters()
        .iter()
        .zip(second.agent.parameters())
    {
        let diff = (a.as_tensor() - b.as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(
            diff.to_scalar::<f32>().unwrap() <= 1e-6,
            "parameter {name} differs"
        );
    }
    // The metrics log of the split run holds both halves.
    let log = std::fs::read_to_string(split_dir.path().join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .map(|l| serde_json::from_str::<LogRecord>(l).unwrap())
        .filter(|r| r.split == Split::Train)
        .map(|r| r.step)
        .collect();
    assert_eq!(steps, (1..=STEPS).collect::<Vec<_>>());
    assert!(!log.contains(SUPERSEDED_LOSS), "{log}");
    // The checkpoint records the schedule it was trained to, not the first half's.
    let saved = mqe::CheckpointConfig::read(split_dir.path()).unwrap();
    assert_eq!(saved.train.steps, STEPS);
}

/// A total loss no real step logs here.
const SUPERSEDED_LOSS: &str = "12345.5";

fn append_a_record_after_the_checkpoint(dir: &Path) {
    let path = dir.join("metrics.jsonl");
    let log = std::fs::read_to_string(&path).unwrap();
    let last = log.lines().last().unwrap();
    let mut record: LogRecord = serde_json::from_str(last).unwrap();
    record.step += 1;
    record.split = Split::Train;
    record.total_loss = SUPERSEDED_LOSS.parse().unwrap();
    let line = serde_json::to_string(&record).unwrap();
    assert!(line.contains(SUPERSEDED_LOSS), "{line}");
    std::fs::write(&path, format!("{log}{line}\n")).unwrap();
}

#[test]
fn resume_refuses_a_changed_setting_and_fresh_runs_refuse_a_checkpoint() {
    let train = Maze::new().segments(30, 8, 0.3, 3).to_dataset().unwrap();
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    fit(
        &train,
        None,
        &config(2, &[]),
        &options(dir.path(), None),
        &dev,
    )
    .unwrap();

    let changed = config(4, &["gamma=0.9"]);
    let err = fit(
        &train,
        None,
        &changed,
        &options(dir.path(), Some(dir.path())),
        &dev,
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err, FitError::ResumeMismatch { field, .. } if field == "gamma"),
        "{err}"
    );

    let err = fit(
        &train,
        None,
        &config(2, &[]),
        &options(dir.path(), None),
        &dev,
    )
    .err()
    .unwrap();
    assert!(matches!(err, FitError::OutDirTaken { .. }), "{err}");

    // Continuing `dir` into another directory that holds a checkpoint would overwrite it.
    let other = tempfile::tempdir().unwrap();
    fit(
        &train,
        None,
        &config(1, &[]),
        &options(other.path(), None),
        &dev,
    )
    .unwrap();
    let err = fit(
        &train,
        None,
        &config(4, &[]),
        &options(other.path(), Some(dir.path())),
        &dev,
    )
    .err()
    .unwrap();
    assert!(matches!(err, FitError::OutDirTaken { .. }), "{err}");
    // ... while an empty one is fine, and the original stays at its step.
    let fresh = tempfile::tempdir().unwrap();
    let moved = fit(
        &train,
        None,
        &config(4, &[]),
        &options(fresh.path(), Some(dir.path())),
        &dev,
    )
    .unwrap();
    assert_eq!(moved.agent.step(), 4);
    assert_eq!(mqe::Agent::load(dir.path(), &dev).unwrap().step(), 2);

    let wider = config(4, &["mlp_hidden=[64, 64]"]);
    let err = fit(
        &train,
        None,
        &wider,
        &options(dir.path(), Some(dir.path())),
        &dev,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("mlp_hidden"), "{err}");
}
