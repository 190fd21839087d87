//! The raw-layout reader and writer against pickles written by Python + NumPy (protocols 2 to 5).

mod readers_common;

use std::fs;
use std::path::{Path, PathBuf};

use bridge_data::pickle::{self, PickleErrorKind, Value};
use bridge_data::raw::{self, RawEpisodeWriter, RawError, RawOptions, RawStep};
use bridge_data::sources::{ActionRecompute, CameraLag};
use bridge_data::{Outcome, StepKind, StoredFrame};
use readers_common::*;
use serde_json::Value as Json;
use widowx::pose::rotation_from_rpy;

fn raw_fixtures() -> Vec<(PathBuf, Json)> {
    let expected = expected();
    expected["raw"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (fixtures_dir().join(e["dir"].as_str().unwrap()), e.clone()))
        .collect()
}

fn f64_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn pickles_of_protocols_2_to_5_decode_to_the_arrays_python_wrote() {
    let mut protocols = Vec::new();
    for (dir, expected) in raw_fixtures() {
        let bytes = fs::read(dir.join("obs_dict.pkl")).unwrap();
        // PROTO opcode and its argument: the fixture really is at the protocol it claims.
        assert_eq!(bytes[0], 0x80);
        assert_eq!(u64::from(bytes[1]), expected["protocol"].as_u64().unwrap());
        protocols.push(bytes[1]);
        let obs_dict = pickle::from_slice(&bytes).unwrap();
        for (key, record) in expected["obs_dict"].as_object().unwrap() {
            let array = obs_dict.get(key).and_then(Value::as_array).unwrap();
            let shape: Vec<usize> = record["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(array.shape, shape, "{key} in {}", dir.display());
            let values = array.to_f64_vec().unwrap();
            assert_eq!(
                f64_bytes(&values),
                hex_to_bytes(record["f64_le_hex"].as_str().unwrap()),
                "{key} in {}",
                dir.display()
            );
        }
        let policy_out =
            pickle::from_slice(&fs::read(dir.join("policy_out.pkl")).unwrap()).unwrap();
        let actions: Vec<f64> = policy_out
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|step| {
                step.get("actions")
                    .unwrap()
                    .as_array()
                    .unwrap()
                    .to_f64_vec()
                    .unwrap()
            })
            .collect();
        let record = &expected["policy_out_actions"];
        assert_eq!(
            f64_bytes(&actions),
            hex_to_bytes(record["f64_le_hex"].as_str().unwrap())
        );
    }
    protocols.sort_unstable();
    protocols.dedup();
    assert_eq!(protocols, vec![2, 3, 4, 5]);
}

#[test]
fn numpy_scalars_shared_objects_and_big_ints_decode() {
    for (dir, expected) in raw_fixtures() {
        let obs_dict = pickle::from_slice(&fs::read(dir.join("obs_dict.pkl")).unwrap()).unwrap();
        let Some(meta) = obs_dict.get("meta") else {
            continue;
        };
        let protocol = expected["protocol"].as_u64().unwrap();
        let done = obs_dict.get("env_done").and_then(Value::as_array).unwrap();
        assert!(done.shape.is_empty(), "numpy scalar is 0-d");
        assert_eq!(done.to_f64_vec().unwrap(), vec![0.0]);
        let scalar = obs_dict
            .get("step_scalar")
            .and_then(Value::as_array)
            .unwrap();
        assert_eq!(scalar.to_f64_vec().unwrap(), vec![0.25]);
        // The same list object twice: memoised once, fetched with GET; both hold its items.
        let shared = Value::List(vec![Value::Int(1), Value::Int(2), Value::Int(3)]);
        assert_eq!(meta.get("a"), Some(&shared), "protocol {protocol}");
        assert_eq!(meta.get("b"), Some(&shared), "protocol {protocol}");
        let mut big = vec![0u8; 9];
        big[8] = 0x40; // 2**70 in little-endian two's complement
        assert_eq!(meta.get("big"), Some(&Value::BigInt(big)));
        assert_eq!(meta.get("name"), Some(&Value::Str("wx250s".into())));
        let policy_out =
            pickle::from_slice(&fs::read(dir.join("policy_out.pkl")).unwrap()).unwrap();
        let first = &policy_out.as_sequence().unwrap()[0];
        assert_eq!(
            first.get("policy_type"),
            Some(&Value::Str("VRTeleopPolicy".into()))
        );
        let eye = first
            .get("new_robot_transform")
            .and_then(Value::as_array)
            .unwrap();
        assert_eq!(eye.to_f64_vec().unwrap()[5], 1.0);
    }
}

/// What the reader should make of a fixture: min(N, A + 1) observations, then the lag.
fn expected_trajectory(
    dir: &Path,
    expected: &Json,
    lag: bool,
) -> (Vec<[f32; 7]>, Vec<[f32; 7]>, Vec<u32>) {
    let mut states = f32_rows(&expected["states_f32"]);
    let mut actions = f32_rows(&expected["actions_f32"]);
    let mut frames = u32_list(&expected["frames_adler32"]);
    let observations = states.len().min(actions.len() + 1);
    states.truncate(observations);
    frames.truncate(observations);
    actions.truncate(observations - 1);
    if lag {
        states.remove(0);
        frames.remove(0);
        actions.pop();
    }
    assert!(!actions.is_empty(), "{}", dir.display());
    (states, actions, frames)
}

/// Default raw options, but for camera `camera`.
fn raw_camera(camera: usize) -> RawOptions {
    RawOptions {
        camera,
        ..RawOptions::default()
    }
}

#[test]
fn raw_trajectories_match_the_fixtures_with_lag_from_the_date() {
    let mut lagged_seen = 0;
    for (dir, expected) in raw_fixtures() {
        let lagged = expected["lagged_by_date"].as_bool().unwrap();
        lagged_seen += usize::from(lagged);
        let trajectory = raw::read_trajectory(&dir, &RawOptions::default()).unwrap();
        let (states, actions, frames) = expected_trajectory(&dir, &expected, lagged);
        assert_eq!(trajectory.states, states, "{}", dir.display());
        assert_eq!(trajectory.actions, actions, "{}", dir.display());
        assert_eq!(frames_adler32(&trajectory), frames, "{}", dir.display());
        assert_eq!(trajectory.frames.len(), trajectory.actions.len() + 1);
        assert_eq!(
            trajectory.language.as_deref(),
            expected["language"].as_str()
        );
        assert_eq!(trajectory.source, dir);
    }
    assert_eq!(lagged_seen, 1);
}

#[test]
fn short_observation_fixture_is_trimmed() {
    // traj2 has T observations for T actions: the last action has no outcome and is dropped.
    let (dir, expected) = &raw_fixtures()[2];
    assert_eq!(expected["observations"], expected["actions"]);
    let trajectory = raw::read_trajectory(dir, &RawOptions::default()).unwrap();
    assert_eq!(
        trajectory.frames.len() as u64,
        expected["observations"].as_u64().unwrap()
    );
    assert_eq!(trajectory.actions.len() + 1, trajectory.frames.len());
}

#[test]
fn lag_can_be_forced_on_and_off() {
    let fixtures = raw_fixtures();
    let (recent, recent_expected) = &fixtures[0];
    let (old, old_expected) = &fixtures[4];
    let read_with_lag = |dir: &Path, expected: &Json, camera_lag: CameraLag, lag: bool| {
        let options = RawOptions {
            camera_lag,
            ..RawOptions::default()
        };
        let trajectory = raw::read_trajectory(dir, &options).unwrap();
        let (states, actions, _) = expected_trajectory(dir, expected, lag);
        assert_eq!((trajectory.states, trajectory.actions), (states, actions));
    };
    read_with_lag(recent, recent_expected, CameraLag::Correct, true);
    read_with_lag(old, old_expected, CameraLag::Keep, false);
}

#[test]
fn camera_option_reads_images1() {
    let (dir, expected) = &raw_fixtures()[0];
    let trajectory = raw::read_trajectory(dir, &raw_camera(1)).unwrap();
    let mut frames = u32_list(&expected["frames_images1_adler32"]);
    frames.truncate(trajectory.frames.len());
    assert_eq!(frames_adler32(&trajectory), frames);
    // A camera the trajectory does not have is an error naming the missing file.
    assert_error_names(
        raw::read_trajectory(dir, &raw_camera(3)),
        &["images3/im_0.jpg"],
    );
}

#[test]
fn gripper_binarisation_and_action_recomputation() {
    let (dir, expected) = &raw_fixtures()[1];
    let options = RawOptions {
        binarize_gripper: true,
        recompute_actions: ActionRecompute::StateDifference,
        ..RawOptions::default()
    };
    let trajectory = raw::read_trajectory(dir, &options).unwrap();
    let (states, recorded, _) = expected_trajectory(dir, expected, false);
    for (t, action) in trajectory.actions.iter().enumerate() {
        for i in 0..6 {
            let difference = f64::from(states[t + 1][i]) - f64::from(states[t][i]);
            assert!(
                (f64::from(action[i]) - difference).abs() < 1e-6,
                "t {t} i {i}"
            );
        }
        let gripper = if recorded[t][6] < 0.5 { 0.0 } else { 1.0 };
        assert_eq!(action[6], gripper);
    }
    // The fixture's gripper goes from 1 to 0, so both values occur.
    assert!(trajectory.actions.iter().any(|a| a[6] == 0.0));
    assert!(trajectory.actions.iter().any(|a| a[6] == 1.0));
    let relative = RawOptions {
        recompute_actions: ActionRecompute::RelativeRotation,
        ..RawOptions::default()
    };
    let rotated = raw::read_trajectory(dir, &relative).unwrap();
    for (t, (a, b)) in rotated.actions.iter().zip(&trajectory.actions).enumerate() {
        assert_eq!(a[..3], b[..3], "xyz is a plain difference in both modes");
        // The recomputed rotation, applied in the base frame, turns pose t into pose t+1.
        let rpy = |s: &[f32]| [0, 1, 2].map(|i| f64::from(s[i]));
        let delta = rotation_from_rpy(rpy(&a[3..6]));
        let now = rotation_from_rpy(rpy(&states[t][3..6]));
        let next = rotation_from_rpy(rpy(&states[t + 1][3..6]));
        for i in 0..3 {
            for j in 0..3 {
                let composed: f64 = (0..3).map(|k| delta[i][k] * now[k][j]).sum();
                assert!((composed - next[i][j]).abs() < 1e-5, "t {t}: {a:?}");
            }
        }
        // And it differs from the plain angle difference (second order in the angles).
        assert!((3..6).any(|i| (a[i] - b[i]).abs() > 1e-5), "t {t}");
    }
}

#[test]
fn find_trajectories_lists_every_fixture_sorted() {
    let found = raw::find_trajectories(&fixtures_dir().join("raw")).unwrap();
    let mut expected: Vec<PathBuf> = raw_fixtures().into_iter().map(|(d, _)| d).collect();
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn every_truncation_of_every_pickle_is_a_truncation_error() {
    for (dir, _) in raw_fixtures() {
        for name in ["obs_dict.pkl", "policy_out.pkl"] {
            let bytes = fs::read(dir.join(name)).unwrap();
            for cut in 0..bytes.len() {
                let error = pickle::from_slice(&bytes[..cut]).unwrap_err();
                assert_eq!(
                    error.kind,
                    PickleErrorKind::Truncated,
                    "{name} cut at {cut}: {error}"
                );
            }
        }
    }
}

#[test]
fn flipped_bytes_never_panic() {
    // Pickles carry no checksum: a flipped data byte can still decode. Structure damage must
    // come back as an error, never a panic or a huge allocation.
    for (dir, _) in raw_fixtures() {
        let bytes = fs::read(dir.join("obs_dict.pkl")).unwrap();
        for offset in 0..bytes.len().min(1500) {
            for xor in [0x01u8, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[offset] ^= xor;
                let _ = pickle::from_slice(&damaged);
            }
        }
    }
}

fn copy_fixture(index: usize) -> (tempfile::TempDir, PathBuf, Json) {
    let (dir, expected) = raw_fixtures().swap_remove(index);
    let temp = tempfile::tempdir().unwrap();
    let copy = temp
        .path()
        .join("2022-03-14_15-09-26/raw/traj_group0/traj0");
    copy_tree(&dir, &copy);
    (temp, copy, expected)
}

#[test]
fn truncated_and_corrupt_files_are_rejected_naming_the_file() {
    for index in 0..4 {
        let (_temp, dir, _) = copy_fixture(index);
        let obs_dict = dir.join("obs_dict.pkl");
        let original = fs::read(&obs_dict).unwrap();

        fs::write(&obs_dict, &original[..original.len() / 2]).unwrap();
        let error = raw::read_trajectory(&dir, &RawOptions::default()).unwrap_err();
        assert!(
            matches!(&error, RawError::Pickle { path, source } if *path == obs_dict && source.kind == PickleErrorKind::Truncated),
            "{error}"
        );
        assert!(error.to_string().contains("obs_dict.pkl"), "{error}");

        // The first opcode after PROTO replaced by a byte that is no opcode.
        let mut corrupt = original.clone();
        corrupt[2] = 0xff;
        fs::write(&obs_dict, &corrupt).unwrap();
        let error = raw::read_trajectory(&dir, &RawOptions::default()).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(&error, RawError::Pickle { source, .. } if source.kind == PickleErrorKind::UnknownOpcode && source.offset == 2),
            "{message}"
        );
        assert_contains_all(&message, &["obs_dict.pkl", "byte 2"]);

        fs::write(&obs_dict, &original).unwrap();
        let policy_out = dir.join("policy_out.pkl");
        let actions = fs::read(&policy_out).unwrap();
        fs::write(&policy_out, &actions[..actions.len() - 1]).unwrap();
        assert_error_names(
            raw::read_trajectory(&dir, &RawOptions::default()),
            &["policy_out.pkl", "truncated"],
        );
        fs::write(&policy_out, &actions).unwrap();

        let image = dir.join("images0/im_1.jpg");
        let jpeg = fs::read(&image).unwrap();
        fs::write(&image, &jpeg[..jpeg.len() * 2 / 3]).unwrap();
        assert_error_names(
            raw::read_trajectory(&dir, &RawOptions::default()),
            &["im_1.jpg", "truncated"],
        );
        fs::write(&image, &jpeg).unwrap();
        assert!(raw::read_trajectory(&dir, &RawOptions::default()).is_ok());
    }
}

#[test]
fn a_pickle_without_full_state_or_state_is_a_field_error() {
    let (_temp, dir, _) = copy_fixture(1);
    let value = Value::Dict(vec![(Value::Str("qpos".into()), Value::Int(3))]);
    fs::write(dir.join("obs_dict.pkl"), pickle::to_vec(&value).unwrap()).unwrap();
    assert_error_names(
        raw::read_trajectory(&dir, &RawOptions::default()),
        &[
            "obs_dict.pkl",
            "field full_state: missing (and no `state` either)",
        ],
    );
}

fn fixture_jpegs() -> Vec<Vec<u8>> {
    let (dir, _) = &raw_fixtures()[1];
    (0..4)
        .map(|t| fs::read(dir.join(format!("images0/im_{t}.jpg"))).unwrap())
        .collect()
}

fn step(t: usize, jpeg: Vec<u8>) -> RawStep {
    let x = t as f64;
    let mut eef_transform = [[0.0; 4]; 4];
    for (i, row) in eef_transform.iter_mut().enumerate() {
        row[i] = 1.0;
        row[3] = 0.1 * x + i as f64;
    }
    RawStep {
        jpeg,
        state: [
            0.3 + 0.01 * x,
            -0.02 * x,
            0.15,
            0.1 * x,
            -0.05,
            0.2,
            1.0 - 0.25 * x,
        ],
        qpos: [0.1 * x, 0.2, 0.3, 0.4, 0.5, 0.6],
        qvel: [0.0, 0.1, -0.1, 0.2, -0.2, 0.3 * x],
        joint_effort: [10.0, -20.0, 30.5 * x, 0.0, 1.0, 2.0],
        eef_transform,
        time_stamp_s: 1_700_000_000.0 + 0.2 * x,
    }
}

fn action(t: usize) -> [f64; 7] {
    let x = t as f64;
    [
        0.01,
        -0.02 * x,
        0.003,
        0.1,
        -0.05 * x,
        0.02,
        if t < 2 { 1.0 } else { 0.0 },
    ]
}

fn as_f32(row: [f64; 7]) -> [f32; 7] {
    row.map(|v| v as f32)
}

#[test]
fn writer_round_trip_recovers_every_array() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("traj0");
    let jpegs = fixture_jpegs();
    let mut writer = RawEpisodeWriter::create(&dir, Some("stack the blocks")).unwrap();
    for (t, jpeg) in jpegs.iter().enumerate() {
        writer.push_observation(&step(t, jpeg.clone())).unwrap();
        if t < 3 {
            writer.push_action(action(t)).unwrap();
        }
    }
    assert_eq!(writer.finish(&Outcome::Completed).unwrap(), dir);

    let trajectory = raw::read_trajectory(&dir, &RawOptions::default()).unwrap();
    let states: Vec<[f32; 7]> = (0..4).map(|t| as_f32(step(t, Vec::new()).state)).collect();
    let actions: Vec<[f32; 7]> = (0..3).map(|t| as_f32(action(t))).collect();
    assert_eq!(trajectory.states, states);
    assert_eq!(trajectory.actions, actions);
    let frames: Vec<StoredFrame> = jpegs.into_iter().map(StoredFrame::Jpeg).collect();
    assert_eq!(trajectory.frames, frames);
    assert_eq!(trajectory.language.as_deref(), Some("stack the blocks"));

    // Every other array, exactly, in the layout Bridge uses.
    let obs_dict = pickle::from_slice(&fs::read(dir.join("obs_dict.pkl")).unwrap()).unwrap();
    let array = |key: &str| obs_dict.get(key).and_then(Value::as_array).unwrap().clone();
    assert_eq!(array("eef_transform").shape, vec![4, 4, 4]);
    assert_eq!(array("time_stamp").shape, vec![4]);
    assert_eq!(array("full_state").shape, vec![4, 7]);
    let joint_effort: Vec<f64> = (0..4)
        .flat_map(|t| step(t, Vec::new()).joint_effort)
        .collect();
    assert_eq!(array("joint_effort").to_f64_vec().unwrap(), joint_effort);
    let eef: Vec<f64> = (0..4)
        .flat_map(|t| step(t, Vec::new()).eef_transform.into_iter().flatten())
        .collect();
    assert_eq!(array("eef_transform").to_f64_vec().unwrap(), eef);
    let stamps: Vec<f64> = (0..4).map(|t| step(t, Vec::new()).time_stamp_s).collect();
    assert_eq!(array("time_stamp").to_f64_vec().unwrap(), stamps);
    for key in ["qpos", "qvel"] {
        assert_eq!(array(key).shape, vec![4, 6]);
    }
    // No temporary file is left behind.
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_crash_after_a_flush_leaves_the_flushed_steps() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("traj0");
    let jpegs = fixture_jpegs();
    let mut writer = RawEpisodeWriter::create(&dir, None).unwrap();
    for (t, jpeg) in jpegs.iter().enumerate() {
        writer.push_observation(&step(t, jpeg.clone())).unwrap();
        writer.push_action(action(t)).unwrap();
        if t == 1 {
            writer.flush().unwrap();
        }
    }
    drop(writer); // a crash: no finish, no flush

    // The frames of steps 2 and 3 are on disk, but the pickles hold 2 observations and 2
    // actions; the second action has no recorded outcome, so 2 observations and 1 action load.
    assert!(dir.join("images0/im_3.jpg").exists());
    let trajectory = raw::read_trajectory(&dir, &RawOptions::default()).unwrap();
    assert_eq!(trajectory.len(), 2);
    let states: Vec<[f32; 7]> = (0..2).map(|t| as_f32(step(t, Vec::new()).state)).collect();
    assert_eq!(trajectory.states, states);
    assert_eq!(trajectory.actions, vec![as_f32(action(0))]);
    assert_eq!(trajectory.language, None);
}

#[test]
fn writer_refuses_misuse() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("traj0");
    let mut writer = RawEpisodeWriter::create(&dir, None).unwrap();
    assert_error_names(
        writer.push_action(action(0)),
        &["without a new observation"],
    );
    writer
        .push_observation(&step(0, fixture_jpegs()[0].clone()))
        .unwrap();
    writer.finish(&Outcome::Completed).unwrap();
    assert_error_names(
        RawEpisodeWriter::create(&dir, None),
        &["obs_dict.pkl", "already exists"],
    );
    // A single observation is no transition: the reader says so, naming the directory.
    assert_error_names(
        raw::read_trajectory(&dir, &RawOptions::default()),
        &["traj0", "no transition"],
    );
}

#[test]
fn step_flags_and_end_records_round_trip_and_an_unclosed_recording_of_ours_is_aborted() {
    let temp = tempfile::tempdir().unwrap();
    let session = temp.path().join("task/00/2026-12-03_10-00-00");
    let jpegs = fixture_jpegs();
    let record = |dir: &Path, outcome: Option<Outcome>| {
        let mut writer = RawEpisodeWriter::create(dir, None).unwrap();
        for (t, jpeg) in jpegs.iter().enumerate() {
            writer.push_observation(&step(t, jpeg.clone())).unwrap();
            if t < 3 {
                writer.push_action(action(t)).unwrap();
            }
            if t == 1 {
                writer.mark_last_action(StepKind::Paused).unwrap();
            }
        }
        match outcome {
            Some(outcome) => {
                writer.finish(&outcome).unwrap();
            }
            None => writer.flush().unwrap(), // killed before closing
        }
    };
    // Bridge's own recordings (no collection.toml): no end record says nothing.
    let theirs = session.join("raw/traj_group0/traj0");
    record(&theirs, None);
    let t = raw::read_trajectory(&theirs, &RawOptions::default()).unwrap();
    assert_eq!(t.outcome, None);
    assert_eq!(
        t.step_kinds,
        vec![StepKind::Policy, StepKind::Paused, StepKind::Policy]
    );
    // Ours: the session has a provenance marker, so an unclosed episode was killed.
    bridge_data::provenance::Collection {
        source: bridge_data::provenance::Collector::Robot,
    }
    .write(&session)
    .unwrap();
    let t = raw::read_trajectory(&theirs, &RawOptions::default()).unwrap();
    assert!(
        matches!(&t.outcome, Some(Outcome::Aborted { reason }) if reason.contains("never closed")),
        "{:?}",
        t.outcome
    );
    let completed = session.join("raw/traj_group0/traj1");
    record(&completed, Some(Outcome::Completed));
    let t = raw::read_trajectory(&completed, &RawOptions::default()).unwrap();
    assert_eq!(t.outcome, Some(Outcome::Completed));
    let stopped = session.join("raw/traj_group0/traj2");
    record(&stopped, Some(Outcome::aborted("operator (emergency)")));
    let t = raw::read_trajectory(&stopped, &RawOptions::default()).unwrap();
    assert_eq!(t.outcome, Some(Outcome::aborted("operator (emergency)")));
    // The end record is what widowx_envs writes: a dict with traj_ok.
    let agent_data =
        pickle::from_slice(&fs::read(stopped.join(raw::AGENT_DATA_FILE)).unwrap()).unwrap();
    assert_eq!(agent_data.get("traj_ok"), Some(&Value::Bool(false)));
}
