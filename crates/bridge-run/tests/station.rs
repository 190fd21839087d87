//! The station workflow end to end on the virtual arm, with keys typed into a real
//! pseudo-terminal: a teleoperated session records three episodes and discards one, `prepare`
//! reads the two kept ones with the commanded actions, a replay reproduces a recorded path, and
//! goal capture writes a frame at the camera's size.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bridge_data::StepKind;
use bridge_data::cache::{Cache, CacheSettings};
use bridge_data::raw::{RawOptions, read_trajectory};
use bridge_train::prepare::{PrepareOptions, TrajectorySource, discover_inputs, prepare};
use support::*;

const RUN_TOML: &str = "[control]\nreset_speed_rad_s = 1.8\n[episode]\nreport = false\n\
     recording_dir = \"rec\"\nlog_file = \"run.log\"\n[camera]\nsim_fps = 8.0\n";

fn bridge_run(dir: &Path) -> Command {
    std::fs::write(dir.join("run.toml"), RUN_TOML).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_bridge-run"));
    command
        .current_dir(dir)
        .args(["--sim", "--config", "run.toml"]);
    command
}

fn count(text: &str, pattern: &str) -> usize {
    text.matches(pattern).count()
}

/// Holds `key` for about `seconds` as a terminal sends it: a press, the repeat delay, repeats.
fn hold(terminal: &mut PtyChild, key: u8, seconds: f64) {
    terminal.send(&[key]);
    std::thread::sleep(Duration::from_millis(500));
    let repeats = ((seconds - 0.5) / 0.033).max(0.0) as usize;
    for _ in 0..repeats {
        terminal.send(&[key]);
        std::thread::sleep(Duration::from_millis(33));
    }
}

/// One teleoperated episode: waits until episode `n` runs, holds `key`, ends it with Enter and
/// waits for the reset period, then answers `choice`.
fn teleoperate(terminal: &mut PtyChild, log: &Path, n: usize, key: u8, choice: u8) {
    let running = wait_for(Duration::from_secs(60), || {
        count(
            &std::fs::read_to_string(log).unwrap_or_default(),
            "-> running",
        ) >= n
    });
    assert!(
        running,
        "episode {n} never ran; terminal:\n{}",
        terminal.screen()
    );
    hold(terminal, key, 1.2);
    std::thread::sleep(Duration::from_millis(300));
    terminal.send(b"\r");
    let reset = wait_for(Duration::from_secs(20), || {
        count(&terminal.screen(), "reset the scene, then") >= n
    });
    assert!(
        reset,
        "no reset period after episode {n}; terminal:\n{}",
        terminal.screen()
    );
    terminal.send(&[choice]);
}

fn the_session(dir: &Path) -> PathBuf {
    let dates = dir.join("rec").join("push_the_block").join("00");
    let mut sessions: Vec<PathBuf> = std::fs::read_dir(&dates)
        .unwrap_or_else(|e| panic!("{}: {e}", dates.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    sessions.pop().unwrap()
}

/// The largest |action[entry]| of a trajectory.
fn largest(actions: &[[f32; 7]], entry: usize) -> f32 {
    actions.iter().map(|a| a[entry]).fold(0.0, f32::max)
}

#[test]
fn a_teleoperated_session_keeps_two_of_three_episodes_and_a_replay_follows_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = bridge_run(dir.path());
    command.args([
        "teleop",
        "--task",
        "push the block",
        "--episodes",
        "2",
        "--steps",
        "40",
    ]);
    let mut terminal = PtyChild::spawn(command);
    let log = dir.path().join("run.log");
    // 1: +y, discarded; 2: +y kept; 3: +z kept, which ends the session.
    teleoperate(&mut terminal, &log, 1, b'a', b'r');
    teleoperate(&mut terminal, &log, 2, b'a', b'n');
    teleoperate(&mut terminal, &log, 3, b'r', b'n');
    let status = terminal.wait_exit(Duration::from_secs(60));
    let screen = terminal.screen();
    let status = status.unwrap_or_else(|| panic!("the session did not end; terminal:\n{screen}"));
    assert_eq!(status.code(), Some(0), "terminal:\n{screen}");
    assert!(
        screen.contains("2 episode(s) kept, 1 discarded"),
        "{screen}"
    );
    assert!(screen.contains("teleop keys (hold to move)"), "{screen}");

    // Bridge's layout, numbered without the discarded episode's gap.
    let session = the_session(dir.path());
    let group = session.join("raw").join("traj_group0");
    let mut trajs: Vec<String> = std::fs::read_dir(&group)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    trajs.sort();
    assert_eq!(trajs, ["traj0", "traj1"]);
    let read = |n: usize| {
        read_trajectory(&group.join(format!("traj{n}")), &RawOptions::default()).unwrap()
    };
    let (first, second) = (read(0), read(1));
    for trajectory in [&first, &second] {
        assert_eq!(trajectory.language.as_deref(), Some("push the block"));
        assert!(
            trajectory.step_kinds.iter().all(|k| *k == StepKind::Teleop),
            "{:?}",
            trajectory.step_kinds
        );
        assert!(matches!(
            trajectory.outcome,
            Some(bridge_data::Outcome::Completed)
        ));
        // The gripper stays open, absolute.
        assert!(trajectory.actions.iter().all(|a| a[6] == 1.0));
    }
    // The commanded deltas: a held `a` is +y at 0.05 m/s (1 cm per 0.2 s step), `r` is +z.
    assert!(
        (largest(&first.actions, 1) - 0.01).abs() < 1e-3,
        "{:?}",
        first.actions
    );
    assert_eq!(largest(&first.actions, 2), 0.0);
    assert!(
        (largest(&second.actions, 2) - 0.01).abs() < 1e-3,
        "{:?}",
        second.actions
    );
    let moved_y_m = first.states.last().unwrap()[1] - first.states[0][1];
    assert!(moved_y_m > 0.03, "the arm moved {moved_y_m} m in y");

    // prepare reads the two kept episodes, with the commanded actions.
    let settings = CacheSettings::whole_frame(16);
    let sources: Vec<Arc<dyn TrajectorySource>> =
        discover_inputs(std::slice::from_ref(&session), &settings).unwrap();
    let cache_dir = dir.path().join("cache");
    prepare(&sources, &cache_dir, &PrepareOptions::new(settings)).unwrap();
    let cache = Cache::open(&cache_dir).unwrap();
    assert_eq!(cache.manifest().counts.episodes, 2);
    // One row per observation, the last of each episode a zero pad.
    let kept = [&first, &second];
    for (n, (entry, recorded)) in cache.trajectories().iter().zip(kept).enumerate() {
        assert!(entry.provenance.ends_with(&format!("traj{n}")), "{entry:?}");
        let rows = entry.first_row as usize..(entry.first_row + entry.rows) as usize;
        let cached: Vec<&[f32]> = cache.actions()[rows.start * 7..rows.end * 7]
            .chunks(7)
            .collect();
        assert_eq!(cached.len(), recorded.actions.len() + 1);
        for (row, action) in cached.iter().zip(&recorded.actions) {
            assert_eq!(*row, action.as_slice());
        }
    }

    // A replay of the first kept episode follows its path within 5 mm.
    let output = bridge_run(dir.path())
        .args(["--no-keyboard", "replay"])
        .arg(group.join("traj0"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let max_mm: f64 = text
        .split("max ")
        .nth(1)
        .and_then(|rest| rest.split(" mm").next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no path error printed:\n{text}"));
    assert!(max_mm <= 5.0, "replay path error {max_mm} mm:\n{text}");
    // The measured error, for the record (cargo test -- --nocapture).
    println!("replay path error: max {max_mm} mm");
}

#[test]
fn goal_capture_drives_to_the_pose_and_writes_a_frame_at_the_camera_size() {
    let dir = tempfile::tempdir().unwrap();
    let output = bridge_run(dir.path())
        .args([
            "--no-keyboard",
            "capture-goal",
            "--out",
            "goals/reach.png",
            "--pose",
            "0.32,0.05,0.12",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let goal = image::open(dir.path().join("goals/reach.png")).unwrap();
    assert_eq!((goal.width(), goal.height()), (640, 480));
    let reached: Vec<f64> = text
        .split("at x ")
        .nth(1)
        .and_then(|rest| rest.split(" m").next())
        .map(|xyz| {
            xyz.split([' ', 'y', 'z'])
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(reached.len(), 3, "no position printed:\n{text}");
    for (got, want) in reached.iter().zip([0.32, 0.05, 0.12]) {
        assert!((got - want).abs() < 0.005, "reached {reached:?}:\n{text}");
    }

    // A pose outside the workspace box is refused before anything moves.
    let output = bridge_run(dir.path())
        .args([
            "--no-keyboard",
            "capture-goal",
            "--out",
            "far.png",
            "--pose",
            "0.9,0,0.1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("outside the workspace box"), "{text}");
    assert!(!dir.path().join("far.png").exists());

    // With the keyboard: a live preview, refreshed until Enter saves the goal.
    let mut command = bridge_run(dir.path());
    command.args(["capture-goal", "--out", "goals/keyed.jpg"]);
    let mut terminal = PtyChild::spawn(command);
    let preview = dir.path().join("goals/keyed.preview.png");
    let first_preview = wait_for(Duration::from_secs(30), || preview.exists());
    assert!(
        first_preview,
        "no preview; terminal:\n{}",
        terminal.screen()
    );
    let written = std::fs::metadata(&preview).unwrap().modified().unwrap();
    let refreshed = wait_for(Duration::from_secs(5), || {
        std::fs::metadata(&preview).is_ok_and(|m| m.modified().is_ok_and(|t| t > written))
    });
    assert!(refreshed, "the preview was not refreshed");
    assert!(
        !dir.path().join("goals/keyed.jpg").exists(),
        "saved before Enter"
    );
    terminal.send(b"\r");
    let status = terminal.wait_exit(Duration::from_secs(30));
    let screen = terminal.screen();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "terminal:\n{screen}"
    );
    let goal = image::open(dir.path().join("goals/keyed.jpg")).unwrap();
    assert_eq!((goal.width(), goal.height()), (640, 480));
    assert!(screen.contains("live preview in"), "{screen}");
}
