//! The TFRecord reader against shards written by TensorFlow's tf.io.TFRecordWriter.

mod readers_common;

use std::fs;
use std::path::PathBuf;

use bridge_data::sources::ReadOptions;
use bridge_data::tfrecord::{self, TfRecordError};
use readers_common::*;
use serde_json::Value as Json;

fn shards() -> Vec<(PathBuf, Json)> {
    expected()["tfrecord"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                fixtures_dir().join(s["file"].as_str().unwrap()),
                s["episodes"].clone(),
            )
        })
        .collect()
}

#[test]
fn shards_match_the_fixtures_with_the_padding_action_dropped() {
    let mut episodes_seen = 0;
    for (path, episodes) in shards() {
        let trajectories = tfrecord::read_shard(&path, &ReadOptions::default()).unwrap();
        let episodes = episodes.as_array().unwrap();
        assert_eq!(trajectories.len(), episodes.len());
        for (index, (trajectory, expected)) in trajectories.iter().zip(episodes).enumerate() {
            let steps = expected["steps"].as_u64().unwrap() as usize;
            let mut actions = f32_rows(&expected["actions_f32"]);
            assert_eq!(
                actions.pop(),
                Some([0.0; 7]),
                "the fixture pads the last action"
            );
            assert_eq!(trajectory.states, f32_rows(&expected["states_f32"]));
            assert_eq!(trajectory.actions, actions);
            assert_eq!(trajectory.frames.len(), steps);
            assert_frames_language_and_source(
                trajectory,
                expected,
                "image_0_adler32",
                (&path, index),
            );
            episodes_seen += 1;
        }
    }
    assert_eq!(episodes_seen, 3);
}

#[test]
fn camera_option_reads_image_1() {
    let (path, episodes) = &shards()[0];
    let trajectories = tfrecord::read_shard(path, &camera_options(1)).unwrap();
    assert_eq!(
        frames_adler32(&trajectories[1]),
        u32_list(&episodes[1]["image_1_adler32"])
    );
    assert_error_names(
        tfrecord::read_shard(path, &camera_options(2)),
        &["record 0", "steps/observation/image_2: missing"],
    );
}

#[test]
fn masked_crc_matches_the_crc32c_check_value() {
    // CRC-32C("123456789") = 0xE3069283 (RFC 3720); TFRecord masks it.
    let crc: u32 = 0xe306_9283;
    let masked = crc.rotate_right(15).wrapping_add(0xa282_ead8);
    assert_eq!(tfrecord::masked_crc32c(b"123456789"), masked);
}

#[test]
fn every_truncation_is_rejected_naming_the_shard() {
    let (path, _) = &shards()[1];
    let bytes = fs::read(path).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let copy = temp
        .path()
        .join("bridge_dataset-train.tfrecord-00001-of-00002");
    // A cut at 0 is an empty (valid) shard; every other cut damages the only record.
    for cut in (1..bytes.len())
        .step_by(97)
        .chain([bytes.len() - 1, 11, 12, 13])
    {
        fs::write(&copy, &bytes[..cut]).unwrap();
        let error = tfrecord::read_shard(&copy, &ReadOptions::default()).unwrap_err();
        assert!(
            matches!(error, TfRecordError::Framing { record: 0, .. }),
            "cut {cut}: {error}"
        );
        assert_contains_all(
            &error.to_string(),
            &["tfrecord-00001-of-00002", "truncated"],
        );
    }
}

#[test]
fn corrupted_bytes_fail_the_crcs() {
    let (path, _) = &shards()[0];
    let bytes = fs::read(path).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let copy = temp.path().join("shard.tfrecord");
    let first_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let second_record = 16 + first_len;
    let cases = [
        (3, 0, "length CRC mismatch"),
        (9, 0, "length CRC mismatch"),
        (12 + first_len / 2, 0, "data CRC mismatch"),
        (12 + first_len, 0, "data CRC mismatch"),
        (second_record + 20, 1, "data CRC mismatch"),
    ];
    for (offset, record, problem) in cases {
        let mut damaged = bytes.clone();
        damaged[offset] ^= 0x10;
        fs::write(&copy, &damaged).unwrap();
        let error = tfrecord::read_shard(&copy, &ReadOptions::default()).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(&error, TfRecordError::Framing { record: r, .. } if *r == record),
            "{message}"
        );
        assert_contains_all(&message, &["shard.tfrecord", problem]);
    }
}

#[test]
fn a_record_that_is_not_an_example_is_a_protobuf_error() {
    let payload = b"\xff\xff\xff not a protobuf";
    let mut shard = Vec::new();
    let len = (payload.len() as u64).to_le_bytes();
    shard.extend_from_slice(&len);
    shard.extend_from_slice(&tfrecord::masked_crc32c(&len).to_le_bytes());
    shard.extend_from_slice(payload);
    shard.extend_from_slice(&tfrecord::masked_crc32c(payload).to_le_bytes());
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("bad.tfrecord");
    fs::write(&path, &shard).unwrap();
    let error = tfrecord::read_shard(&path, &ReadOptions::default()).unwrap_err();
    assert!(
        matches!(error, TfRecordError::Protobuf { record: 0, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("bad.tfrecord"));
}

#[test]
fn gzip_shards_are_refused_clearly() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("x.tfrecord.gz");
    fs::write(&path, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
    assert_error_names(
        tfrecord::read_shard(&path, &ReadOptions::default()),
        &["x.tfrecord.gz", "GZIP"],
    );
}
