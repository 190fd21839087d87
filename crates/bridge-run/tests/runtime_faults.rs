//! Fault injection on the virtual arm, each fault while the policy drives: the arm must end
//! holding or parked, and the operator must be told why (episode summary, log file).

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bridge_run::messages::ControlStatus;
use bridge_run::{OperatorCommand, Runtime, RuntimeConfig};

use bridge_run::mailbox::Mailbox;
use bridge_run::modes::{EpisodeEnd, Mode, Response};
use bridge_run::runtime::{AfterPark, EpisodeReport};
use bridge_run::sim::SimRig;
use support::*;
use widowx::control_table::reg;

/// A small constant step, so the arm visibly moves while the fault is injected.
const STEP: [f32; 7] = [0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];

/// Waits until the policy has driven `steps` steps of the episode.
fn wait_until_driving(watch: &Mailbox<ControlStatus>, steps: usize) {
    assert!(
        wait_for(Duration::from_secs(20), || {
            let s = watch.get();
            s.mode == Mode::Running && s.steps_applied >= steps
        }),
        "the policy never drove: {:?} ({:?})",
        watch.get().mode,
        watch.get().last_fault
    );
}

fn torque_on(rig: &SimRig, id: u8) -> bool {
    rig.virtual_arm().register(id, &reg::TORQUE_ENABLE) == Some(1)
}

/// Runs one episode while `inject` runs beside it (it gets the rig and the status watch).
fn episode_with_fault(
    config: bridge_run::RuntimeConfig,
    camera: SyntheticCamera,
    policy: ScriptedPolicy,
    inject: impl FnOnce(&SimRig, &Mailbox<ControlStatus>) + Send,
) -> (SimRig, bridge_run::Runtime, EpisodeReport) {
    let goal = flat_goal(policy.size_px);
    let (rig, mut runtime) = start_on_sim(config, Box::new(camera), Box::new(policy));
    let watch = runtime.status_watch();
    let report = std::thread::scope(|scope| {
        let rig = &rig;
        let watch = &watch;
        scope.spawn(move || inject(rig, watch));
        runtime.run_episode(&goal, 60).unwrap()
    });
    (rig, runtime, report)
}

/// [`episode_with_fault`] on the test config under `dir` with a 15 fps synthetic camera; also
/// returns the config.
fn faulty_episode(
    dir: &Path,
    policy: ScriptedPolicy,
    inject: impl FnOnce(&SimRig, &Mailbox<ControlStatus>) + Send,
) -> (RuntimeConfig, SimRig, Runtime, EpisodeReport) {
    let config = test_config(dir);
    let (rig, runtime, report) =
        episode_with_fault(config.clone(), SyntheticCamera::new(15.0), policy, inject);
    (config, rig, runtime, report)
}

/// A constant-step episode under `dir`; once the policy has driven two steps, `fault` happens to
/// the rig.
fn arm_fault_episode(
    dir: &Path,
    fault: impl FnOnce(&SimRig) + Send,
) -> (RuntimeConfig, SimRig, Runtime, EpisodeReport) {
    faulty_episode(dir, ScriptedPolicy::constant(STEP), |rig, watch| {
        wait_until_driving(watch, 2);
        fault(rig);
    })
}

/// Over 300 ms, none of the first six joints moves by `tolerance_rad` or more.
fn assert_arm_stays(rig: &SimRig, tolerance_rad: f64) {
    let before = rig.virtual_arm().joint_positions_rad();
    std::thread::sleep(Duration::from_millis(300));
    let after = rig.virtual_arm().joint_positions_rad();
    assert!(
        (0..6).all(|i| (before[i] - after[i]).abs() < tolerance_rad),
        "{before:?} {after:?}"
    );
}

/// The runtime's shutdown fails (the arm is not parked) with a message holding every one of
/// `words`.
fn assert_stop_leaves_unparked(runtime: Runtime, words: &[&str]) {
    let err = runtime.park_and_stop().unwrap_err().to_string();
    assert!(words.iter().all(|w| err.contains(w)), "{err}");
}

/// The episode ended in a fault hold (torque on, the operator decides) caused by `kind`.
fn assert_fault_hold(report: &EpisodeReport, kind: &str) {
    assert_eq!(
        report.end,
        Some(EpisodeEnd::Fault(Response::Hold)),
        "{report:#?}"
    );
    assert_eq!(report.fault.map(|f| f.kind()), Some(kind));
    assert_eq!(report.final_mode, Mode::FaultHold);
}

/// A policy fault of `kind` with nothing injected beside it: the episode under `dir` ends in a
/// fault hold with torque on.
fn policy_fault_holds(
    dir: &Path,
    policy: ScriptedPolicy,
    kind: &str,
) -> (RuntimeConfig, SimRig, Runtime, EpisodeReport) {
    let (config, rig, runtime, report) = faulty_episode(dir, policy, |_, _| {});
    assert_fault_hold(&report, kind);
    assert!(torque_on(&rig, 2));
    (config, rig, runtime, report)
}

fn assert_told(report: &EpisodeReport, log: &str, words: &str) {
    assert!(
        report.summary.contains(words),
        "summary: {}",
        report.summary
    );
    assert!(
        report.safety_events.iter().any(|e| e.contains(words)),
        "{:#?}",
        report.safety_events
    );
    assert!(log.contains(words), "log: {log}");
}

#[test]
fn a_stalled_camera_holds_the_arm() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let camera = SyntheticCamera::new(15.0);
    let stall = camera.stall.clone();
    let (rig, runtime, report) = episode_with_fault(
        config.clone(),
        camera,
        ScriptedPolicy::constant(STEP),
        |_, watch| {
            wait_until_driving(watch, 2);
            stall.store(true, Ordering::Relaxed);
        },
    );
    assert_fault_hold(&report, "camera-timeout");
    // Holding: torque on, and the arm stays where it stopped.
    assert_arm_stays(&rig, 0.01);
    assert!(torque_on(&rig, 4));
    let log = log_text(&config);
    assert_told(&report, &log, "camera stalled");
    // The policy refused the old frames before the watchdog fired.
    assert!(
        log.contains("step skipped, the arm holds: newest frame is"),
        "{log}"
    );
    stall.store(false, Ordering::Relaxed);
    // The runtime's own shutdown leaves the arm holding, torque on, and says so.
    assert_stop_leaves_unparked(
        runtime,
        &[
            "not parked: the arm holds where it stopped with torque on",
            "camera stalled",
        ],
    );
    assert!(torque_on(&rig, 4));
}

#[test]
fn a_vanished_port_leaves_the_servos_holding_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (config, rig, runtime, report) =
        arm_fault_episode(dir.path(), |rig| rig.virtual_arm().vanish());
    assert_eq!(report.fault.map(|f| f.kind()), Some("bus-lost"));
    assert_eq!(report.final_mode, Mode::EmergencyHold);
    // The servos keep their last goal with torque on: nothing drops.
    assert!((1..=8).all(|id| torque_on(&rig, id)));
    let log = log_text(&config);
    assert_told(&report, &log, "servo bus lost");
    assert_stop_leaves_unparked(
        runtime,
        &["not parked: the arm holds where it stopped", "bus lost"],
    );
}

#[test]
fn a_servo_overload_parks_and_offers_a_reboot() {
    let dir = tempfile::tempdir().unwrap();
    let (config, rig, mut runtime, report) = arm_fault_episode(dir.path(), |rig| {
        rig.virtual_arm().inject_overload(8); // wrist_rotate
    });
    assert_eq!(report.end, Some(EpisodeEnd::Fault(Response::Park)));
    let fault = report.fault.unwrap();
    assert_eq!(fault.kind(), "hardware-error");
    let watch = runtime.status_watch();
    assert!(
        wait_for(Duration::from_secs(20), || watch.get().mode == Mode::Done),
        "{:?}",
        watch.get().mode
    );
    let joints = rig.virtual_arm().joint_positions_rad();
    for i in 0..5 {
        assert!(
            (joints[i] - widowx::joints::SLEEP_POSE_RAD[i]).abs() < 0.05,
            "joint {i}: {joints:?}"
        );
    }
    assert!(!torque_on(&rig, 4), "parked means torque off");
    let log = log_text(&config);
    assert_told(
        &report,
        &log,
        "servo 8 (wrist_rotate) reports a hardware error: overload",
    );
    assert!(log.contains("press b to reboot"), "{log}");
    // Space before the reboot does not resume: the servo still reports its error.
    runtime
        .commands()
        .send(OperatorCommand::TogglePause)
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || log_text(&config).contains(
            "not resuming: the wrist_rotate servo still reports a hardware error; press b"
        )),
        "{}",
        log_text(&config)
    );
    assert!(!watch.get().resume_requested);
    // The operator takes the offer: b reboots the faulted servo, then space resumes.
    runtime
        .commands()
        .send(OperatorCommand::RebootFaulted)
        .unwrap();
    assert!(wait_for(Duration::from_secs(10), || log_text(&config)
        .contains("servo 8 (wrist_rotate) rebooted")));
    assert_eq!(
        rig.virtual_arm().register(8, &reg::HARDWARE_ERROR_STATUS),
        Some(0)
    );
    runtime
        .commands()
        .send(OperatorCommand::TogglePause)
        .unwrap();
    assert_eq!(
        runtime.await_operator_after_park().unwrap(),
        AfterPark::Resume
    );
    // Nothing moved while the runtime waited: the arm is still parked, torque off.
    assert_eq!(watch.get().mode, Mode::Done);
    assert!(!torque_on(&rig, 4));
    // The episode runs again, from the start pose, to its end.
    let goal = flat_goal(32);
    let again = runtime.run_episode(&goal, 3).unwrap();
    assert_eq!(again.end, Some(EpisodeEnd::Completed), "{again:#?}");
    assert_eq!(again.steps, 3);
    runtime.park_and_stop().unwrap();
}

#[test]
fn a_nan_action_holds_the_arm() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = ScriptedPolicy::constant(STEP);
    policy.nan_at = Some(3);
    let (config, _rig, runtime, report) =
        policy_fault_holds(dir.path(), policy, "non-finite-action");
    let log = log_text(&config);
    assert_told(&report, &log, "non-finite action (component 2");
    // Nothing of the NaN step was recorded: every recorded action is finite.
    let recording = report.recording.clone().unwrap();
    let trajectory =
        bridge_data::raw::read_trajectory(&recording, &bridge_data::raw::RawOptions::default())
            .unwrap();
    assert_eq!(trajectory.actions.len(), 3);
    assert!(trajectory.actions.iter().flatten().all(|a| a.is_finite()));
    // The operator parks; then the runtime stops cleanly.
    runtime.commands().send(OperatorCommand::Park).unwrap();
    let watch = runtime.status_watch();
    assert!(wait_for(Duration::from_secs(20), || watch.get().mode == Mode::Done));
    runtime.park_and_stop().unwrap();
}

#[test]
fn a_policy_too_slow_holds_the_arm() {
    let dir = tempfile::tempdir().unwrap();
    let mut policy = ScriptedPolicy::constant(STEP);
    policy.delay = Duration::from_millis(1600);
    let (config, rig, runtime, report) = policy_fault_holds(dir.path(), policy, "policy-timeout");
    assert_told(
        &report,
        &log_text(&config),
        "policy too slow: no action for",
    );
    // Nobody answers (no keyboard): torque off where it stands, nothing moves.
    let before = rig.virtual_arm().joint_positions_rad();
    runtime
        .cut_torque_unattended(Duration::from_secs(5))
        .unwrap();
    assert!((1..=9).all(|id| !torque_on(&rig, id)));
    let after = rig.virtual_arm().joint_positions_rad();
    assert!(
        (0..6).all(|i| (before[i] - after[i]).abs() < 0.02),
        "{before:?} {after:?}"
    );
    assert!(log_text(&config).contains("the unattended hold ran out, torque off where it stands"));
    runtime.park_and_stop().unwrap();
}

/// The goal position register of every servo of the arm.
fn goal_ticks(rig: &SimRig) -> Vec<Option<i64>> {
    (1..=9)
        .map(|id| rig.virtual_arm().register(id, &reg::GOAL_POSITION))
        .collect()
}

#[test]
fn after_a_tracking_fault_no_goal_position_changes_until_the_operator_acts() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // Any motion is a tracking error: the fault comes while the policy drives.
    config.safety.max_tracking_error_rad = 0.002;
    let (rig, runtime, report) = episode_with_fault(
        config.clone(),
        SyntheticCamera::new(15.0),
        ScriptedPolicy::constant([0.03, 0.0, 0.03, 0.0, 0.0, 0.0, 1.0]),
        |_, _| {},
    );
    assert_eq!(
        report.fault.map(|f| f.kind()),
        Some("tracking"),
        "{report:#?}"
    );
    assert_eq!(report.final_mode, Mode::EmergencyHold);
    // The freeze itself writes the measured pose as the goal on the fault's tick; from two
    // control ticks later on, nothing may write a goal again.
    let watch = runtime.status_watch();
    let fault_tick = watch.get().ticks;
    assert!(wait_for(Duration::from_secs(2), || watch.get().ticks
        >= fault_tick + 2));
    let held = goal_ticks(&rig);
    // The runtime goes on for 5 s, then shuts down: not one goal position may change.
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        assert_eq!(
            goal_ticks(&rig),
            held,
            "a goal changed after {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_stop_leaves_unparked(runtime, &["not parked", "from its setpoint"]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(goal_ticks(&rig), held, "the shutdown moved the arm");
    assert!((1..=8).all(|id| torque_on(&rig, id)));
    let log = log_text(&config);
    assert!(!log.contains("-> parking"), "{log}");
}
