//! BridgeData V2 as RLDS / TFDS `bridge_dataset` TFRecord shards: one `tf.train.Example` per
//! episode, steps flattened into per-feature lists.
//!
//! Record framing (both CRCs are checked):
//!
//! ```text
//! u64 length (LE) | u32 masked crc32c(length bytes) | data[length] | u32 masked crc32c(data)
//! masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8
//! ```
//!
//! Features read: `steps/observation/image_{camera}` (JPEG bytes, one per step),
//! `steps/observation/state` and `steps/action` (7 floats per step; the last step's action is a
//! padding action and is dropped, giving T+1 observations and T actions),
//! `steps/language_instruction`, and `steps/is_first` / `steps/is_last` (checked when present).
//! The protobuf messages are derived with `prost` in this file (no protoc, no build script).
//!
//! ```no_run
//! use bridge_data::{sources::ReadOptions, tfrecord};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let shard = "bridge_dataset-train.tfrecord-00000-of-01024".as_ref();
//! for trajectory in tfrecord::read_shard(shard, &ReadOptions::default())? {
//!     println!("{}: {} steps", trajectory.source.display(), trajectory.actions.len());
//! }
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::sources::{self, LagSource, ReadOptions};
use crate::trajectory::{BRIDGE_DIM, StoredFrame, Trajectory};

/// Why a shard or one of its records could not be read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TfRecordError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: record {record} at byte {offset}: {problem}", path.display())]
    Framing {
        path: PathBuf,
        record: usize,
        offset: usize,
        problem: String,
    },
    #[error("{}: record {record}: not a tf.train.Example: {source}", path.display())]
    Protobuf {
        path: PathBuf,
        record: usize,
        source: prost::DecodeError,
    },
    #[error("{}: record {record}: feature {feature}: {problem}", path.display())]
    Feature {
        path: PathBuf,
        record: usize,
        feature: String,
        problem: String,
    },
}

/// `tf.train.Example`.
#[derive(Clone, PartialEq, Message)]
pub struct Example {
    #[prost(message, optional, tag = "1")]
    pub features: Option<Features>,
}

/// `tf.train.Features`.
#[derive(Clone, PartialEq, Message)]
pub struct Features {
    #[prost(map = "string, message", tag = "1")]
    pub feature: HashMap<String, Feature>,
}

/// `tf.train.Feature`.
#[derive(Clone, PartialEq, Message)]
pub struct Feature {
    #[prost(oneof = "FeatureKind", tags = "1, 2, 3")]
    pub kind: Option<FeatureKind>,
}

/// The `kind` oneof of `tf.train.Feature`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum FeatureKind {
    #[prost(message, tag = "1")]
    BytesList(BytesList),
    #[prost(message, tag = "2")]
    FloatList(FloatList),
    #[prost(message, tag = "3")]
    Int64List(Int64List),
}

/// `tf.train.BytesList`.
#[derive(Clone, PartialEq, Message)]
pub struct BytesList {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub value: Vec<Vec<u8>>,
}

/// `tf.train.FloatList` (packed or not; prost accepts both).
#[derive(Clone, PartialEq, Message)]
pub struct FloatList {
    #[prost(float, repeated, tag = "1")]
    pub value: Vec<f32>,
}

/// `tf.train.Int64List`.
#[derive(Clone, PartialEq, Message)]
pub struct Int64List {
    #[prost(int64, repeated, tag = "1")]
    pub value: Vec<i64>,
}

const MASK_DELTA: u32 = 0xa282_ead8;

/// TFRecord's masked CRC32-C.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// A framing problem in a record, before the file name is attached.
#[derive(Debug, Clone, PartialEq)]
pub struct FramingError {
    pub record: usize,
    pub offset: usize,
    pub problem: String,
}

/// The records of an in-memory TFRecord file, CRCs checked. Stops after the first error.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    bytes: &'a [u8],
    offset: usize,
    record: usize,
    failed: bool,
}

/// Iterates over the records in `bytes` (a whole uncompressed TFRecord file).
pub fn records(bytes: &[u8]) -> Records<'_> {
    Records {
        bytes,
        offset: 0,
        record: 0,
        failed: false,
    }
}

impl<'a> Records<'a> {
    fn fail(&mut self, problem: String) -> Option<Result<&'a [u8], FramingError>> {
        self.failed = true;
        Some(Err(FramingError {
            record: self.record,
            offset: self.offset,
            problem,
        }))
    }

    fn slice(&self, start: usize, len: usize) -> Option<&'a [u8]> {
        self.bytes.get(start..start.checked_add(len)?)
    }
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut array = [0u8; 4];
    array.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(array)
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<&'a [u8], FramingError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset == self.bytes.len() {
            return None;
        }
        if self.offset == 0 && self.bytes.starts_with(&[0x1f, 0x8b]) {
            return self.fail("GZIP-compressed TFRecord files are not supported".into());
        }
        let Some(header) = self.slice(self.offset, 12) else {
            let left = self.bytes.len() - self.offset;
            return self.fail(format!("truncated header ({left} bytes, expected 12)"));
        };
        let length_bytes = &header[..8];
        if masked_crc32c(length_bytes) != le_u32(&header[8..]) {
            return self.fail("length CRC mismatch (corrupt file?)".into());
        }
        let mut length = [0u8; 8];
        length.copy_from_slice(length_bytes);
        let length = u64::from_le_bytes(length);
        let data = usize::try_from(length)
            .ok()
            .and_then(|len| Some((self.slice(self.offset + 12, len)?, len)));
        let Some((data, len)) = data else {
            return self.fail(format!("truncated data (length field says {length} bytes)"));
        };
        let Some(footer) = self.slice(self.offset + 12 + len, 4) else {
            return self.fail("truncated data CRC".into());
        };
        if masked_crc32c(data) != le_u32(footer) {
            return self.fail("data CRC mismatch (corrupt file?)".into());
        }
        self.offset += 16 + len;
        self.record += 1;
        Some(Ok(data))
    }
}

/// Reads every episode of a shard into memory.
pub fn read_shard(path: &Path, options: &ReadOptions) -> Result<Vec<Trajectory>, TfRecordError> {
    let bytes = fs::read(path).map_err(|source| TfRecordError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    records(&bytes)
        .enumerate()
        .map(|(index, record)| {
            let data = record.map_err(|e| TfRecordError::Framing {
                path: path.to_path_buf(),
                record: e.record,
                offset: e.offset,
                problem: e.problem,
            })?;
            decode_episode(data, path, index, options)
        })
        .collect()
}

/// Decodes one record (a serialised `tf.train.Example`) as an episode; `path` and `record` name
/// it in errors and in [`Trajectory::source`] (`shard#record`).
pub fn decode_episode(
    data: &[u8],
    path: &Path,
    record: usize,
    options: &ReadOptions,
) -> Result<Trajectory, TfRecordError> {
    let example = Example::decode(data).map_err(|source| TfRecordError::Protobuf {
        path: path.to_path_buf(),
        record,
        source,
    })?;
    let features = example.features.map(|f| f.feature).unwrap_or_default();
    let episode = EpisodeFeatures {
        features: &features,
        path,
        record,
    };
    let image_key = format!("steps/observation/image_{}", options.camera);
    let images = episode.bytes(&image_key)?;
    let steps = images.len();
    let states = episode.rows_of_seven("steps/observation/state", steps)?;
    let mut actions = episode.rows_of_seven("steps/action", steps)?;
    episode.check_episode_flags(steps)?;
    if steps < 2 {
        return Err(episode.error(
            &image_key,
            format!("{steps} steps; an episode needs 2 or more"),
        ));
    }
    for (t, image) in images.iter().enumerate() {
        sources::check_jpeg(image)
            .map_err(|problem| episode.error(&image_key, format!("step {t}: {problem}")))?;
    }
    // The last step's action is RLDS padding: nothing follows it.
    actions.pop();
    let language = episode
        .optional_bytes("steps/language_instruction")?
        .iter()
        .map(|text| String::from_utf8_lossy(text).trim().to_string())
        .find(|text| !text.is_empty());
    let trajectory = Trajectory {
        source: PathBuf::from(format!("{}#{record}", path.display())),
        frames: images.iter().cloned().map(StoredFrame::Jpeg).collect(),
        states,
        actions,
        language,
        step_kinds: Vec::new(),
        outcome: None,
    };
    Ok(sources::apply_options(
        trajectory,
        options,
        LagSource::Corrected,
    ))
}

struct EpisodeFeatures<'a> {
    features: &'a HashMap<String, Feature>,
    path: &'a Path,
    record: usize,
}

impl EpisodeFeatures<'_> {
    fn error(&self, feature: &str, problem: impl Into<String>) -> TfRecordError {
        TfRecordError::Feature {
            path: self.path.to_path_buf(),
            record: self.record,
            feature: feature.to_string(),
            problem: problem.into(),
        }
    }

    fn kind(&self, key: &str) -> Result<&FeatureKind, TfRecordError> {
        self.features
            .get(key)
            .and_then(|f| f.kind.as_ref())
            .ok_or_else(|| self.error(key, "missing"))
    }

    fn bytes(&self, key: &str) -> Result<&[Vec<u8>], TfRecordError> {
        match self.kind(key)? {
            FeatureKind::BytesList(list) => Ok(&list.value),
            _ => Err(self.error(key, "expected a bytes list")),
        }
    }

    fn optional_bytes(&self, key: &str) -> Result<&[Vec<u8>], TfRecordError> {
        if self.features.contains_key(key) {
            self.bytes(key)
        } else {
            Ok(&[])
        }
    }

    fn rows_of_seven(
        &self,
        key: &str,
        steps: usize,
    ) -> Result<Vec<[f32; BRIDGE_DIM]>, TfRecordError> {
        let values = match self.kind(key)? {
            FeatureKind::FloatList(list) => &list.value,
            _ => return Err(self.error(key, "expected a float list")),
        };
        if values.len() != steps * BRIDGE_DIM {
            return Err(self.error(
                key,
                format!(
                    "{} floats, expected {BRIDGE_DIM} per step for {steps} steps",
                    values.len()
                ),
            ));
        }
        Ok(values
            .chunks_exact(BRIDGE_DIM)
            .map(|row| std::array::from_fn(|i| row[i]))
            .collect())
    }

    /// `is_first` must mark only step 0 and `is_last` only the final step, when present.
    fn check_episode_flags(&self, steps: usize) -> Result<(), TfRecordError> {
        for (key, expected_index) in [
            ("steps/is_first", 0),
            ("steps/is_last", steps.saturating_sub(1)),
        ] {
            let Some(feature) = self.features.get(key) else {
                continue;
            };
            let Some(FeatureKind::Int64List(list)) = &feature.kind else {
                return Err(self.error(key, "expected an int64 list"));
            };
            let flags_ok = list.value.len() == steps
                && list
                    .value
                    .iter()
                    .enumerate()
                    .all(|(i, &flag)| (flag != 0) == (i == expected_index));
            if !flags_ok {
                return Err(self.error(
                    key,
                    format!(
                        "expected {steps} flags set only at step {expected_index}, found {:?}",
                        list.value
                    ),
                ));
            }
        }
        Ok(())
    }
}
