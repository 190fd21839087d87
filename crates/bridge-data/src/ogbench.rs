//! Reader for OGBench datasets: numpy `.npz` archives with `observations`, `actions`, `terminals`.
//!
//! `observations` is `N x obs_dim` float (or `N x H x W x C` uint8 for the visual datasets),
//! `actions` is `N x act_dim` float, `terminals` is `N` bool/integer/float, nonzero on the last
//! row of each episode. Other keys (`qpos`, `qvel`, ...) are ignored.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use npyz::npz::NpzArchive;
use npyz::{DType, NpyFile, Order, TypeChar};

use crate::dataset::{Dataset, DatasetError, Obs};

const OBSERVATIONS: &str = "observations";
const ACTIONS: &str = "actions";
const TERMINALS: &str = "terminals";

/// Why an OGBench file could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum OgbenchError {
    #[error("{path}: cannot open: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("{path}: not a readable npz (zip) archive, truncated or corrupt? {source}")]
    Archive { path: PathBuf, source: io::Error },
    #[error("{path}: missing key `{key}` (expected {expected})")]
    MissingKey {
        path: PathBuf,
        key: &'static str,
        expected: &'static str,
    },
    #[error("{path}: key `{key}` cannot be read, truncated or corrupt entry? {source}")]
    Read {
        path: PathBuf,
        key: &'static str,
        source: io::Error,
    },
    #[error("{path}: key `{key}` has dtype {found}, expected {expected}")]
    Dtype {
        path: PathBuf,
        key: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("{path}: key `{key}` has shape {found:?}, expected {expected}")]
    Shape {
        path: PathBuf,
        key: &'static str,
        found: Vec<u64>,
        expected: &'static str,
    },
    #[error("{path}: key `{key}` has {found} rows but `observations` has {expected}")]
    LengthMismatch {
        path: PathBuf,
        key: &'static str,
        found: u64,
        expected: u64,
    },
    #[error("{path}: {source}")]
    Dataset { path: PathBuf, source: DatasetError },
}

/// A training file and its validation companion, when one exists.
#[derive(Debug, Clone, PartialEq)]
pub struct OgbenchSplit {
    pub train: Dataset,
    pub val: Option<Dataset>,
}

/// The validation companion of an OGBench file: `X.npz` -> `X-val.npz`.
pub fn val_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{stem}-val.npz"))
}

/// Loads `path` and, when it exists, its `-val.npz` companion.
pub fn load_with_val(path: &Path) -> Result<OgbenchSplit, OgbenchError> {
    let train = load(path)?;
    let companion = val_path(path);
    let val = if companion.is_file() {
        Some(load(&companion)?)
    } else {
        None
    };
    Ok(OgbenchSplit { train, val })
}

/// Loads one OGBench `.npz` file.
pub fn load(path: &Path) -> Result<Dataset, OgbenchError> {
    let file = File::open(path).map_err(|source| OgbenchError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    read_npz(BufReader::new(file), path)
}

/// Reads an OGBench archive from any seekable reader; `path` is used only in error messages.
pub fn read_npz<R: Read + Seek>(reader: R, path: &Path) -> Result<Dataset, OgbenchError> {
    let mut npz = NpzReader {
        archive: NpzArchive::new(reader).map_err(|source| OgbenchError::Archive {
            path: path.to_path_buf(),
            source,
        })?,
        path,
    };
    let (obs, rows) = npz.read_observations()?;
    let (actions, action_dim) = npz.read_actions(rows)?;
    let terminals = npz.read_terminals(rows)?;
    Dataset::new(obs, actions, action_dim, &terminals).map_err(|source| OgbenchError::Dataset {
        path: path.to_path_buf(),
        source,
    })
}

/// The element types this reader decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    F32,
    F64,
    U8,
    Bool,
    I32,
    I64,
}

impl Elem {
    fn of(dtype: &DType) -> Option<Self> {
        let DType::Plain(ty) = dtype else {
            return None;
        };
        match (ty.type_char(), ty.size_field()) {
            (TypeChar::Float, 4) => Some(Elem::F32),
            (TypeChar::Float, 8) => Some(Elem::F64),
            (TypeChar::Uint, 1) => Some(Elem::U8),
            (TypeChar::Bool, 1) => Some(Elem::Bool),
            (TypeChar::Int, 4) => Some(Elem::I32),
            (TypeChar::Int, 8) => Some(Elem::I64),
            _ => None,
        }
    }
}

enum Values {
    F32(Vec<f32>),
    F64(Vec<f64>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

struct Array {
    shape: Vec<u64>,
    values: Values,
}

/// What the caller accepts for one key, for checks and error messages.
struct Expect {
    key: &'static str,
    elems: &'static [Elem],
    description: &'static str,
}

const OBS_EXPECT: Expect = Expect {
    key: OBSERVATIONS,
    elems: &[Elem::F32, Elem::F64, Elem::U8],
    description: "float32/float64 N x obs_dim, or uint8 N x H x W x C images",
};
const ACTIONS_EXPECT: Expect = Expect {
    key: ACTIONS,
    elems: &[Elem::F32, Elem::F64],
    description: "float32/float64 N x act_dim",
};
const TERMINALS_EXPECT: Expect = Expect {
    key: TERMINALS,
    elems: &[
        Elem::Bool,
        Elem::U8,
        Elem::I32,
        Elem::I64,
        Elem::F32,
        Elem::F64,
    ],
    description: "bool/uint8/int/float of length N, nonzero on each episode's last row",
};

struct NpzReader<'p, R: Read + Seek> {
    archive: NpzArchive<R>,
    path: &'p Path,
}

impl<R: Read + Seek> NpzReader<'_, R> {
    fn read(&mut self, expect: &Expect) -> Result<Array, OgbenchError> {
        let path = self.path.to_path_buf();
        let key = expect.key;
        if !self.archive.array_names().any(|name| name == key) {
            return Err(OgbenchError::MissingKey {
                path,
                key,
                expected: expect.description,
            });
        }
        let read_err = |source| OgbenchError::Read {
            path: self.path.to_path_buf(),
            key,
            source,
        };
        let mut entry = self
            .archive
            .zip_archive()
            .by_name(&npyz::npz::file_name_from_array_name(key))
            .map_err(|e| read_err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
        let npy = NpyFile::new(BufReader::new(&mut entry)).map_err(read_err)?;
        let shape = npy.shape().to_vec();
        let elem = Elem::of(&npy.dtype()).filter(|elem| expect.elems.contains(elem));
        let Some(elem) = elem else {
            return Err(OgbenchError::Dtype {
                path,
                key,
                found: npy.dtype().descr(),
                expected: expect.description,
            });
        };
        if npy.order() == Order::Fortran {
            return Err(OgbenchError::Shape {
                path,
                key,
                found: shape,
                expected: "a C-order (row-major) array, not Fortran order",
            });
        }
        let values = decode(npy, elem).map_err(read_err)?;
        // The zip CRC is checked only when the entry is read to its end, which decoding a
        // well-formed array never does: drain it so a corrupt entry is reported, not used.
        io::copy(&mut entry, &mut io::sink()).map_err(read_err)?;
        Ok(Array { shape, values })
    }

    fn shape_err(&self, key: &'static str, found: &[u64], expected: &'static str) -> OgbenchError {
        OgbenchError::Shape {
            path: self.path.to_path_buf(),
            key,
            found: found.to_vec(),
            expected,
        }
    }

    fn read_observations(&mut self) -> Result<(Obs, u64), OgbenchError> {
        let array = self.read(&OBS_EXPECT)?;
        let shape = array.shape;
        let rows = shape.first().copied().unwrap_or(0);
        let obs = match (array.values, shape.as_slice()) {
            (Values::U8(data), &[_, height, width, channels]) => Obs::Pixels {
                data: data.into(),
                height: to_usize(height),
                width: to_usize(width),
                channels: to_usize(channels),
            },
            (Values::U8(_), _) => {
                return Err(self.shape_err(OBSERVATIONS, &shape, "uint8 images N x H x W x C"));
            }
            (Values::F32(data), &[_, dim]) => Obs::State {
                data,
                dim: to_usize(dim),
            },
            (Values::F64(data), &[_, dim]) => Obs::State {
                data: data.into_iter().map(|v| v as f32).collect(),
                dim: to_usize(dim),
            },
            _ => return Err(self.shape_err(OBSERVATIONS, &shape, "float N x obs_dim")),
        };
        Ok((obs, rows))
    }

    fn read_actions(&mut self, rows: u64) -> Result<(Vec<f32>, usize), OgbenchError> {
        let array = self.read(&ACTIONS_EXPECT)?;
        let &[found_rows, dim] = array.shape.as_slice() else {
            return Err(self.shape_err(ACTIONS, &array.shape, "N x act_dim (2-D)"));
        };
        self.check_rows(ACTIONS, found_rows, rows)?;
        let actions = match array.values {
            Values::F32(data) => data,
            Values::F64(data) => data.into_iter().map(|v| v as f32).collect(),
            _ => Vec::new(),
        };
        Ok((actions, to_usize(dim)))
    }

    fn read_terminals(&mut self, rows: u64) -> Result<Vec<bool>, OgbenchError> {
        let array = self.read(&TERMINALS_EXPECT)?;
        let &[found_rows] = array.shape.as_slice() else {
            return Err(self.shape_err(TERMINALS, &array.shape, "N (1-D)"));
        };
        self.check_rows(TERMINALS, found_rows, rows)?;
        Ok(match array.values {
            Values::Bool(data) => data,
            Values::U8(data) => data.into_iter().map(|v| v != 0).collect(),
            Values::I32(data) => data.into_iter().map(|v| v != 0).collect(),
            Values::I64(data) => data.into_iter().map(|v| v != 0).collect(),
            Values::F32(data) => data.into_iter().map(|v| v != 0.0).collect(),
            Values::F64(data) => data.into_iter().map(|v| v != 0.0).collect(),
        })
    }

    fn check_rows(&self, key: &'static str, found: u64, expected: u64) -> Result<(), OgbenchError> {
        if found == expected {
            return Ok(());
        }
        Err(OgbenchError::LengthMismatch {
            path: self.path.to_path_buf(),
            key,
            found,
            expected,
        })
    }
}

fn decode<R: Read>(npy: NpyFile<R>, elem: Elem) -> io::Result<Values> {
    Ok(match elem {
        Elem::F32 => Values::F32(npy.into_vec()?),
        Elem::F64 => Values::F64(npy.into_vec()?),
        Elem::U8 => Values::U8(npy.into_vec()?),
        Elem::Bool => Values::Bool(npy.into_vec()?),
        Elem::I32 => Values::I32(npy.into_vec()?),
        Elem::I64 => Values::I64(npy.into_vec()?),
    })
}

/// Array dimensions come from a file that has already been read into memory, so they fit.
fn to_usize(dim: u64) -> usize {
    usize::try_from(dim).unwrap_or(usize::MAX)
}
