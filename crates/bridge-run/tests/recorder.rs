//! The recorder thread: episodes it writes load with the raw reader, also mid-episode (what a
//! crash would leave), a full queue drops and counts without blocking and leaves a consistent
//! episode, and write errors are reported instead of panicking.

use std::path::Path;
use std::time::{Duration, Instant};

use bridge_data::StoredFrame;
use bridge_data::raw::{RawOptions, RawStep, read_trajectory};
use bridge_run::messages::RecorderMsg;
use bridge_run::recorder::{Recorder, RecorderError};
use widowx::bridge::BridgeAction;

const WAIT: Duration = Duration::from_secs(20);

fn jpeg(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| {
        image::Rgb([seed.wrapping_mul(37), (x * 4) as u8, (y * 5) as u8])
    });
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    bytes
}

fn step(t: usize) -> RawStep {
    let t_f = t as f64;
    RawStep {
        jpeg: jpeg(t as u8),
        state: [0.3 + 0.01 * t_f, 0.0, 0.15, 0.0, 0.0, 0.1 * t_f, 1.0],
        qpos: [0.1 * t_f; 6],
        qvel: [0.0; 6],
        joint_effort: [0.5; 6],
        eef_transform: [
            [1.0, 0.0, 0.0, 0.3],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.15],
            [0.0, 0.0, 0.0, 1.0],
        ],
        time_stamp_s: 0.2 * t_f,
    }
}

fn action(t: usize) -> [f64; 7] {
    [
        0.01,
        -0.005 * t as f64,
        0.0,
        0.0,
        0.0,
        0.02,
        if t < 3 { 1.0 } else { 0.0 },
    ]
}

fn options() -> RawOptions {
    RawOptions::default()
}

#[test]
fn recorded_episode_round_trips_through_the_raw_reader() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("traj0");
    let recorder = Recorder::spawn(64);
    let tx = recorder.sender();
    assert!(tx.try_send(RecorderMsg::StartEpisode {
        dir: dir.clone(),
        language: Some("put the red block on the plate".into()),
    }));
    for t in 0..5 {
        assert!(tx.try_send(RecorderMsg::Observation(step(t))));
        assert!(tx.try_send(RecorderMsg::Action(BridgeAction::from_array(action(t)))));
    }
    assert!(tx.try_send(RecorderMsg::Observation(step(5))));
    assert!(tx.try_send(RecorderMsg::EndEpisode(bridge_data::Outcome::Completed)));
    let summary = recorder.shutdown().unwrap();
    assert_eq!(summary.episodes, vec![dir.clone()]);
    assert_eq!((summary.observations, summary.actions), (6, 5));
    assert_eq!((summary.dropped, summary.skipped), (0, 0));
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);

    let trajectory = read_trajectory(&dir, &options()).unwrap();
    assert_eq!(trajectory.frames.len(), 6);
    assert_eq!(trajectory.actions.len(), 5);
    assert_eq!(
        trajectory.language.as_deref(),
        Some("put the red block on the plate")
    );
    for t in 0..6 {
        assert_eq!(trajectory.frames[t], StoredFrame::Jpeg(jpeg(t as u8)));
        let expected: Vec<f32> = step(t).state.iter().map(|&v| v as f32).collect();
        assert_eq!(trajectory.states[t].to_vec(), expected, "state {t}");
    }
    for t in 0..5 {
        let expected: Vec<f32> = action(t).iter().map(|&v| v as f32).collect();
        assert_eq!(trajectory.actions[t].to_vec(), expected, "action {t}");
    }
}

#[test]
fn open_episode_loads_after_every_action_as_after_a_crash() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("traj_crash");
    let recorder = Recorder::spawn(64);
    let tx = recorder.sender();
    tx.try_send(RecorderMsg::StartEpisode {
        dir: dir.clone(),
        language: None,
    });
    for t in 0..3 {
        tx.try_send(RecorderMsg::Observation(step(t)));
        tx.try_send(RecorderMsg::Action(BridgeAction::from_array(action(t))));
    }
    tx.try_send(RecorderMsg::Observation(step(3)));
    assert!(recorder.wait_until_written(WAIT));
    // No EndEpisode, no shutdown: what is on disk now is what a crash would leave. The last
    // flush was after action 2; observation 3's frame is on disk but not yet in obs_dict.pkl.
    let trajectory = read_trajectory(&dir, &options()).unwrap();
    assert_eq!(trajectory.states.len(), 3);
    assert_eq!(trajectory.actions.len(), 2);
    // Dropping the recorder (an error path) still closes the episode with every step.
    drop(recorder);
    let trajectory = read_trajectory(&dir, &options()).unwrap();
    assert_eq!((trajectory.states.len(), trajectory.actions.len()), (4, 3));
}

#[test]
fn full_queue_drops_without_blocking_and_truncates_the_episode_consistently() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("traj_flood");
    let recorder = Recorder::spawn(2);
    let tx = recorder.sender();
    tx.try_send(RecorderMsg::StartEpisode {
        dir: dir.clone(),
        language: None,
    });
    tx.try_send(RecorderMsg::Observation(step(0)));
    assert!(recorder.wait_until_written(WAIT));
    tx.try_send(RecorderMsg::Action(BridgeAction::from_array(action(0))));
    tx.try_send(RecorderMsg::Observation(step(1)));
    assert!(recorder.wait_until_written(WAIT));

    // Far faster than the thread writes (each JPEG and pickle is synced to disk).
    const SENT: u64 = 400;
    let started = Instant::now();
    let mut accepted = 0;
    for t in 1..=SENT as usize / 2 {
        accepted +=
            u64::from(tx.try_send(RecorderMsg::Action(BridgeAction::from_array(action(t)))));
        accepted += u64::from(tx.try_send(RecorderMsg::Observation(step(t + 1))));
    }
    let send_time = started.elapsed();
    tx.try_send(RecorderMsg::EndEpisode(bridge_data::Outcome::Completed));
    let dropped_while_sending = SENT - accepted;
    assert!(dropped_while_sending > 0, "the queue of 2 never filled");
    assert!(
        send_time < Duration::from_secs(2),
        "sending blocked: {send_time:?}"
    );

    let summary = recorder.shutdown().unwrap();
    // Every message was either received or counted as dropped (4 before the flood, then the
    // flood, then EndEpisode).
    assert_eq!(summary.received + summary.dropped, 4 + SENT + 1);
    assert!(summary.dropped >= dropped_while_sending);
    assert!(summary.skipped > 0);
    assert!(
        summary
            .errors
            .iter()
            .any(|e| e.contains("recorder queue was full")),
        "{:?}",
        summary.errors
    );
    // What is on disk is consistent and matches what the thread says it wrote.
    let trajectory = read_trajectory(&dir, &options()).unwrap();
    assert!(!trajectory.actions.is_empty());
    assert_eq!(
        trajectory.actions.len() as u64,
        summary.actions.min(summary.observations - 1)
    );
    for (t, a) in trajectory.actions.iter().enumerate() {
        assert_eq!(a[1], (-0.005 * t as f64) as f32, "action {t} misaligned");
    }
}

#[test]
fn write_errors_are_reported_and_the_next_episode_still_records() {
    let root = tempfile::tempdir().unwrap();
    let blocker = root.path().join("not_a_dir");
    std::fs::write(&blocker, b"file").unwrap();
    let recorder = Recorder::spawn(16);
    let tx = recorder.sender();
    tx.try_send(RecorderMsg::StartEpisode {
        dir: blocker.join("traj0"),
        language: None,
    });
    tx.try_send(RecorderMsg::Observation(step(0)));
    tx.try_send(RecorderMsg::Action(BridgeAction::from_array(action(0))));
    tx.try_send(RecorderMsg::EndEpisode(bridge_data::Outcome::Completed));
    let good = root.path().join("traj1");
    tx.try_send(RecorderMsg::StartEpisode {
        dir: good.clone(),
        language: None,
    });
    for t in 0..2 {
        tx.try_send(RecorderMsg::Observation(step(t)));
        tx.try_send(RecorderMsg::Action(BridgeAction::from_array(action(t))));
    }
    tx.try_send(RecorderMsg::Observation(step(2)));
    assert!(recorder.wait_until_written(WAIT));

    let errors = recorder.take_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(&errors[0], RecorderError::Write { .. }),
        "{}",
        errors[0]
    );
    assert!(
        errors[0].to_string().contains("not_a_dir/traj0"),
        "{}",
        errors[0]
    );
    assert!(
        recorder.take_errors().is_empty(),
        "errors are delivered once"
    );

    let summary = recorder.shutdown().unwrap();
    assert_eq!(summary.episodes, vec![good.clone()]);
    assert_eq!(summary.skipped, 2);
    assert_eq!(summary.errors.len(), 1);
    assert_eq!(read_trajectory(&good, &options()).unwrap().actions.len(), 2);
}

#[test]
fn messages_outside_an_episode_are_skipped_and_existing_recordings_kept() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("traj0");
    let recorder = Recorder::spawn(16);
    let tx = recorder.sender();
    tx.try_send(RecorderMsg::Observation(step(0)));
    tx.try_send(RecorderMsg::StartEpisode {
        dir: dir.clone(),
        language: None,
    });
    tx.try_send(RecorderMsg::Observation(step(0)));
    tx.try_send(RecorderMsg::Action(BridgeAction::from_array(action(0))));
    tx.try_send(RecorderMsg::Observation(step(1)));
    // A second StartEpisode on the same directory closes the first and refuses to overwrite it.
    tx.try_send(RecorderMsg::StartEpisode {
        dir: dir.clone(),
        language: None,
    });
    tx.try_send(RecorderMsg::Observation(step(7)));
    let summary = recorder.shutdown().unwrap();
    assert_eq!(summary.episodes, vec![dir.clone()]);
    assert_eq!(summary.skipped, 2);
    assert!(
        summary.errors[0].contains("refusing to overwrite"),
        "{:?}",
        summary.errors
    );
    let trajectory = read_trajectory(&dir, &options()).unwrap();
    assert_eq!((trajectory.states.len(), trajectory.actions.len()), (2, 1));
    assert!(Path::new(&dir.join("images0/im_1.jpg")).is_file());
}
