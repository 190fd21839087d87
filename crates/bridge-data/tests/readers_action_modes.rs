//! Raw trajectories of the three widowx_envs action modes (3trans3rot, 3trans1rot, 3trans), as
//! its RobotBaseEnv writes them (tools/fixtures/make_mode_fixtures.py, Python pickle + NumPy): the
//! pose comes from `full_state` whatever the width of `state`, and 5-d and 4-d actions are
//! widened to 7 the way widowx_envs executes them.

mod readers_common;

use std::fs;
use std::path::{Path, PathBuf};

use bridge_data::pickle::{self, Value};
use bridge_data::raw::{self, RawOptions};
use readers_common::{copy_tree, f32_rows, frames_adler32, u32_list};
use serde_json::Value as Json;

fn modes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/fixtures/action_modes")
}

fn fixtures() -> Vec<(PathBuf, Json)> {
    let text = fs::read_to_string(modes_dir().join("expected.json")).unwrap();
    let expected: Json = serde_json::from_str(&text).unwrap();
    expected["trajectories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (modes_dir().join(e["dir"].as_str().unwrap()), e.clone()))
        .collect()
}

/// The fixture of the action mode `mode`.
fn fixture_of_mode(mode: &str) -> (PathBuf, Json) {
    fixtures()
        .into_iter()
        .find(|(_, e)| e["mode"] == mode)
        .unwrap()
}

#[test]
fn every_action_mode_reads_as_seven_dimensional_bridge_data() {
    let fixtures = fixtures();
    let modes: Vec<&str> = fixtures
        .iter()
        .map(|(_, e)| e["mode"].as_str().unwrap())
        .collect();
    for mode in ["3trans3rot", "3trans1rot", "3trans"] {
        assert!(modes.contains(&mode), "no {mode} fixture");
    }
    for (dir, expected) in &fixtures {
        let trajectory = raw::read_trajectory(dir, &RawOptions::default())
            .unwrap_or_else(|e| panic!("{} ({}): {e}", dir.display(), expected["mode"]));
        assert_eq!(
            trajectory.states,
            f32_rows(&expected["states_f32"]),
            "{}",
            dir.display()
        );
        assert_eq!(
            trajectory.actions,
            f32_rows(&expected["actions_f32"]),
            "{}",
            dir.display()
        );
        assert_eq!(
            frames_adler32(&trajectory),
            u32_list(&expected["frames_adler32"])
        );
    }
}

#[test]
fn the_narrow_state_is_not_taken_for_the_pose() {
    // The 3trans fixture's `state` is [x, y, z, gripper]: the gripper of the read states must be
    // full_state's column 6, not whatever sits in column 3 of the narrow array.
    let (dir, expected) = fixture_of_mode("3trans");
    assert_eq!(expected["state_shape"][1], 4);
    let trajectory = raw::read_trajectory(&dir, &RawOptions::default()).unwrap();
    let want = f32_rows(&expected["states_f32"]);
    assert!(
        want.iter().any(|row| row[3] != row[6]),
        "the fixture cannot tell them apart"
    );
    assert_eq!(trajectory.states, want);
}

#[test]
fn a_narrow_state_without_full_state_is_refused_naming_both_fields() {
    let (dir, _) = fixture_of_mode("3trans1rot");
    let temp = tempfile::tempdir().unwrap();
    let copy = temp
        .path()
        .join("2023-05-02_10-11-12/raw/traj_group0/traj0");
    copy_tree(&dir, &copy);
    let obs_path = copy.join("obs_dict.pkl");
    let Value::Dict(entries) = pickle::from_slice(&fs::read(&obs_path).unwrap()).unwrap() else {
        panic!("obs_dict.pkl is not a dict");
    };
    let without_full: Vec<_> = entries
        .into_iter()
        .filter(|(k, _)| !matches!(k, Value::Str(s) if s == "full_state"))
        .collect();
    fs::write(
        &obs_path,
        pickle::to_vec(&Value::Dict(without_full)).unwrap(),
    )
    .unwrap();
    let error = raw::read_trajectory(&copy, &RawOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("obs_dict.pkl")
            && error.contains("field state")
            && error.contains("`full_state`"),
        "{error}"
    );
}
