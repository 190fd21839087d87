//! The on-disk format: the error type, the settings, the manifest and journal records, and the
//! trajectories and sources prepared for appending.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fingerprint::Fnv;
use super::{ActionBounds, CHANNELS, FORMAT_VERSION, MANIFEST_FILE, SOURCE_HASH_SCHEME};
use crate::dataset::DatasetError;
use crate::trajectory::BRIDGE_DIM;

/// Why a cache could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error(
        "{path}: cache format version {found}, this build reads version {expected}; prepare the cache again"
    )]
    FormatVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error(
        "{path}: the cache was prepared with {field} = {cache}, but {requested} was requested; use the same setting or another --out"
    )]
    SettingsMismatch {
        path: PathBuf,
        field: &'static str,
        cache: String,
        requested: String,
    },
    #[error(
        "{path} exists and holds other files ({example}) but no {MANIFEST_FILE}: not a training cache; choose an empty or new directory"
    )]
    NotACache { path: PathBuf, example: String },
    #[error("{path} is locked: another `prepare` is writing this cache")]
    Locked { path: PathBuf },
    #[error("{path} holds {len} bytes, fewer than the {expected} the manifest commits")]
    Truncated {
        path: PathBuf,
        len: u64,
        expected: u64,
    },
    #[error("{path} line {line}: {reason}")]
    Journal {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Inconsistent { path: PathBuf, reason: String },
    #[error("trajectory {provenance}: {reason}")]
    Shape { provenance: String, reason: String },
    #[error("{path}: the cache holds no trajectories yet")]
    Empty { path: PathBuf },
    #[error(
        "{path}: validation fraction {fraction} leaves no training trajectory ({episodes} in the cache)"
    )]
    NoTrainingEpisodes {
        path: PathBuf,
        fraction: f64,
        episodes: usize,
    },
    #[error("{path}: {source}")]
    Dataset {
        path: PathBuf,
        #[source]
        source: DatasetError,
    },
}

pub(super) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What decides the cache's contents besides its sources; a cache is only ever extended with
/// the settings it was created with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Side of the square frames, in pixels.
    pub size_px: u32,
    /// Camera index (`images0` is 0).
    pub camera: usize,
    /// Gripper actions mapped to exactly 0 or 1.
    pub binarise_gripper: bool,
    /// How xyz/rpy actions were recomputed from states ("off" keeps the recorded ones).
    pub recompute_actions: String,
    /// How the pre-2021-07-23 camera lag was handled ("auto", "correct", "keep").
    pub camera_lag: String,
    /// The region `[x, y, width, height]` of each frame, in its pixels, squashed to `size_px`
    /// (`camera::preprocess::Crop`); absent: the whole frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_px: Option<[u32; 4]>,
    /// Episodes whose recording says they ended early (or never closed) are kept; by default
    /// they are skipped.
    #[serde(default)]
    pub keep_aborted: bool,
    /// Steps in which the operator jogged or paused are kept; by default they are left out and
    /// the episode is split around them (the action alone does not explain such a step).
    #[serde(default)]
    pub keep_intervened: bool,
}

impl CacheSettings {
    /// The plain settings: camera 0's whole frame squashed to `size_px`, the recorded actions
    /// and gripper as they are, the camera lag decided from the collection date.
    pub fn whole_frame(size_px: u32) -> CacheSettings {
        CacheSettings {
            size_px,
            camera: 0,
            binarise_gripper: false,
            recompute_actions: "off".into(),
            camera_lag: "auto".into(),
            crop_px: None,
            keep_aborted: false,
            keep_intervened: false,
        }
    }

    /// Bytes of one frame.
    pub fn frame_len(&self) -> usize {
        self.size_px as usize * self.size_px as usize * CHANNELS
    }

    /// The first field that differs from `other`, as (name, ours, theirs).
    pub(super) fn first_difference(&self, other: &Self) -> Option<(&'static str, String, String)> {
        let fields = [
            (
                "size_px",
                self.size_px.to_string(),
                other.size_px.to_string(),
            ),
            ("camera", self.camera.to_string(), other.camera.to_string()),
            (
                "binarise_gripper",
                self.binarise_gripper.to_string(),
                other.binarise_gripper.to_string(),
            ),
            (
                "recompute_actions",
                self.recompute_actions.clone(),
                other.recompute_actions.clone(),
            ),
            (
                "camera_lag",
                self.camera_lag.clone(),
                other.camera_lag.clone(),
            ),
            (
                "crop_px",
                format!("{:?}", self.crop_px),
                format!("{:?}", other.crop_px),
            ),
            (
                "keep_aborted",
                self.keep_aborted.to_string(),
                other.keep_aborted.to_string(),
            ),
            (
                "keep_intervened",
                self.keep_intervened.to_string(),
                other.keep_intervened.to_string(),
            ),
        ];
        fields.into_iter().find(|(_, a, b)| a != b)
    }
}

/// Counts of committed data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Observations (frames).
    pub rows: u64,
    /// Trajectories.
    pub episodes: u64,
    /// Rows with a next observation.
    pub transitions: u64,
    /// Sources recorded (read, or failed to read).
    pub sources: u64,
    /// Sources that could not be read at all (a corrupt pickle, record, file).
    pub failed_sources: u64,
    /// Trajectories of readable sources skipped (a corrupt frame, bad lengths, non-finite values).
    pub skipped_trajectories: u64,
    /// Trajectories from sources a simulator recorded ([`crate::provenance`]).
    #[serde(default)]
    pub simulated_episodes: u64,
    /// Recorded steps left out because the operator acted in them (`keep_intervened` off).
    #[serde(default)]
    pub intervened_steps_left_out: u64,
}

/// Something not cached, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipRecord {
    /// The file, trajectory or record at fault.
    pub path: String,
    /// What was wrong with it.
    pub reason: String,
}

/// Where the committed part of the journal ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalState {
    /// Bytes of `journal.jsonl` that are committed.
    pub committed_bytes: u64,
    /// Lines (sources) in that prefix.
    pub entries: u64,
}

/// Contents of `manifest.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// `[size_px, size_px, 3]`.
    pub frame_shape: [usize; 3],
    /// Entries per state row (7).
    pub state_dim: usize,
    /// Entries per action row (7).
    pub action_dim: usize,
    /// [`SOURCE_HASH_SCHEME`].
    pub source_hash_scheme: String,
    /// FNV-1a 64 over (path, hash) of every committed source, in journal order.
    pub sources_hash: String,
    /// What the contents depend on besides the sources.
    pub settings: CacheSettings,
    pub counts: Counts,
    pub journal: JournalState,
    /// Absent while the cache holds no transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_norm: Option<ActionBounds>,
    /// Every failed source and skipped trajectory, with the reason.
    #[serde(default)]
    pub skipped: Vec<SkipRecord>,
}

impl Manifest {
    pub(super) fn empty(settings: CacheSettings) -> Self {
        let side = settings.size_px as usize;
        Self {
            format_version: FORMAT_VERSION,
            frame_shape: [side, side, CHANNELS],
            state_dim: BRIDGE_DIM,
            action_dim: BRIDGE_DIM,
            source_hash_scheme: SOURCE_HASH_SCHEME.into(),
            sources_hash: format!("{:016x}", Fnv::new().finish()),
            settings,
            counts: Counts::default(),
            journal: JournalState::default(),
            action_norm: None,
            skipped: Vec::new(),
        }
    }

    /// Reads and checks `dir/manifest.toml`.
    pub fn read(dir: &Path) -> Result<Self, CacheError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        #[derive(Deserialize)]
        struct Version {
            format_version: Option<u32>,
        }
        let bad = |reason: String| CacheError::Manifest {
            path: path.clone(),
            reason,
        };
        let version: Version = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        match version.format_version {
            Some(FORMAT_VERSION) => {}
            Some(found) => {
                return Err(CacheError::FormatVersion {
                    path,
                    found,
                    expected: FORMAT_VERSION,
                });
            }
            None => return Err(bad("missing `format_version`".into())),
        }
        let manifest: Self = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let side = manifest.settings.size_px as usize;
        if manifest.frame_shape != [side, side, CHANNELS]
            || manifest.state_dim != BRIDGE_DIM
            || manifest.action_dim != BRIDGE_DIM
            || side == 0
        {
            return Err(bad(format!(
                "frame_shape {:?}, state_dim {}, action_dim {}: expected [{side}, {side}, 3] with size_px > 0, 7 and 7",
                manifest.frame_shape, manifest.state_dim, manifest.action_dim
            )));
        }
        Ok(manifest)
    }

    /// Committed bytes of each data file: (frames, states, actions).
    pub(super) fn data_lengths(&self) -> [u64; 3] {
        let rows = self.counts.rows;
        [
            rows * self.settings.frame_len() as u64,
            rows * (BRIDGE_DIM * 4) as u64,
            rows * (BRIDGE_DIM * 4) as u64,
        ]
    }
}

/// One trajectory of the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrajectoryEntry {
    /// Where it came from (a trajectory directory, `shard.tfrecord#7`, `out.npy#3`).
    pub provenance: String,
    /// Its first row in the data files.
    pub first_row: u64,
    /// Its observations.
    pub rows: u64,
    /// Hash of its provenance relative to the input root ([`split_key`](super::split_key)):
    /// decides the split.
    pub split_key: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// One line of `journal.jsonl`: a source as it was cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceEntry {
    /// The source's path as given to `prepare` (canonical, absolute): the key of resume.
    pub path: String,
    /// [`source_fingerprint`](super::source_fingerprint) when it was read.
    pub hash: String,
    /// Why the source could not be read at all; it holds no trajectory then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    pub trajectories: Vec<TrajectoryEntry>,
    /// Trajectories of this source left out, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkipRecord>,
    /// Recorded by a simulator ([`crate::provenance::collector_of`] when it was read).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub simulated: bool,
    /// Steps of this source's trajectories left out because the operator acted in them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub intervened_steps_left_out: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A trajectory decoded and squashed, ready to append.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedTrajectory {
    /// Where it came from (see [`TrajectoryEntry::provenance`]).
    pub provenance: String,
    /// What the split key hashes: the provenance relative to the input root, so the same data
    /// gets the same split wherever it is stored.
    pub split_name: String,
    pub language: Option<String>,
    /// `rows x size_px x size_px x 3` bytes.
    pub frames: Vec<u8>,
    /// One per row.
    pub states: Vec<[f32; BRIDGE_DIM]>,
    /// One per transition (`rows - 1`); the writer adds the zero pad row.
    pub actions: Vec<[f32; BRIDGE_DIM]>,
}

/// A source's outcome, ready to append.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedSource {
    /// See [`SourceEntry::path`].
    pub path: String,
    /// See [`SourceEntry::hash`].
    pub hash: String,
    /// Why it could not be read; `trajectories` is empty then.
    pub failed: Option<String>,
    pub trajectories: Vec<PreparedTrajectory>,
    pub skipped: Vec<SkipRecord>,
    /// See [`SourceEntry::simulated`].
    pub simulated: bool,
    /// See [`SourceEntry::intervened_steps_left_out`].
    pub intervened_steps_left_out: u64,
}

impl PreparedTrajectory {
    /// Checks lengths against the frame size and that every value is finite (what
    /// [`CacheWriter::append`](super::CacheWriter::append) requires).
    pub fn check(&self, frame_len: usize) -> Result<(), CacheError> {
        let shape = |reason: String| CacheError::Shape {
            provenance: self.provenance.clone(),
            reason,
        };
        let rows = self.states.len();
        if rows < 2 {
            return Err(shape(format!(
                "{rows} observations; a trajectory needs at least 2"
            )));
        }
        if self.actions.len() + 1 != rows {
            return Err(shape(format!(
                "{} actions for {rows} observations; expected {}",
                self.actions.len(),
                rows - 1
            )));
        }
        if self.frames.len() != rows * frame_len {
            return Err(shape(format!(
                "{} frame bytes for {rows} observations of {frame_len} bytes",
                self.frames.len()
            )));
        }
        let non_finite =
            |rows: &[[f32; BRIDGE_DIM]]| rows.iter().position(|r| r.iter().any(|v| !v.is_finite()));
        if let Some(t) = non_finite(&self.states) {
            return Err(shape(format!(
                "state {t} is not finite: {:?}",
                self.states[t]
            )));
        }
        if let Some(t) = non_finite(&self.actions) {
            return Err(shape(format!(
                "action {t} is not finite: {:?}",
                self.actions[t]
            )));
        }
        Ok(())
    }
}
