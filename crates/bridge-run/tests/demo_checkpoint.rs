//! The README's first command on the shipped demo: `bridge-run --sim` with its defaults (the
//! checkpoint in models/sim-demo and its default task's goal image, the runtime's default
//! episode length), through the real driver over the pseudo-terminal, run to its end: the
//! simulator judges the default task at the end, the exit status says what it judged (0
//! reached, 6 not reached), and the episode's recording loads with the raw reader.
//!
//! The default task is a reach (T1) that the shipped checkpoint reaches reliably
//! (models/sim-demo/README.md), so the test requires the judgement "reached" and exit status 0.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bridge_data::raw::{RawOptions, find_trajectories, read_trajectory};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_shipped_checkpoint_reaches_its_default_task_and_the_sim_says_so() {
    let root = repository_root();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("short.toml");
    let recordings = dir.path().join("rec");
    std::fs::write(
        &config,
        format!(
            "[episode]\nreport = false\nrecording_dir = \"{}\"\nlog_file = \"{}\"\n",
            recordings.display(),
            dir.path().join("run.log").display()
        ),
    )
    .unwrap();
    // Run from the repository root so that the defaults (models/sim-demo) resolve as in the
    // README.
    let output = Command::new(env!("CARGO_BIN_EXE_bridge-run"))
        .current_dir(&root)
        .stdin(Stdio::null())
        .args(["--sim", "--no-keyboard", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.contains("blocks placed at the start of task"), "{out}");
    let steps = bridge_run::config::RuntimeConfig::default()
        .episode
        .max_steps;
    assert!(
        out.contains(&format!("episode 1: {steps} steps, completed")),
        "{out}"
    );
    let reached = out.contains("bridge-run: goal reached (the simulator's judgement of task");
    let missed = out.contains("bridge-run: goal NOT reached (the simulator's judgement of task");
    assert!(
        reached && !missed,
        "the default task must be reached: {out}"
    );
    assert!(out.contains("cm from its goal"), "{out}");
    assert_eq!(output.status.code(), Some(0), "{out}");
    let trajectories = find_trajectories(&recordings).unwrap();
    assert_eq!(trajectories.len(), 1, "{trajectories:?}");
    let trajectory = read_trajectory(&trajectories[0], &RawOptions::default()).unwrap();
    assert_eq!(trajectory.actions.len(), steps);
    assert_eq!(trajectory.len(), steps + 1);
    // The learned policy commands motion: not every recorded action is a zero delta.
    assert!(
        trajectory
            .actions
            .iter()
            .any(|a| a[..3].iter().any(|d| d.abs() > 1e-4)),
        "{:?}",
        trajectory.actions
    );
}
