//! Honest recordings: an episode on the virtual arm with a pause, a pause with a jog, and an
//! operator abort is
//! recorded with each step flagged, its end reason, goal, checkpoint id, configuration and command
//! line; `bridge-train prepare` then skips the aborted episode by default, and on request keeps it
//! split around the intervened steps, or whole.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bridge_data::cache::{CacheSettings, Manifest};
use bridge_data::raw::{RawOptions, read_trajectory};
use bridge_data::{Outcome, StepKind};
use bridge_run::modes::{Axis, EpisodeEnd, Mode};
use bridge_run::record::RunRecord;
use bridge_run::runtime::{Runtime, RuntimeOptions};
use bridge_run::sim::SimRig;
use bridge_run::{OperatorCommand, RuntimeConfig};
use bridge_train::prepare::{PrepareOptions, discover_inputs, prepare};
use support::*;

const STEP: [f32; 7] = [0.005, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];

fn recording_config(dir: &Path) -> RuntimeConfig {
    let mut config = test_config(dir);
    config.episode.record = true;
    config
}

/// Runs one recorded episode: two policy steps, pause, jog, resume, two more steps, then q.
fn record_an_intervened_aborted_episode(dir: &Path) -> (PathBuf, PathBuf) {
    let goal_file = dir.join("goal.png");
    image::RgbImage::from_pixel(640, 480, image::Rgb([90, 90, 90]))
        .save(&goal_file)
        .unwrap();
    let mut goal = flat_goal(32);
    goal.path = goal_file;
    let rig = SimRig::spawn(11).unwrap();
    let options = RuntimeOptions {
        run_record: RunRecord {
            checkpoint: Some(PathBuf::from("models/test")),
            checkpoint_id: Some("sha256:0123456789abcdef".into()),
            sim_seed: None,
            command_line: vec!["bridge-run".into(), "--test".into()],
        },
        ..RuntimeOptions::default()
    };
    let mut runtime = Runtime::start(
        recording_config(dir),
        rig.connect().unwrap(),
        Box::new(SyntheticCamera::new(15.0)),
        Box::new(ScriptedPolicy::constant(STEP)),
        options,
    )
    .unwrap();
    let commands = runtime.commands();
    let watch = runtime.status_watch();
    let report = std::thread::scope(|scope| {
        let driver = scope.spawn(|| runtime.run_episode(&goal, 200).unwrap());
        let steps = |n| {
            move |s: &bridge_run::messages::ControlStatus| {
                s.mode == Mode::Running && s.steps_applied >= n
            }
        };
        let pause = || {
            commands.send(OperatorCommand::TogglePause).unwrap();
            assert!(wait_for(Duration::from_secs(10), || watch.get().mode == Mode::Paused));
        };
        let resume_and_drive = |n: usize| {
            std::thread::sleep(Duration::from_millis(400));
            commands.send(OperatorCommand::TogglePause).unwrap();
            let resumed_at = watch.get().steps_applied;
            assert!(wait_for(Duration::from_secs(20), || steps(resumed_at + n)(
                &watch.get()
            )));
        };
        assert!(wait_for(Duration::from_secs(20), || steps(2)(&watch.get())));
        // A pause alone.
        pause();
        resume_and_drive(2);
        // A pause with a jog in it.
        pause();
        commands
            .send(OperatorCommand::Jog {
                axis: Axis::Z,
                positive: true,
            })
            .unwrap();
        assert!(wait_for(Duration::from_secs(10), || watch
            .get()
            .interventions
            .jogs
            == 1));
        resume_and_drive(3);
        commands.send(OperatorCommand::Quit).unwrap();
        driver.join().unwrap()
    });
    assert_eq!(
        report.end,
        Some(EpisodeEnd::Operator(OperatorCommand::Quit)),
        "{report:#?}"
    );
    let recording = report.recording.clone().expect("the episode was recorded");
    let session = runtime.session_dir().to_path_buf();
    runtime.park_and_stop().unwrap();
    (recording, session)
}

fn prepared(input: &Path, out: &Path, keep_aborted: bool, keep_intervened: bool) -> Manifest {
    let settings = CacheSettings {
        keep_aborted,
        keep_intervened,
        ..CacheSettings::whole_frame(16)
    };
    let sources = discover_inputs(&[input.to_path_buf()], &settings).unwrap();
    let sources: Vec<Arc<dyn bridge_train::prepare::TrajectorySource>> = sources;
    prepare(&sources, out, &PrepareOptions::new(settings)).unwrap();
    Manifest::read(out).unwrap()
}

#[test]
fn a_jog_and_an_abort_are_recorded_and_prepare_reads_them_as_specified() {
    let dir = tempfile::tempdir().unwrap();
    let (recording, session) = record_an_intervened_aborted_episode(dir.path());

    // The raw recording: every step flagged, one of them a jog; the end record says aborted.
    let trajectory = read_trajectory(&recording, &RawOptions::default()).unwrap();
    let steps = trajectory.actions.len();
    assert_eq!(trajectory.step_kinds.len(), steps);
    let jogs = trajectory
        .step_kinds
        .iter()
        .filter(|k| **k == StepKind::Jog)
        .count();
    assert_eq!(jogs, 1, "{:?}", trajectory.step_kinds);
    assert!(steps >= 5, "{steps} steps");
    match &trajectory.outcome {
        Some(Outcome::Aborted { reason }) => {
            assert!(reason.contains("park and quit"), "{reason}")
        }
        other => panic!("expected an aborted episode, got {other:?}"),
    }
    // The start record: goal copy, checkpoint id, command line, configuration.
    assert!(recording.join("goal.png").is_file());
    let episode = std::fs::read_to_string(recording.join("episode.toml")).unwrap();
    for words in [
        "goal_image = \"goal.png\"",
        "sha256:0123456789abcdef",
        "\"--test\"",
    ] {
        assert!(episode.contains(words), "{episode}");
    }
    let config = std::fs::read_to_string(recording.join("run-config.toml")).unwrap();
    assert!(config.contains("[safety]"), "{config}");

    // prepare: by default the aborted episode is skipped, and says why.
    let caches = dir.path().join("caches");
    let default = prepared(&session, &caches.join("default"), false, false);
    assert_eq!(default.counts.episodes, 0);
    assert_eq!(default.counts.skipped_trajectories, 1);
    // Kept on request, it is split around the intervened steps, which are left out.
    let split = prepared(&session, &caches.join("aborted"), true, false);
    assert_eq!(split.counts.intervened_steps_left_out, 2);
    assert_eq!(split.counts.episodes, 3, "parts before, between and after");
    assert_eq!(split.counts.transitions as usize, steps - 2);
    // Kept whole on request.
    let whole = prepared(&session, &caches.join("whole"), true, true);
    assert_eq!(whole.counts.episodes, 1);
    assert_eq!(whole.counts.transitions as usize, steps);
}

#[test]
fn a_killed_recording_has_no_end_record_and_counts_as_aborted() {
    let dir = tempfile::tempdir().unwrap();
    let (recording, session) = record_an_intervened_aborted_episode(dir.path());
    // What kill -9 mid-episode leaves: the steps flushed so far, no end record.
    std::fs::remove_file(recording.join(bridge_data::raw::AGENT_DATA_FILE)).unwrap();
    let trajectory = read_trajectory(&recording, &RawOptions::default()).unwrap();
    match &trajectory.outcome {
        Some(Outcome::Aborted { reason }) => assert!(reason.contains("never closed"), "{reason}"),
        other => panic!("expected aborted, got {other:?}"),
    }
    let manifest = prepared(&session, &dir.path().join("cache"), false, false);
    assert_eq!(manifest.counts.episodes, 0);
}
