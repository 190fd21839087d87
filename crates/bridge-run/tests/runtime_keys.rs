//! Operator commands injected through the runtime's command channel (what the keyboard thread
//! sends) while the policy drives the virtual arm.

mod support;

use std::time::Duration;

use bridge_run::mailbox::Mailbox;
use bridge_run::messages::ControlStatus;
use bridge_run::modes::{Axis, EpisodeEnd, Mode};
use bridge_run::runtime::EpisodeReport;
use bridge_run::sim::SimRig;
use bridge_run::{OperatorCommand, Runtime};
use crossbeam_channel::Sender;
use support::*;
use widowx::control_table::reg;
use widowx::kinematics::forward;

const STEP: [f32; 7] = [0.005, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];

fn wait_mode(watch: &Mailbox<ControlStatus>, mode: Mode) {
    assert!(
        wait_for(Duration::from_secs(20), || watch.get().mode == mode),
        "mode {} never came (now {})",
        mode,
        watch.get().mode
    );
}

fn wait_driving(watch: &Mailbox<ControlStatus>) {
    assert!(wait_for(Duration::from_secs(20), || {
        let s = watch.get();
        s.mode == Mode::Running && s.steps_applied >= 2
    }));
}

/// Runs an episode of up to 200 steps with `operator` typing beside it.
fn episode_with_operator(
    operator: impl FnOnce(&SimRig, &Mailbox<ControlStatus>, &Sender<OperatorCommand>) + Send,
) -> (tempfile::TempDir, SimRig, Runtime, EpisodeReport) {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let policy = ScriptedPolicy::constant(STEP);
    let goal = flat_goal(policy.size_px);
    let (rig, mut runtime) = start_on_sim(
        config,
        Box::new(SyntheticCamera::new(15.0)),
        Box::new(policy),
    );
    let watch = runtime.status_watch();
    let commands = runtime.commands();
    let report = std::thread::scope(|scope| {
        let (rig, watch, commands) = (&rig, &watch, &commands);
        scope.spawn(move || operator(rig, watch, commands));
        runtime.run_episode(&goal, 200).unwrap()
    });
    (dir, rig, runtime, report)
}

fn measured_xyz(watch: &Mailbox<ControlStatus>) -> [f64; 3] {
    forward(&watch.get().state.arm_positions_rad()).position_m
}

#[test]
fn pause_jog_gripper_resume_then_quit() {
    let (dir, rig, runtime, report) = episode_with_operator(|rig, watch, commands| {
        wait_driving(watch);
        commands.send(OperatorCommand::TogglePause).unwrap();
        wait_mode(watch, Mode::Paused);
        let steps_at_pause = watch.get().steps_applied;
        std::thread::sleep(Duration::from_millis(400)); // the last step's move settles
        let before = watch.get().commanded.xyz_m;
        let jog = |axis, positive| {
            commands
                .send(OperatorCommand::Jog { axis, positive })
                .unwrap()
        };
        jog(Axis::X, true);
        jog(Axis::Z, true);
        jog(Axis::Y, false);
        assert!(wait_for(Duration::from_secs(3), || {
            let c = watch.get().commanded.xyz_m;
            (c[0] - before[0] - 0.01).abs() < 1e-9
                && (c[1] - before[1] + 0.01).abs() < 1e-9
                && (c[2] - before[2] - 0.01).abs() < 1e-9
        }));
        // The arm follows the jog in the base frame.
        let target = watch.get().commanded.xyz_m;
        assert!(
            wait_for(Duration::from_secs(3), || {
                let m = measured_xyz(watch);
                (0..3).all(|i| (m[i] - target[i]).abs() < 0.004)
            }),
            "measured {:?} target {target:?}",
            measured_xyz(watch)
        );
        // While paused the policy does not drive.
        assert_eq!(watch.get().steps_applied, steps_at_pause);
        commands.send(OperatorCommand::ToggleGripper).unwrap();
        assert!(wait_for(Duration::from_secs(2), || watch
            .get()
            .gripper_closed));
        let gripper_pwm = rig.virtual_arm().register(9, &reg::GOAL_PWM).unwrap();
        assert!(
            gripper_pwm < 0,
            "closing drives negative PWM, got {gripper_pwm}"
        );
        commands.send(OperatorCommand::TogglePause).unwrap();
        wait_mode(watch, Mode::Running);
        assert!(wait_for(Duration::from_secs(5), || watch
            .get()
            .steps_applied
            > steps_at_pause));
        commands.send(OperatorCommand::Quit).unwrap();
    });
    assert_eq!(
        report.end,
        Some(EpisodeEnd::Operator(OperatorCommand::Quit)),
        "{report:#?}"
    );
    assert!(report.quit_requested());
    let watch = runtime.status_watch();
    wait_mode(&watch, Mode::Done);
    let log = wait_log(&dir.path().join("bridge-run.log"), "mode parking -> done");
    for line in [
        "mode running -> paused (operator: pause/resume)",
        "mode paused (operator: jog +x)",
        "mode paused (operator: jog -y)",
        "mode paused -> running (operator: pause/resume)",
        "mode running -> parking (operator: park and quit)",
        "gripper closes",
        "mode parking -> done",
    ] {
        assert!(log.contains(line), "{line} missing from\n{log}");
    }
    assert_eq!(rig.virtual_arm().register(2, &reg::TORQUE_ENABLE), Some(0));
    runtime.park_and_stop().unwrap();
}

#[test]
fn emergency_holds_with_torque_then_cuts_it_then_h_parks() {
    let (dir, rig, runtime, report) = episode_with_operator(|_, watch, commands| {
        wait_driving(watch);
        commands.send(OperatorCommand::Emergency).unwrap();
    });
    assert_eq!(
        report.end,
        Some(EpisodeEnd::Operator(OperatorCommand::Emergency))
    );
    assert_eq!(report.final_mode, Mode::EmergencyHold);
    let watch = runtime.status_watch();
    // Frozen with torque on: a raised arm must not drop.
    let held = rig.virtual_arm().joint_positions_rad();
    std::thread::sleep(Duration::from_millis(300));
    let later = rig.virtual_arm().joint_positions_rad();
    assert!(
        (0..6).all(|i| (held[i] - later[i]).abs() < 0.02),
        "{held:?} {later:?}"
    );
    assert!((1..=8).all(|id| rig.virtual_arm().register(id, &reg::TORQUE_ENABLE) == Some(1)));
    // The runtime cannot start an episode out of an emergency: only the operator can.
    let commands = runtime.commands();
    commands.send(OperatorCommand::Emergency).unwrap();
    wait_mode(&watch, Mode::TorqueOff);
    assert!((1..=9).all(|id| rig.virtual_arm().register(id, &reg::TORQUE_ENABLE) == Some(0)));
    commands.send(OperatorCommand::Park).unwrap();
    wait_mode(&watch, Mode::Done);
    let joints = rig.virtual_arm().joint_positions_rad();
    assert!((joints[1] - widowx::joints::SLEEP_POSE_RAD[1]).abs() < 0.05);
    let log = wait_log(&dir.path().join("bridge-run.log"), "mode parking -> done");
    assert!(
        log.contains("mode running -> emergency-hold (operator: emergency)"),
        "{log}"
    );
    assert!(
        log.contains("mode emergency-hold -> torque-off (operator: emergency)"),
        "{log}"
    );
    assert!(
        log.contains("mode torque-off -> parking (operator: park)"),
        "{log}"
    );
    runtime.park_and_stop().unwrap();
}

#[test]
fn h_parks_and_the_next_episode_starts_from_the_parked_arm() {
    let (_dir, rig, mut runtime, report) = episode_with_operator(|_, watch, commands| {
        wait_driving(watch);
        commands.send(OperatorCommand::Park).unwrap();
    });
    assert_eq!(
        report.end,
        Some(EpisodeEnd::Operator(OperatorCommand::Park))
    );
    assert!(!report.quit_requested());
    let watch = runtime.status_watch();
    wait_mode(&watch, Mode::Done);
    assert_eq!(rig.virtual_arm().register(4, &reg::TORQUE_ENABLE), Some(0));
    let next = runtime.run_episode(&flat_goal(32), 3).unwrap();
    assert_eq!(next.end, Some(EpisodeEnd::Completed), "{next:#?}");
    assert_eq!(next.steps, 3);
    runtime.park_and_stop().unwrap();
}
