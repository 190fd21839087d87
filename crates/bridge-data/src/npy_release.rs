//! The BridgeData NumPy release: per task `train/out.npy` and `val/out.npy`, each an
//! `np.save(..., allow_pickle=True)` of a list of trajectory dicts (an object array whose data is
//! a pickle inside the `.npy` file).
//!
//! Each trajectory dict holds `observations` and `next_observations` (lists of dicts with
//! `images0`, uint8 128x128x3, and `state`, 7; a dict of stacked arrays is accepted too),
//! `actions` (a list of 7-vectors or a (T, 7) array), `terminals`, and `language` (a str or a list
//! of str; the first non-empty one is kept). Observation t+1 is `next_observations[t]`, so the
//! trajectory gets `observations` plus the last `next_observations`.
//!
//! ```no_run
//! use bridge_data::{npy_release, sources::ReadOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let trajectories = npy_release::read("put_spoon/train/out.npy".as_ref(), &ReadOptions::default())?;
//! println!("{} trajectories", trajectories.len());
//! # Ok(())
//! # }
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use crate::pickle::{self, ArrayData, DTypeKind, NdArray, PickleError, Value};
use crate::raw::rows_of_seven;
use crate::sources::{self, LagSource, ReadOptions};
use crate::trajectory::{BRIDGE_DIM, StoredFrame, Trajectory};

/// Why an `out.npy` could not be read. Every variant names the file (and trajectory index).
#[derive(Debug, thiserror::Error)]
pub enum NpyReleaseError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a NumPy object-array file: {problem}", path.display())]
    Header { path: PathBuf, problem: String },
    #[error("{}: pickle {source}", path.display())]
    Pickle { path: PathBuf, source: PickleError },
    #[error("{}: trajectory {index}: {field}: {problem}", path.display())]
    Field {
        path: PathBuf,
        index: usize,
        field: String,
        problem: String,
    },
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads every trajectory of an `out.npy` (the camera option must be 0: the release has only
/// `images0`).
pub fn read(path: &Path, options: &ReadOptions) -> Result<Vec<Trajectory>, NpyReleaseError> {
    let bytes = fs::read(path).map_err(|source| NpyReleaseError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let header_error = |problem: String| NpyReleaseError::Header {
        path: path.to_path_buf(),
        problem,
    };
    let payload = object_array_payload(&bytes).map_err(header_error)?;
    let root = pickle::from_slice(payload).map_err(|source| NpyReleaseError::Pickle {
        path: path.to_path_buf(),
        source,
    })?;
    let items = match &root {
        Value::Array(NdArray {
            data: ArrayData::Objects(items),
            ..
        }) => items.as_slice(),
        Value::List(items) => items.as_slice(),
        other => {
            return Err(header_error(format!(
                "pickled payload is a {}, expected an object array of dicts",
                other.type_name()
            )));
        }
    };
    let camera_key = format!("images{}", options.camera);
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let reader = TrajectoryReader {
                path,
                index,
                camera_key: &camera_key,
            };
            let trajectory = reader.read(item)?;
            Ok(sources::apply_options(
                trajectory,
                options,
                LagSource::Corrected,
            ))
        })
        .collect()
}

/// Checks the `.npy` header (magic, version, an object dtype) and returns the pickle after it.
fn object_array_payload(bytes: &[u8]) -> Result<&[u8], String> {
    if !bytes.starts_with(MAGIC) {
        return Err("missing the \\x93NUMPY magic".into());
    }
    let version = *bytes.get(6).ok_or("truncated header")?;
    let (header_len, start) = match version {
        1 => {
            let len = bytes.get(8..10).ok_or("truncated header")?;
            (usize::from(u16::from_le_bytes([len[0], len[1]])), 10)
        }
        2 | 3 => {
            let len = bytes.get(8..12).ok_or("truncated header")?;
            (
                u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize,
                12,
            )
        }
        other => return Err(format!("unsupported .npy version {other}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .ok_or("truncated header")?;
    let header = String::from_utf8_lossy(header);
    if !(header.contains("'descr': '|O'") || header.contains("'descr': 'O'")) {
        return Err(format!(
            "header {:?} is not an object (pickled) array",
            header.trim()
        ));
    }
    Ok(&bytes[start + header_len..])
}

struct TrajectoryReader<'a> {
    path: &'a Path,
    index: usize,
    camera_key: &'a str,
}

/// One observation sequence (frames and states) as read from `observations`.
struct ObservationRows {
    frames: Vec<StoredFrame>,
    states: Vec<[f32; BRIDGE_DIM]>,
}

impl TrajectoryReader<'_> {
    fn error(&self, field: &str, problem: impl Into<String>) -> NpyReleaseError {
        NpyReleaseError::Field {
            path: self.path.to_path_buf(),
            index: self.index,
            field: field.to_string(),
            problem: problem.into(),
        }
    }

    fn field<'v>(&self, item: &'v Value, key: &str) -> Result<&'v Value, NpyReleaseError> {
        if !matches!(item, Value::Dict(_)) {
            return Err(self.error(
                "(item)",
                format!("expected a dict, found {}", item.type_name()),
            ));
        }
        item.get(key).ok_or_else(|| self.error(key, "missing"))
    }

    fn read(&self, item: &Value) -> Result<Trajectory, NpyReleaseError> {
        let mut observations =
            self.observations(self.field(item, "observations")?, "observations")?;
        let next =
            self.observations(self.field(item, "next_observations")?, "next_observations")?;
        let actions = self.actions(self.field(item, "actions")?)?;
        let steps = observations.states.len();
        if steps == 0 || next.states.len() != steps || actions.len() != steps {
            return Err(self.error(
                "actions",
                format!(
                    "{steps} observations, {} next_observations and {} actions; expected equal and non-zero",
                    next.states.len(),
                    actions.len()
                ),
            ));
        }
        // Observation T is the last next_observation.
        observations.frames.extend(next.frames.into_iter().last());
        observations.states.extend(next.states.into_iter().last());
        Ok(Trajectory {
            source: PathBuf::from(format!("{}#{}", self.path.display(), self.index)),
            frames: observations.frames,
            states: observations.states,
            actions,
            language: self.language(item.get("language")),
            step_kinds: Vec::new(),
            outcome: None,
        })
    }

    /// A list of per-step dicts, or one dict of stacked arrays.
    fn observations(&self, value: &Value, field: &str) -> Result<ObservationRows, NpyReleaseError> {
        let image_field = format!("{field}[..]['{}']", self.camera_key);
        let state_field = format!("{field}[..]['state']");
        match value {
            Value::List(steps) => {
                let mut rows = ObservationRows {
                    frames: Vec::with_capacity(steps.len()),
                    states: Vec::with_capacity(steps.len()),
                };
                for step in steps {
                    let image = self.array(step.get(self.camera_key), &image_field)?;
                    rows.frames.extend(self.frames(image, &image_field)?);
                    let state = self.array(step.get("state"), &state_field)?;
                    rows.states.extend(self.states(state, &state_field)?);
                }
                Ok(rows)
            }
            Value::Dict(_) => Ok(ObservationRows {
                frames: self.frames(
                    self.array(value.get(self.camera_key), &image_field)?,
                    &image_field,
                )?,
                states: self.states(self.array(value.get("state"), &state_field)?, &state_field)?,
            }),
            other => Err(self.error(
                field,
                format!("expected a list of dicts, found {}", other.type_name()),
            )),
        }
    }

    fn array<'v>(
        &self,
        value: Option<&'v Value>,
        field: &str,
    ) -> Result<&'v NdArray, NpyReleaseError> {
        match value {
            Some(Value::Array(array)) => Ok(array),
            Some(other) => Err(self.error(
                field,
                format!("expected an ndarray, found {}", other.type_name()),
            )),
            None => Err(self.error(field, "missing")),
        }
    }

    /// uint8 frames of shape (H, W, 3) or (N, H, W, 3).
    fn frames(&self, array: &NdArray, field: &str) -> Result<Vec<StoredFrame>, NpyReleaseError> {
        let (count, height, width) = match array.shape.as_slice() {
            [h, w, 3] => (1, *h, *w),
            [n, h, w, 3] => (*n, *h, *w),
            other => {
                return Err(self.error(field, format!("expected shape (H, W, 3), found {other:?}")));
            }
        };
        if height == 0 || width == 0 {
            return Err(self.error(field, format!("empty image shape {:?}", array.shape)));
        }
        if array.dtype.kind != DTypeKind::UInt || array.dtype.item_size != 1 {
            return Err(self.error(
                field,
                format!("expected dtype uint8, found {}", array.dtype.typestr()),
            ));
        }
        let data = array
            .to_u8_vec()
            .map_err(|e| self.error(field, e.to_string()))?;
        let size = |v: usize| u32::try_from(v).map_err(|_| self.error(field, "image too large"));
        let (width_px, height_px) = (size(width)?, size(height)?);
        Ok(data
            .chunks_exact(height * width * 3)
            .take(count)
            .map(|chunk| StoredFrame::Rgb {
                width_px,
                height_px,
                data: chunk.to_vec(),
            })
            .collect())
    }

    fn states(
        &self,
        array: &NdArray,
        field: &str,
    ) -> Result<Vec<[f32; BRIDGE_DIM]>, NpyReleaseError> {
        rows_of_seven(array).map_err(|problem| self.error(field, problem))
    }

    /// A list of 7-vectors or one (T, 7) array.
    fn actions(&self, value: &Value) -> Result<Vec<[f32; BRIDGE_DIM]>, NpyReleaseError> {
        match value {
            Value::Array(array) => self.states(array, "actions"),
            Value::List(items) | Value::Tuple(items) => {
                let mut rows = Vec::with_capacity(items.len());
                for (t, item) in items.iter().enumerate() {
                    let field = format!("actions[{t}]");
                    let array = self.array(Some(item), &field)?;
                    match rows_of_seven(array)
                        .map_err(|p| self.error(&field, p))?
                        .as_slice()
                    {
                        [row] => rows.push(*row),
                        _ => {
                            return Err(self.error(
                                &field,
                                format!("expected shape (7,), found {:?}", array.shape),
                            ));
                        }
                    }
                }
                Ok(rows)
            }
            other => Err(self.error(
                "actions",
                format!("expected a list or ndarray, found {}", other.type_name()),
            )),
        }
    }

    fn language(&self, value: Option<&Value>) -> Option<String> {
        let text_of = |v: &Value| match v {
            Value::Str(text) => Some(text.trim().to_string()),
            Value::Bytes(bytes) => Some(String::from_utf8_lossy(bytes).trim().to_string()),
            Value::Array(NdArray {
                data: ArrayData::Objects(items),
                ..
            }) => items
                .iter()
                .find_map(|i| i.as_str().map(|s| s.trim().to_string())),
            _ => None,
        };
        match value? {
            Value::List(items) | Value::Tuple(items) => {
                items.iter().filter_map(text_of).find(|t| !t.is_empty())
            }
            other => text_of(other).filter(|t| !t.is_empty()),
        }
    }
}
