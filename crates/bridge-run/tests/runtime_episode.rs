//! End to end on the virtual tabletop: a random-weight pixel checkpoint drives the virtual arm
//! through the real driver over the pseudo-terminal, with the rendered camera; episodes run back
//! to back; the recording loads with the Bridge raw reader.

mod support;

use std::time::Duration;

use bridge_data::raw::{RawOptions, read_trajectory};
use bridge_run::modes::{EpisodeEnd, Mode};
use bridge_run::policy::{GoalImage, MqePolicy, Policy};
use bridge_run::runtime::{Runtime, RuntimeOptions};
use bridge_run::sim::SimRig;
use support::*;

#[test]
fn episodes_on_the_sim_run_to_completion_and_their_recordings_load() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = tiny_checkpoint(dir.path());
    let policy = MqePolicy::load(&checkpoint, &candle_core::Device::Cpu).unwrap();
    let mut config = test_config(dir.path());
    config.episode.report = true;
    config.episode.language = Some("put the red block on the plate".into());
    let rig = SimRig::spawn(3).unwrap();
    let mut camera = rig.camera(10.0).unwrap();
    // The goal: the scene as the camera sees it now.
    let frame = camera::FrameSource::next_frame(&mut camera).unwrap();
    let goal_path = dir.path().join("goal.png");
    image::RgbImage::from_raw(frame.width_px, frame.height_px, frame.rgb.clone())
        .unwrap()
        .save(&goal_path)
        .unwrap();
    let goal = GoalImage::load(&goal_path, policy.input_size_px(), Some((640, 480))).unwrap();
    let arm = rig.connect().unwrap();
    let mut runtime = Runtime::start(
        config.clone(),
        arm,
        Box::new(camera),
        Box::new(policy),
        RuntimeOptions::default(),
    )
    .unwrap();

    let first = runtime.run_episode(&goal, 6).unwrap();
    assert_eq!(first.end, Some(EpisodeEnd::Completed), "{first:#?}");
    assert_eq!(first.steps, 6);
    assert_eq!(first.fault, None);
    assert_eq!(first.final_mode, Mode::Idle);
    assert_eq!(first.distances.len(), 6);
    assert!(first.distances.iter().all(|d| d.is_finite()));
    assert!(
        first.frame_to_command_s.len() >= 5,
        "{:?}",
        first.frame_to_command_s
    );
    assert!(first.frame_to_command_s.iter().all(|&s| s < 0.5));
    assert!(first.control_period_s.len() > 100);
    // The commanded position never leaves the workspace box.
    let w = &config.workspace;
    for i in 0..3 {
        assert!(
            first.final_state[i] > w.min_m[i] - 0.02 && first.final_state[i] < w.max_m[i] + 0.02
        );
    }

    // The recording: T actions, T+1 observations, loads with the Bridge reader.
    let recording = first.recording.clone().expect("recorded");
    let trajectory = read_trajectory(&recording, &RawOptions::default()).unwrap();
    assert_eq!(trajectory.actions.len(), 6, "{recording:?}");
    assert_eq!(
        std::fs::read_to_string(recording.join("lang.txt"))
            .unwrap()
            .trim(),
        "put the red block on the plate"
    );
    assert!(recording.join("images0/im_6.jpg").exists());
    let report_dir = first.report_dir.clone().expect("report written");
    assert!(report_dir.join("events.txt").exists());

    // A second episode on the same runtime resets and runs again.
    let second = runtime.run_episode(&goal, 3).unwrap();
    assert_eq!(second.end, Some(EpisodeEnd::Completed));
    assert_eq!(second.episode, 2);
    assert_ne!(second.recording, first.recording);
    assert!(
        second.events.iter().any(|e| e.contains("moving-to-start")),
        "{:#?}",
        second.events
    );
    runtime.park_and_stop().unwrap();
    let joints = rig.virtual_arm().joint_positions_rad();
    for (i, sleep) in widowx::joints::SLEEP_POSE_RAD.iter().enumerate() {
        assert!(
            (joints[i] - sleep).abs() < 0.05,
            "joint {i} at {} not parked",
            joints[i]
        );
    }
    assert_eq!(
        rig.virtual_arm()
            .register(1, &widowx::control_table::reg::TORQUE_ENABLE),
        Some(0)
    );
    let log = wait_log(&config.episode.log_file, "mode parking -> done");
    assert!(log.contains("mode idle -> moving-to-start"), "{log}");
    assert!(log.contains("mode parking -> done"), "{log}");
}

#[test]
fn a_goal_for_another_input_size_is_refused_before_the_arm_moves() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let (rig, mut runtime) = start_on_sim(
        config,
        Box::new(SyntheticCamera::new(10.0)),
        Box::new(ScriptedPolicy::constant([0.0; 7])),
    );
    let before = rig.virtual_arm().joint_positions_rad();
    let err = runtime
        .run_episode(&flat_goal(64), 5)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("64 px") && err.contains("policy's input is 32 px"),
        "{err}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(runtime.status().mode, Mode::Idle);
    let after = rig.virtual_arm().joint_positions_rad();
    assert!(
        (0..6).all(|i| (before[i] - after[i]).abs() < 1e-3),
        "{before:?} {after:?}"
    );
    runtime.park_and_stop().unwrap();
}
