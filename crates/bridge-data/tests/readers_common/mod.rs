//! Shared helpers of the reader tests: the fixtures of tools/fixtures (written by Python, numpy,
//! Pillow and TensorFlow; see tools/fixtures/README.md) and their expected.json.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bridge_data::sources::ReadOptions;
use bridge_data::{StoredFrame, Trajectory};
use serde_json::Value as Json;

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/fixtures/data")
}

pub fn expected() -> Json {
    let text = std::fs::read_to_string(fixtures_dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// zlib's adler32, as the fixture script records frame checksums.
pub fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

pub fn frame_adler32(frame: &StoredFrame) -> u32 {
    match frame {
        StoredFrame::Jpeg(bytes) => adler32(bytes),
        StoredFrame::Rgb { data, .. } => adler32(data),
    }
}

/// The adler32 of every frame of `trajectory`, in order.
pub fn frames_adler32(trajectory: &Trajectory) -> Vec<u32> {
    trajectory.frames.iter().map(frame_adler32).collect()
}

/// What readers of multi-trajectory files record alike for entry `index` of `file`: the frame
/// checksums listed under `frames_key` of the fixture record `expected`, the language, and the
/// source `{file}#{index}`.
pub fn assert_frames_language_and_source(
    trajectory: &Trajectory,
    expected: &Json,
    frames_key: &str,
    (file, index): (&Path, usize),
) {
    assert_eq!(frames_adler32(trajectory), u32_list(&expected[frames_key]));
    assert_eq!(
        trajectory.language.as_deref(),
        expected["language"].as_str()
    );
    assert_eq!(
        trajectory.source,
        PathBuf::from(format!("{}#{index}", file.display()))
    );
}

/// Default read options, but for camera `camera`.
pub fn camera_options(camera: usize) -> ReadOptions {
    ReadOptions {
        camera,
        ..ReadOptions::default()
    }
}

pub fn u32_list(json: &Json) -> Vec<u32> {
    json.as_array()
        .unwrap()
        .iter()
        .map(|v| u32::try_from(v.as_u64().unwrap()).unwrap())
        .collect()
}

/// Rows of f32 values (the fixture stores float32-representable values, so the conversion is
/// exact).
pub fn f32_rows(json: &Json) -> Vec<[f32; 7]> {
    json.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let row = row.as_array().unwrap();
            assert_eq!(row.len(), 7);
            std::array::from_fn(|i| row[i].as_f64().unwrap() as f32)
        })
        .collect()
}

pub fn hex_to_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Copies `source` (file or directory tree) under `dest`.
pub fn copy_tree(source: &Path, dest: &Path) {
    if source.is_dir() {
        std::fs::create_dir_all(dest).unwrap();
        for entry in std::fs::read_dir(source).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &dest.join(entry.file_name()));
        }
    } else {
        std::fs::copy(source, dest).unwrap();
    }
}

/// Asserts that `message` contains every one of `words`, showing the message otherwise.
pub fn assert_contains_all(message: &str, words: &[&str]) {
    assert!(words.iter().all(|w| message.contains(w)), "{message}");
}

/// Asserts that `result` is an error whose message contains every one of `words`.
pub fn assert_error_names<T: std::fmt::Debug, E: std::fmt::Display>(
    result: Result<T, E>,
    words: &[&str],
) {
    assert_contains_all(&result.unwrap_err().to_string(), words);
}
