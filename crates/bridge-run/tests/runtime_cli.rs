//! The `bridge-run` binary without a terminal: bad inputs are refused with clear errors before
//! the arm moves, `config` prints the resolved configuration, a `--sim --no-keyboard` run
//! completes, and SIGTERM parks before exit.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn bridge_run(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bridge-run"));
    command.current_dir(dir).stdin(Stdio::null());
    command
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What `bridge-run --sim --no-keyboard --checkpoint CHECKPOINT [--goal GOAL]` says, after
/// checking that it refused the input (exit status 2).
fn refused(dir: &Path, checkpoint: &Path, goal: Option<&Path>) -> String {
    let mut command = bridge_run(dir);
    command
        .args(["--sim", "--no-keyboard", "--checkpoint"])
        .arg(checkpoint);
    if let Some(goal) = goal {
        command.arg("--goal").arg(goal);
    }
    let output = command.output().unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "refused input: {out}");
    out
}

/// A PNG of `width_px` x `height_px`.
fn png(dir: &Path, name: &str, width_px: u32, height_px: u32) -> PathBuf {
    let path = dir.join(name);
    image::RgbImage::from_pixel(width_px, height_px, image::Rgb([80, 90, 100]))
        .save(&path)
        .unwrap();
    path
}

/// A fast configuration file: short episodes, quick resets, a slow sim camera (less CPU).
fn fast_config(dir: &Path, max_steps: usize) -> PathBuf {
    let path = dir.join("fast.toml");
    std::fs::write(
        &path,
        format!(
            "[control]\nreset_speed_rad_s = 1.8\n[episode]\nmax_steps = {max_steps}\nreport = false\n\
             recording_dir = \"rec\"\nlog_file = \"run.log\"\n[camera]\nsim_fps = 8.0\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn wrong_goals_and_checkpoints_are_refused_before_the_arm_moves() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = tiny_checkpoint(dir.path());
    let small = png(dir.path(), "small.png", 320, 240);
    let out = refused(dir.path(), &checkpoint, Some(&small));
    assert!(
        out.contains("small.png") && out.contains("320x240") && out.contains("640x480"),
        "{out}"
    );
    assert!(!out.contains("moving-to-start"), "{out}");

    let not_an_image = dir.path().join("goal.png");
    std::fs::write(&not_an_image, "these are not pixels").unwrap();
    let out = refused(dir.path(), &checkpoint, Some(&not_an_image));
    assert!(
        out.contains("goal.png") && out.contains("PNG or JPEG"),
        "{out}"
    );

    // A checkpoint trained on states, not camera pixels.
    let state_dir = dir.path().join("state-checkpoint");
    let mut model = mqe::ModelConfig::state(7, 7);
    (model.latent_dim, model.mlp_hidden, model.actor_hidden) = (32, vec![32], vec![32]);
    mqe::Agent::new(
        model,
        mqe::TrainConfig::default(),
        &candle_core::Device::Cpu,
    )
    .unwrap()
    .save_inference(&state_dir, &mqe::CheckpointMeta::default())
    .unwrap();
    let goal = png(dir.path(), "ok.png", 640, 480);
    let out = refused(dir.path(), &state_dir, Some(&goal));
    assert!(out.contains("model.obs") && out.contains("pixels"), "{out}");

    let out = refused(dir.path(), &dir.path().join("nowhere"), None);
    assert!(
        out.contains("no checkpoint at") && out.contains("nowhere"),
        "{out}"
    );

    // A corrupt checkpoint file: said once, in words, with the file's name; no colour codes in
    // redirected output.
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("config.toml"), "junk\n").unwrap();
    let out = refused(dir.path(), &corrupt, Some(&goal));
    assert_eq!(out.matches("corrupt or truncated").count(), 1, "{out}");
    assert_eq!(out.matches("key with no value").count(), 1, "{out}");
    assert!(out.contains("config.toml"), "{out}");
    assert!(
        !out.contains('\x1b'),
        "colour codes in redirected output: {out:?}"
    );
}

#[test]
fn a_simulator_checkpoint_is_refused_on_a_real_port_and_a_real_arm_has_no_default() {
    let dir = tempfile::tempdir().unwrap();
    let goal = png(dir.path(), "goal.png", 640, 480);
    // No U2D2 here: the port is a path that does not exist.
    let port = dir.path().join("ttyDXL-absent");
    let on_the_real_port = |checkpoint: Option<&Path>, extra: &[&str]| {
        let mut command = bridge_run(dir.path());
        command.args(["--no-keyboard", "--goal"]).arg(&goal);
        command.arg("--port").arg(&port).args(extra);
        if let Some(checkpoint) = checkpoint {
            command.arg("--checkpoint").arg(checkpoint);
        }
        command.output().unwrap()
    };

    // The shipped demo was trained in the simulator and says so in its config.toml.
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/sim-demo");
    let output = on_the_real_port(Some(&demo), &[]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "refused input: {out}");
    assert!(
        out.contains("trained on simulator data") && out.contains("--allow-sim-checkpoint"),
        "{out}"
    );
    assert!(
        !out.contains("connecting to the arm"),
        "refused before the port: {out}"
    );

    // The operator may accept it: then the run goes on to the port (absent here).
    let output = on_the_real_port(Some(&demo), &["--allow-sim-checkpoint"]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "refused input: {out}");
    assert!(!out.contains("never seen a real camera"), "{out}");
    assert!(
        out.contains("connecting to the arm") && out.contains("ttyDXL-absent"),
        "{out}"
    );

    // A checkpoint of unrecorded origin (random weights) is not refused for its data.
    let random = tiny_checkpoint(dir.path());
    let out = text(&on_the_real_port(Some(&random), &[]));
    assert!(!out.contains("never seen a real camera"), "{out}");

    // Without --sim there is no default checkpoint.
    let output = on_the_real_port(None, &[]);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "refused input: {out}");
    assert!(
        out.contains("--checkpoint DIR is required on a real arm"),
        "{out}"
    );
}

#[test]
fn without_a_terminal_it_refuses_to_start_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let output = bridge_run(dir.path()).args(["--sim"]).output().unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "refused input: {out}");
    assert!(
        out.contains("not a terminal") && out.contains("--no-keyboard"),
        "{out}"
    );
}

#[test]
fn config_prints_the_resolved_configuration_and_rejects_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = fast_config(dir.path(), 7);
    let output = bridge_run(dir.path())
        .arg("config")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        out.contains("max_steps = 7") && out.contains("control_period_s = 0.01"),
        "{out}"
    );
    let parsed: bridge_run::RuntimeConfig = toml::from_str(&out).unwrap();
    assert_eq!(parsed.episode.max_steps, 7);

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[safety]\nmax_speed = 3\n").unwrap();
    let output = bridge_run(dir.path())
        .arg("config")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(2), "refused input: {out}");
    assert!(
        out.contains("bad.toml") && out.contains("max_speed"),
        "{out}"
    );
}

/// `bridge-run --sim --no-keyboard` with this checkpoint, goal and configuration, to its end.
fn sim_run(dir: &Path, checkpoint: &Path, goal: &Path, config: &Path) -> std::process::Output {
    bridge_run(dir)
        .args(["--sim", "--no-keyboard", "--checkpoint"])
        .arg(checkpoint)
        .arg("--goal")
        .arg(goal)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn a_sim_run_completes_and_sigterm_parks_before_exit() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = tiny_checkpoint(dir.path());
    let goal = png(dir.path(), "goal.png", 640, 480);
    let config = fast_config(dir.path(), 3);
    let output = sim_run(dir.path(), &checkpoint, &goal, &config);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("episode 1: 3 steps, completed"), "{out}");
    assert!(out.contains("recording: "), "{out}");
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
    assert!(log.contains("mode parking -> done"), "{log}");
    // The recording says it came from the simulator, so a cache made of it says so too.
    let recorded = bridge_data::raw::find_trajectories(&dir.path().join("rec")).unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(
        bridge_data::provenance::collector_of(&recorded[0]).unwrap(),
        bridge_data::provenance::Collector::Simulator
    );

    // A long run, stopped by SIGTERM: it parks, then exits.
    let config = fast_config(dir.path(), 1000);
    std::fs::remove_file(dir.path().join("run.log")).unwrap();
    let child = bridge_run(dir.path())
        .args(["--sim", "--no-keyboard", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--goal")
        .arg(&goal)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log_path = dir.path().join("run.log");
    let running = wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("mode idle -> running"))
    });
    assert!(
        running,
        "never ran: {:?}",
        std::fs::read_to_string(&log_path)
    );
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    let out = text(&output);
    // Parked, but the run ended early: exit code 5 (operator abort), not 0.
    assert_eq!(output.status.code(), Some(5), "{out}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("mode running -> parking (operator: park and quit)"),
        "{log}"
    );
    assert!(log.contains("mode parking -> done"), "{log}");
    assert!(out.contains("parked, torque off"), "{out}");
}

#[test]
fn without_a_keyboard_a_fault_holds_then_cuts_torque_where_the_arm_stands_and_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = tiny_checkpoint(dir.path());
    let goal = png(dir.path(), "goal.png", 640, 480);
    let config = fast_config(dir.path(), 50);
    // Any motion is a tracking fault; nobody answers the hold for 1 s.
    let mut text_config = std::fs::read_to_string(&config).unwrap();
    text_config.push_str("[safety]\nmax_tracking_error_rad = 0.002\nunattended_hold_s = 1.0\n");
    std::fs::write(&config, text_config).unwrap();
    let output = sim_run(dir.path(), &checkpoint, &goal, &config);
    let out = text(&output);
    assert_eq!(output.status.code(), Some(3), "a safety fault: {out}");
    assert!(
        out.contains("the arm holds where it stopped, torque on (")
            && out.contains("from its setpoint"),
        "{out}"
    );
    assert!(
        out.contains("torque off where the arm stands (not parked)"),
        "{out}"
    );
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
    assert!(
        log.contains("-> torque-off (no operator: the unattended hold ran out"),
        "{log}"
    );
    assert!(
        !log.contains("-> parking"),
        "the arm was moved after the fault: {log}"
    );
}

#[test]
fn bench_prints_the_four_rounds_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let output = bridge_run(dir.path())
        .args(["bench", "--sim", "--seconds", "1.5", "--size-px", "32"])
        .output()
        .unwrap();
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("jitter p99") && stdout.contains("f2c p50"),
        "{stdout}"
    );
    for round in [
        "quiet, normal priority",
        "quiet, SCHED_FIFO",
        "loaded, normal priority",
        "loaded, SCHED_FIFO",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(round))
            .unwrap_or_else(|| panic!("no row {round}: {stdout}"));
        // Every column but the name holds a number of milliseconds.
        let cells: Vec<&str> = line.split_whitespace().collect();
        let numbers = cells[cells.len() - 7..]
            .iter()
            .filter(|c| c.parse::<f64>().is_ok_and(|ms| ms >= 0.0))
            .count();
        assert_eq!(numbers, 7, "{line}");
    }
}
