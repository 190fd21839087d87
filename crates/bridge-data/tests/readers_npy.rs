//! The NumPy-release reader against an out.npy written by np.save(allow_pickle=True).

mod readers_common;

use std::fs;
use std::path::PathBuf;

use bridge_data::StoredFrame;
use bridge_data::npy_release::{self, NpyReleaseError};
use bridge_data::pickle::PickleErrorKind;
use bridge_data::sources::ReadOptions;
use readers_common::*;

fn release() -> (PathBuf, serde_json::Value) {
    let expected = expected()["npy"].clone();
    (
        fixtures_dir().join(expected["file"].as_str().unwrap()),
        expected["trajectories"].clone(),
    )
}

#[test]
fn out_npy_matches_the_fixture() {
    let (path, expected) = release();
    let trajectories = npy_release::read(&path, &ReadOptions::default()).unwrap();
    let expected = expected.as_array().unwrap();
    assert_eq!(trajectories.len(), expected.len());
    for (index, (trajectory, expected)) in trajectories.iter().zip(expected).enumerate() {
        let steps = expected["steps"].as_u64().unwrap() as usize;
        assert_eq!(trajectory.frames.len(), steps + 1);
        assert_eq!(trajectory.states, f32_rows(&expected["states_f32"]));
        assert_eq!(trajectory.actions, f32_rows(&expected["actions_f32"]));
        for frame in &trajectory.frames {
            assert!(
                matches!(frame, StoredFrame::Rgb { width_px: 128, height_px: 128, data } if data.len() == 128 * 128 * 3)
            );
        }
        assert_frames_language_and_source(trajectory, expected, "frames_adler32", (&path, index));
    }
}

/// The release's bytes, and a path named out.npy in a fresh directory to write copies to.
fn release_bytes_and_copy_path() -> (Vec<u8>, tempfile::TempDir, PathBuf) {
    let (path, _) = release();
    let temp = tempfile::tempdir().unwrap();
    let copy = temp.path().join("out.npy");
    (fs::read(&path).unwrap(), temp, copy)
}

#[test]
fn truncated_release_is_rejected_naming_the_file() {
    let (bytes, _temp, copy) = release_bytes_and_copy_path();
    for cut in [5, 60, 200, bytes.len() / 3, bytes.len() - 1] {
        fs::write(&copy, &bytes[..cut]).unwrap();
        let error = npy_release::read(&copy, &ReadOptions::default()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("out.npy"), "{message}");
        match error {
            NpyReleaseError::Header { .. } => assert!(cut < 200, "{message}"),
            NpyReleaseError::Pickle { source, .. } => {
                assert_eq!(source.kind, PickleErrorKind::Truncated)
            }
            other => panic!("cut {cut}: {other}"),
        }
    }
}

#[test]
fn corrupt_release_is_rejected_naming_the_file() {
    let (bytes, _temp, copy) = release_bytes_and_copy_path();
    let mut bad_magic = bytes.clone();
    bad_magic[1] = b'X';
    fs::write(&copy, &bad_magic).unwrap();
    assert_error_names(
        npy_release::read(&copy, &ReadOptions::default()),
        &["out.npy", "magic"],
    );

    // The first opcode of the pickle (after the header) is damaged.
    let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
    let mut bad_opcode = bytes.clone();
    bad_opcode[10 + header_len + 2] = 0xff;
    fs::write(&copy, &bad_opcode).unwrap();
    assert_error_names(
        npy_release::read(&copy, &ReadOptions::default()),
        &["out.npy", "unknown opcode"],
    );
}

#[test]
fn a_camera_the_release_lacks_is_a_field_error() {
    let (path, _) = release();
    assert_error_names(
        npy_release::read(&path, &camera_options(1)),
        &["out.npy", "trajectory 0", "images1"],
    );
}
