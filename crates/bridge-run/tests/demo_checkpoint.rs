//! The README's first command on the shipped demo: `bridge-run --sim` with its defaults (the
//! checkpoint in models/sim-demo and its first goal image), through the real driver over the
//! pseudo-terminal; the episode's recording loads with the raw reader.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bridge_data::raw::{RawOptions, find_trajectories, read_trajectory};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_shipped_checkpoint_runs_an_episode_on_the_sim_and_its_recording_loads() {
    let root = repository_root();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("short.toml");
    let recordings = dir.path().join("rec");
    std::fs::write(
        &config,
        format!(
            "[episode]\nmax_steps = 6\nreport = false\nrecording_dir = \"{}\"\nlog_file = \"{}\"\n",
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
    assert!(output.status.success(), "{out}");
    assert!(out.contains("blocks placed at the start of task"), "{out}");
    assert!(out.contains("episode 1: 6 steps, completed"), "{out}");
    let trajectories = find_trajectories(&recordings).unwrap();
    assert_eq!(trajectories.len(), 1, "{trajectories:?}");
    let trajectory = read_trajectory(&trajectories[0], &RawOptions::default()).unwrap();
    assert_eq!(trajectory.actions.len(), 6);
    assert_eq!(trajectory.len(), 7);
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
