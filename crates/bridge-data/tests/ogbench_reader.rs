//! OGBench reader: the real pointmaze validation file, and small hand-written archives that
//! exercise every accepted dtype and every error.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use bridge_data::ogbench::{self, OgbenchError};
use bridge_data::{DatasetError, Obs, ObsKind};
use test_support::npy::{f32_bytes, npy};

fn shared_ogbench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ogbench")
}

fn zip_entries(entries: &[(&str, Vec<u8>)], method: zip::CompressionMethod) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::FileOptions::default().compression_method(method);
    for (key, bytes) in entries {
        writer.start_file(format!("{key}.npy"), options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// 5 rows, episodes of 3 and 2 rows, obs_dim 3, act_dim 2; values encode (row, column).
fn small_entries() -> Vec<(&'static str, Vec<u8>)> {
    let obs: Vec<f32> = (0..5)
        .flat_map(|r| (0..3).map(move |c| r as f32 + c as f32 / 10.0))
        .collect();
    let actions: Vec<f32> = (0..5)
        .flat_map(|r| (0..2).map(move |c| -(r as f32) - c as f32 / 10.0))
        .collect();
    vec![
        ("observations", npy("<f4", &[5, 3], &f32_bytes(&obs))),
        ("actions", npy("<f4", &[5, 2], &f32_bytes(&actions))),
        ("terminals", npy("|b1", &[5], &[0, 0, 1, 0, 1])),
        ("qpos", npy("<f4", &[5, 1], &f32_bytes(&[0.0; 5]))),
    ]
}

fn replace(
    mut entries: Vec<(&'static str, Vec<u8>)>,
    key: &str,
    bytes: Vec<u8>,
) -> Vec<(&'static str, Vec<u8>)> {
    let slot = entries.iter_mut().find(|(k, _)| *k == key).unwrap();
    slot.1 = bytes;
    entries
}

fn read(bytes: Vec<u8>) -> Result<bridge_data::Dataset, OgbenchError> {
    ogbench::read_npz(Cursor::new(bytes), Path::new("test.npz"))
}

#[test]
fn real_pointmaze_val_file_has_expected_counts_and_values() {
    let path = shared_ogbench_dir().join("pointmaze-medium-stitch-v0-val.npz");
    let ds = ogbench::load(&path).unwrap();
    let summary = ds.summary();
    assert_eq!(summary.rows, 100_500);
    assert_eq!(summary.episodes, 500);
    assert_eq!(summary.transitions, 100_000);
    assert_eq!(
        (summary.min_episode_len, summary.max_episode_len),
        (201, 201)
    );
    assert_eq!(summary.obs_kind, ObsKind::State);
    assert_eq!(summary.obs_shape, vec![2]);
    assert_eq!(summary.action_dim, 2);
    assert_eq!(&ds.episode_ends()[..3], &[200, 401, 602]);
    assert_eq!(&ds.episode_starts()[..3], &[0, 201, 402]);

    // Bit patterns read from the archive with Python's zipfile + struct.
    let Obs::State { data, dim } = ds.obs() else {
        panic!("expected state observations")
    };
    let bits = |row: usize, values: &[f32], dim: usize| {
        [values[row * dim].to_bits(), values[row * dim + 1].to_bits()]
    };
    assert_eq!(bits(0, data, *dim), [0x406a4362, 0xbf6b8b3c]); // 3.6603627, -0.9200933
    assert_eq!(bits(1, data, *dim), [0x407327e0, 0xbf385808]);
    assert_eq!(bits(201, data, *dim), [0x40f65cd0, 0x4171b782]);
    assert_eq!(bits(100_499, data, *dim), [0x4180282d, 0x413f1705]);
    assert_eq!(bits(0, ds.actions(), 2), [0x3f31d9e4, 0x3f800000]); // 0.694731, 1.0
    assert_eq!(bits(100_499, ds.actions(), 2), [0xbd345813, 0x3f800000]);
}

#[test]
fn load_with_val_finds_the_companion_only_when_present() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("maze-v0.npz");
    let entries = small_entries();
    std::fs::write(
        &train,
        zip_entries(&entries, zip::CompressionMethod::Deflated),
    )
    .unwrap();
    assert_eq!(
        ogbench::val_path(&train),
        dir.path().join("maze-v0-val.npz")
    );
    let split = ogbench::load_with_val(&train).unwrap();
    assert_eq!(split.train.len(), 5);
    assert!(split.val.is_none());

    let val_entries = vec![
        ("observations", npy("<f4", &[2, 3], &f32_bytes(&[0.0; 6]))),
        ("actions", npy("<f4", &[2, 2], &f32_bytes(&[0.0; 4]))),
        ("terminals", npy("|b1", &[2], &[0, 1])),
    ];
    std::fs::write(
        ogbench::val_path(&train),
        zip_entries(&val_entries, zip::CompressionMethod::Stored),
    )
    .unwrap();
    let split = ogbench::load_with_val(&train).unwrap();
    assert_eq!(split.val.map(|v| v.len()), Some(2));
}

#[test]
fn small_archive_reads_back_stored_and_deflated() {
    for method in [
        zip::CompressionMethod::Stored,
        zip::CompressionMethod::Deflated,
    ] {
        let ds = read(zip_entries(&small_entries(), method)).unwrap();
        assert_eq!(ds.len(), 5);
        assert_eq!(ds.episode_ends(), &[2, 4]);
        assert_eq!(ds.action_dim(), 2);
        let Obs::State { data, dim } = ds.obs() else {
            panic!("expected state observations")
        };
        assert_eq!(*dim, 3);
        assert_eq!(data[3 * 4 + 2], 4.2);
        assert_eq!(ds.actions()[2 * 3 + 1], -3.1);
    }
}

#[test]
fn terminals_accept_u8_int_and_float_and_obs_accept_f64() {
    let obs_f64: Vec<u8> = (0..15)
        .flat_map(|v| (v as f64 * 0.5).to_le_bytes())
        .collect();
    let cases = [
        npy("|u1", &[5], &[0, 0, 1, 0, 1]),
        npy(
            "<i8",
            &[5],
            &[0i64, 0, 1, 0, 1].map(i64::to_le_bytes).concat(),
        ),
        npy("<f4", &[5], &f32_bytes(&[0.0, 0.0, 1.0, 0.0, 1.0])),
    ];
    for terminals in cases {
        let entries = replace(small_entries(), "terminals", terminals);
        let entries = replace(entries, "observations", npy("<f8", &[5, 3], &obs_f64));
        let ds = read(zip_entries(&entries, zip::CompressionMethod::Stored)).unwrap();
        assert_eq!(ds.episode_ends(), &[2, 4]);
        let Obs::State { data, .. } = ds.obs() else {
            panic!("expected state observations")
        };
        assert_eq!(data[14], 7.0);
    }
}

#[test]
fn uint8_images_become_pixel_observations() {
    let frames: Vec<u8> = (0..5 * 4 * 6 * 3).map(|v| (v % 256) as u8).collect();
    let entries = replace(
        small_entries(),
        "observations",
        npy("|u1", &[5, 4, 6, 3], &frames),
    );
    let ds = read(zip_entries(&entries, zip::CompressionMethod::Deflated)).unwrap();
    let Obs::Pixels {
        data,
        height,
        width,
        channels,
    } = ds.obs()
    else {
        panic!("expected pixel observations")
    };
    assert_eq!((*height, *width, *channels), (4, 6, 3));
    assert_eq!(data, &frames);
    assert_eq!(ds.summary().obs_shape, vec![4, 6, 3]);
}

#[test]
fn missing_key_is_named() {
    let entries: Vec<_> = small_entries()
        .into_iter()
        .filter(|(k, _)| *k != "actions")
        .collect();
    let err = read(zip_entries(&entries, zip::CompressionMethod::Stored)).unwrap_err();
    assert!(
        matches!(err, OgbenchError::MissingKey { key: "actions", .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("test.npz") && text.contains("`actions`") && text.contains("act_dim"));
}

#[test]
fn wrong_dtype_is_named() {
    let ints = [0i32; 15].map(i32::to_le_bytes).concat();
    let entries = replace(small_entries(), "observations", npy("<i4", &[5, 3], &ints));
    let err = read(zip_entries(&entries, zip::CompressionMethod::Stored)).unwrap_err();
    match &err {
        OgbenchError::Dtype { key, found, .. } => {
            assert_eq!(*key, "observations");
            assert!(found.contains("i4"), "{found}");
        }
        other => panic!("expected a dtype error, got {other}"),
    }
}

#[test]
fn wrong_shape_is_named() {
    let entries = replace(
        small_entries(),
        "actions",
        npy("<f4", &[10], &f32_bytes(&[0.0; 10])),
    );
    let err = read(zip_entries(&entries, zip::CompressionMethod::Stored)).unwrap_err();
    assert!(
        matches!(&err, OgbenchError::Shape { key: "actions", found, .. } if found == &[10]),
        "{err}"
    );
    let entries = replace(
        small_entries(),
        "observations",
        npy("<f4", &[5, 3, 1], &f32_bytes(&[0.0; 15])),
    );
    let err = read(zip_entries(&entries, zip::CompressionMethod::Stored)).unwrap_err();
    assert!(
        matches!(
            err,
            OgbenchError::Shape {
                key: "observations",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn lengths_that_disagree_are_named() {
    let entries = replace(
        small_entries(),
        "terminals",
        npy("|b1", &[4], &[0, 0, 1, 1]),
    );
    let err = read(zip_entries(&entries, zip::CompressionMethod::Stored)).unwrap_err();
    assert!(
        matches!(
            err,
            OgbenchError::LengthMismatch {
                key: "terminals",
                found: 4,
                expected: 5,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn final_episode_without_terminal_is_rejected() {
    let entries = replace(
        small_entries(),
        "terminals",
        npy("|b1", &[5], &[0, 0, 1, 0, 0]),
    );
    let err = read(zip_entries(&entries, zip::CompressionMethod::Stored)).unwrap_err();
    assert!(
        matches!(
            err,
            OgbenchError::Dataset {
                source: DatasetError::UnterminatedEpisode { last_row: 4 },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("test.npz"));
}

#[test]
fn truncated_archive_is_reported_not_panicked() {
    let bytes = zip_entries(&small_entries(), zip::CompressionMethod::Deflated);
    for keep in [0, 10, bytes.len() / 2, bytes.len() - 5] {
        let err = read(bytes[..keep].to_vec()).unwrap_err();
        assert!(
            matches!(err, OgbenchError::Archive { .. }),
            "{keep} bytes: {err}"
        );
        assert!(err.to_string().contains("test.npz"));
    }
}

#[test]
fn corrupt_entry_data_fails_the_checksum() {
    let bytes = zip_entries(&small_entries(), zip::CompressionMethod::Stored);
    // Flip one byte inside the observations' float data (after the 30-byte local header,
    // the 16-byte name and the 128-byte npy header).
    let mut corrupt = bytes.clone();
    corrupt[30 + "observations.npy".len() + 128 + 5] ^= 0x40;
    let err = read(corrupt).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    assert!(
        matches!(
            err,
            OgbenchError::Read {
                key: "observations",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn missing_file_is_named() {
    let err = ogbench::load(Path::new("/nonexistent/maze.npz")).unwrap_err();
    assert!(matches!(err, OgbenchError::Open { .. }));
    assert!(err.to_string().contains("/nonexistent/maze.npz"));
}
