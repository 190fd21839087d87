//! The training cache: BridgeData trajectories decoded once, squashed to the training size and
//! stored so that training memory-maps the frames instead of loading them.
//!
//! A cache is one directory:
//!
//! | file | contents |
//! |---|---|
//! | `frames.u8` | `rows x S x S x 3` bytes, HWC RGB (S = `size_px`, 64 or 128) |
//! | `states.f32` | `rows x 7` little-endian f32, Bridge states |
//! | `actions.f32` | `rows x 7` little-endian f32; the last row of each episode is a zero pad, never sampled |
//! | `journal.jsonl` | one JSON line per source: its path, content hash, trajectories (provenance, first row, rows, split key, language) and what was skipped |
//! | `manifest.toml` | format version, settings, counts, the action normalisation (docs/mqe.md section 6), the combined hash of the sources, what was skipped, and the committed length of the journal |
//!
//! The manifest is the commit record. Writers only append to the four data files and then
//! replace `manifest.toml` atomically (temporary file, fsync, rename); everything past the
//! manifest's committed lengths is an interrupted chunk and is cut off when a writer reopens the
//! cache. So a killed `prepare` leaves a cache that reads as of its last commit and that the next
//! `prepare` continues. The per-source records live in the append-only journal rather than in
//! `manifest.toml` so that a commit rewrites a few hundred bytes, not megabytes (60k trajectories).
//!
//! Source hashes are FNV-1a 64 over the relative path, size and modification time of every
//! file of the source ([`source_fingerprint`]): a `stat` per file, so checking 60k sources on
//! resume costs well under a second, where hashing their bytes would re-read the whole dataset
//! (hundreds of GB). Any rewrite of a file changes its mtime, which is what matters here.
//!
//! ```no_run
//! use bridge_data::cache::Cache;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cache = Cache::open("bridge-cache".as_ref())?;
//! let split = cache.split(0.05)?; // 5% of the trajectories, chosen by hash, for validation
//! println!("{:?}", split.train.summary());
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, DatasetError, FrameBytes, Obs};
pub use crate::norm::ActionBounds;
use crate::trajectory::BRIDGE_DIM;

/// Version of the cache layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The commit record.
pub const MANIFEST_FILE: &str = "manifest.toml";
/// Squashed frames, u8 HWC.
pub const FRAMES_FILE: &str = "frames.u8";
/// Bridge states, f32 little-endian.
pub const STATES_FILE: &str = "states.f32";
/// Bridge actions, f32 little-endian, zero pad on each episode's last row.
pub const ACTIONS_FILE: &str = "actions.f32";
/// Per-source records, one JSON object per line.
pub const JOURNAL_FILE: &str = "journal.jsonl";
/// Held (advisory exclusive lock) by the one writer.
pub const LOCK_FILE: &str = "prepare.lock";
/// Colour channels of every frame.
pub const CHANNELS: usize = 3;
/// The gripper action: absolute in [0, 1], mapped {0, 1} -> {-1, 1}.
pub const GRIPPER_DIM: usize = BRIDGE_DIM - 1;
/// How [`source_fingerprint`] hashes (recorded in the manifest).
pub const SOURCE_HASH_SCHEME: &str =
    "fnv1a64 of (relative path, size, mtime ns) of every file of the source, sorted by path";

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

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
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
}

impl CacheSettings {
    /// Bytes of one frame.
    pub fn frame_len(&self) -> usize {
        self.size_px as usize * self.size_px as usize * CHANNELS
    }

    /// The first field that differs from `other`, as (name, ours, theirs).
    fn first_difference(&self, other: &Self) -> Option<(&'static str, String, String)> {
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
    fn empty(settings: CacheSettings) -> Self {
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
    fn data_lengths(&self) -> [u64; 3] {
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
    /// Hash of its provenance relative to the input root ([`split_key`]): decides the split.
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
    /// [`source_fingerprint`] when it was read.
    pub hash: String,
    /// Why the source could not be read at all; it holds no trajectory then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    pub trajectories: Vec<TrajectoryEntry>,
    /// Trajectories of this source left out, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkipRecord>,
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
}

impl PreparedTrajectory {
    /// Checks lengths against the frame size and that every value is finite (what
    /// [`CacheWriter::append`] requires).
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

/// 64-bit FNV-1a: tiny, stable across builds and platforms (unlike `DefaultHasher`), and
/// enough for change detection and split keys (not an adversarial setting).
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// A field: its bytes and a separator, so ("ab", "c") and ("a", "bc") differ.
    fn field(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }

    fn finish(self) -> u64 {
        self.0
    }
}

/// splitmix64's finaliser: spreads FNV's weakly mixed high bits.
fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The split key of a trajectory named `name` (its provenance relative to the input root).
pub fn split_key(name: &str) -> u64 {
    let mut h = Fnv::new();
    h.write(name.as_bytes());
    mix64(h.finish())
}

/// Whether a trajectory with `split_key` is held out when `fraction` of them are: the key's
/// top 53 bits as a uniform number in [0, 1), below `fraction`. Deterministic, and a larger
/// fraction only adds trajectories to the validation set.
pub fn is_validation(split_key: u64, fraction: f64) -> bool {
    let unit = (split_key >> 11) as f64 / (1u64 << 53) as f64;
    unit < fraction
}

/// Fingerprint of a source file or directory: [`SOURCE_HASH_SCHEME`], as `fnv1a64:<hex>`.
pub fn source_fingerprint(path: &Path) -> Result<String, CacheError> {
    let mut files = Vec::new();
    collect_files(path, path, &mut files)?;
    files.sort();
    let mut h = Fnv::new();
    for (relative, file) in &files {
        let meta = std::fs::metadata(file).map_err(io_err(file))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        h.field(relative.as_bytes());
        h.field(&meta.len().to_le_bytes());
        h.field(&mtime_ns.to_le_bytes());
    }
    Ok(format!("fnv1a64:{:016x}", h.finish()))
}

fn collect_files(
    root: &Path,
    path: &Path,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), CacheError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    if meta.is_file() {
        let relative = path.strip_prefix(root).unwrap_or(path);
        out.push((relative.to_string_lossy().into_owned(), path.to_path_buf()));
        return Ok(());
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io_err(path))? {
            let entry = entry.map_err(io_err(path))?;
            collect_files(root, &entry.path(), out)?;
        }
    }
    Ok(())
}

/// The cache's action map (docs/mqe.md section 6, [`ActionBounds::fit`]) over the transitions of
/// `episodes` ((first row, rows) each) in row-major `actions` (`BRIDGE_DIM` per row), the
/// gripper mapped {0, 1} -> {-1, 1}. None when there is no transition.
pub fn action_bounds(actions: &[f32], episodes: &[(u64, u64)]) -> Option<ActionBounds> {
    bounds_of(|i| actions[i], episodes)
}

/// [`action_bounds`] over `action(i)`, the i-th value of the row-major action array.
fn bounds_of(action: impl Fn(usize) -> f32, episodes: &[(u64, u64)]) -> Option<ActionBounds> {
    let transition_rows: Vec<u32> = episodes
        .iter()
        .flat_map(|&(first, rows)| first..(first + rows).saturating_sub(1))
        .map(|row| row as u32)
        .collect();
    ActionBounds::fit(action, BRIDGE_DIM, &transition_rows, Some(GRIPPER_DIM))
}

/// Maps the first `len` bytes of `path` read-only; None for `len == 0` (nothing to map).
///
/// Callers pass a committed length: see the SAFETY comment for why those bytes never change.
fn map_committed(path: &Path, len: u64) -> Result<Option<Mmap>, CacheError> {
    if len == 0 {
        return Ok(None);
    }
    let file = File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    if file_len < len {
        return Err(CacheError::Truncated {
            path: path.to_path_buf(),
            len: file_len,
            expected: len,
        });
    }
    let len_usize = usize::try_from(len).map_err(|_| CacheError::Inconsistent {
        path: path.to_path_buf(),
        reason: format!("{len} bytes do not fit in this platform's address space"),
    })?;
    // SAFETY: a memory map is sound while nobody modifies or truncates the mapped bytes. We
    // map only the first `len` bytes, `len` being a length committed by the manifest. Cache
    // files are append-only: a writer (one at a time, under LOCK_FILE) writes only past the
    // committed length, and when it reopens a cache it truncates to the committed length of
    // the newest manifest, which never decreases (commits only add rows), so never below any
    // length a reader mapped. Nothing in this workspace writes inside a committed prefix.
    // Other programs editing the files in place are outside this guarantee, as for any mapped
    // file; deleting or replacing the files is harmless (the mapping keeps the old inode).
    let map = unsafe { MmapOptions::new().len(len_usize).map(&file) }.map_err(io_err(path))?;
    Ok(Some(map))
}

/// Reads `count` little-endian f32 from the start of `path`.
fn read_f32s(path: &Path, count: u64) -> Result<Vec<f32>, CacheError> {
    let Some(map) = map_committed(path, count * 4)? else {
        return Ok(Vec::new());
    };
    Ok(map
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Reads the committed journal lines.
fn read_journal(dir: &Path, state: &JournalState) -> Result<Vec<SourceEntry>, CacheError> {
    let path = dir.join(JOURNAL_FILE);
    if state.committed_bytes == 0 {
        return Ok(Vec::new());
    }
    let file = File::open(&path).map_err(io_err(&path))?;
    let len = file.metadata().map_err(io_err(&path))?.len();
    if len < state.committed_bytes {
        return Err(CacheError::Truncated {
            path,
            len,
            expected: state.committed_bytes,
        });
    }
    let reader = BufReader::new(file.take(state.committed_bytes));
    let mut entries = Vec::with_capacity(state.entries as usize);
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io_err(&path))?;
        let entry: SourceEntry = serde_json::from_str(&line).map_err(|e| CacheError::Journal {
            path: path.clone(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        entries.push(entry);
    }
    if entries.len() as u64 != state.entries {
        return Err(CacheError::Inconsistent {
            path,
            reason: format!(
                "{} committed lines, the manifest says {}",
                entries.len(),
                state.entries
            ),
        });
    }
    Ok(entries)
}

/// Trajectories of `entries` in row order, checked to tile `0..rows` exactly.
fn tile_trajectories(
    path: &Path,
    entries: &[SourceEntry],
    rows: u64,
) -> Result<Vec<TrajectoryEntry>, CacheError> {
    let mut next_row = 0;
    let mut out = Vec::new();
    for traj in entries.iter().flat_map(|e| &e.trajectories) {
        if traj.first_row != next_row || traj.rows < 2 {
            return Err(CacheError::Inconsistent {
                path: path.to_path_buf(),
                reason: format!(
                    "trajectory {} starts at row {} with {} rows; expected row {next_row} and >= 2 rows",
                    traj.provenance, traj.first_row, traj.rows
                ),
            });
        }
        next_row += traj.rows;
        out.push(traj.clone());
    }
    if next_row != rows {
        return Err(CacheError::Inconsistent {
            path: path.to_path_buf(),
            reason: format!(
                "the journal's trajectories end at row {next_row}, the manifest commits {rows} rows"
            ),
        });
    }
    Ok(out)
}

/// A committed cache, opened for training: frames memory-mapped, actions and states in memory
/// (28 bytes a row each, against 12 or 48 KiB of frame).
pub struct Cache {
    dir: PathBuf,
    manifest: Manifest,
    frames: Option<Arc<Mmap>>,
    states: Vec<f32>,
    actions: Vec<f32>,
    sources: Vec<SourceEntry>,
    trajectories: Vec<TrajectoryEntry>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("dir", &self.dir)
            .field("counts", &self.manifest.counts)
            .finish_non_exhaustive()
    }
}

/// Training and validation datasets of one cache, sharing its mapped frames.
#[derive(Debug, Clone)]
pub struct CacheSplit {
    pub train: Dataset,
    /// None when no trajectory is held out.
    pub val: Option<Dataset>,
    /// The action map over the training trajectories only. The manifest's map
    /// ([`Cache::action_bounds`]) covers every trajectory, the held-out ones included, so a model
    /// trained with it would have seen the validation actions' range.
    pub train_action_bounds: ActionBounds,
}

impl Cache {
    /// True when `dir` holds a cache manifest.
    pub fn is_cache(dir: &Path) -> bool {
        dir.join(MANIFEST_FILE).is_file()
    }

    /// Opens the cache in `dir` as of its last commit.
    pub fn open(dir: &Path) -> Result<Self, CacheError> {
        let manifest = Manifest::read(dir)?;
        let [frames_len, states_len, actions_len] = manifest.data_lengths();
        let frames = map_committed(&dir.join(FRAMES_FILE), frames_len)?;
        if let Some(map) = &frames {
            // Training reads frames at random: read-ahead would only evict useful pages when
            // the cache is larger than memory. Advice only; failure changes nothing.
            let _ = map.advise(memmap2::Advice::Random);
        }
        let states = read_f32s(&dir.join(STATES_FILE), states_len / 4)?;
        let actions = read_f32s(&dir.join(ACTIONS_FILE), actions_len / 4)?;
        let sources = read_journal(dir, &manifest.journal)?;
        let trajectories =
            tile_trajectories(&dir.join(JOURNAL_FILE), &sources, manifest.counts.rows)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            frames: frames.map(Arc::new),
            states,
            actions,
            sources,
            trajectories,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The committed sources, in journal order.
    pub fn sources(&self) -> &[SourceEntry] {
        &self.sources
    }

    /// Every trajectory, in row order.
    pub fn trajectories(&self) -> &[TrajectoryEntry] {
        &self.trajectories
    }

    /// All frames, `rows x size_px x size_px x 3` bytes (memory-mapped).
    pub fn frames(&self) -> &[u8] {
        self.frames.as_deref().map_or(&[], |m| &m[..])
    }

    /// All states, `rows x 7`.
    pub fn states(&self) -> &[f32] {
        &self.states
    }

    /// All actions, `rows x 7`, zero on each episode's last row.
    pub fn actions(&self) -> &[f32] {
        &self.actions
    }

    /// The action normalisation of the manifest (None for a cache without transitions).
    pub fn action_bounds(&self) -> Option<&ActionBounds> {
        self.manifest.action_norm.as_ref()
    }

    /// Every trajectory as one pixel dataset (frames shared with the mapping, not copied).
    pub fn dataset(&self) -> Result<Dataset, CacheError> {
        let Some(map) = &self.frames else {
            return Err(CacheError::Empty {
                path: self.dir.clone(),
            });
        };
        let side = self.manifest.settings.size_px as usize;
        let storage: Arc<dyn AsRef<[u8]> + Send + Sync> = map.clone();
        let obs = Obs::Pixels {
            data: FrameBytes::shared(storage),
            height: side,
            width: side,
            channels: CHANNELS,
        };
        let lengths: Vec<usize> = self.trajectories.iter().map(|t| t.rows as usize).collect();
        Dataset::from_episode_lengths(obs, self.actions.clone(), BRIDGE_DIM, &lengths).map_err(
            |source| CacheError::Dataset {
                path: self.dir.clone(),
                source,
            },
        )
    }

    /// Training and validation datasets: a trajectory is held out when
    /// [`is_validation`]`(split_key, val_fraction)`.
    pub fn split(&self, val_fraction: f64) -> Result<CacheSplit, CacheError> {
        let all = self.dataset()?;
        let held_out: Vec<bool> = self
            .trajectories
            .iter()
            .map(|t| is_validation(t.split_key, val_fraction))
            .collect();
        let no_train = || CacheError::NoTrainingEpisodes {
            path: self.dir.clone(),
            fraction: val_fraction,
            episodes: held_out.len(),
        };
        if held_out.iter().all(|&h| h) {
            return Err(no_train());
        }
        let train = all
            .select_episodes(|e| !held_out[e])
            .map_err(|_| no_train())?;
        let train_episodes: Vec<(u64, u64)> = self
            .trajectories
            .iter()
            .zip(&held_out)
            .filter(|&(_, &held)| !held)
            .map(|(t, _)| (t.first_row, t.rows))
            .collect();
        // None only without a transition, which training cannot use either.
        let train_action_bounds =
            action_bounds(&self.actions, &train_episodes).ok_or_else(no_train)?;
        let val = if held_out.iter().any(|&h| h) {
            Some(
                all.select_episodes(|e| held_out[e])
                    .map_err(|source| CacheError::Dataset {
                        path: self.dir.clone(),
                        source,
                    })?,
            )
        } else {
            None
        };
        Ok(CacheSplit {
            train,
            val,
            train_action_bounds,
        })
    }
}

/// The append handles of the four data files.
struct DataFiles {
    frames: BufWriter<File>,
    states: BufWriter<File>,
    actions: BufWriter<File>,
    journal: BufWriter<File>,
}

impl DataFiles {
    /// Opens each file, cuts it to its committed length and positions at the end.
    fn open(dir: &Path, manifest: &Manifest) -> Result<Self, CacheError> {
        let [frames, states, actions] = manifest.data_lengths();
        let open = |name: &str, committed: u64| -> Result<BufWriter<File>, CacheError> {
            let path = dir.join(name);
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            let len = file.metadata().map_err(io_err(&path))?.len();
            if len < committed {
                return Err(CacheError::Truncated {
                    path,
                    len,
                    expected: committed,
                });
            }
            // Anything past the commit is an interrupted chunk: drop it.
            file.set_len(committed).map_err(io_err(&path))?;
            file.seek(SeekFrom::End(0)).map_err(io_err(&path))?;
            Ok(BufWriter::with_capacity(1 << 20, file))
        };
        Ok(Self {
            frames: open(FRAMES_FILE, frames)?,
            states: open(STATES_FILE, states)?,
            actions: open(ACTIONS_FILE, actions)?,
            journal: open(JOURNAL_FILE, manifest.journal.committed_bytes)?,
        })
    }

    /// Flushes and syncs every file; returns the journal's length.
    fn sync(&mut self, dir: &Path) -> Result<u64, CacheError> {
        for (name, writer) in [
            (FRAMES_FILE, &mut self.frames),
            (STATES_FILE, &mut self.states),
            (ACTIONS_FILE, &mut self.actions),
            (JOURNAL_FILE, &mut self.journal),
        ] {
            let path = dir.join(name);
            writer.flush().map_err(io_err(&path))?;
            writer.get_ref().sync_data().map_err(io_err(&path))?;
        }
        let path = dir.join(JOURNAL_FILE);
        let len = self.journal.get_ref().metadata().map_err(io_err(&path))?;
        Ok(len.len())
    }
}

/// Where a source stands in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStatus {
    /// Never recorded.
    New,
    /// Recorded (cached, or failed) with this fingerprint.
    Recorded { hash: String, failed: bool },
}

/// Appends sources to a cache and commits them; one writer per cache at a time.
pub struct CacheWriter {
    dir: PathBuf,
    _lock: File,
    manifest: Manifest,
    files: DataFiles,
    /// The latest entry of each recorded source path: index into `statuses`.
    by_path: HashMap<String, usize>,
    /// Recorded sources in journal order (superseded failures are replaced in place).
    statuses: Vec<Recorded>,
    /// (first row, rows) of every trajectory, committed and pending.
    episodes: Vec<(u64, u64)>,
    /// Rows written, committed and pending.
    rows: u64,
    /// Journal lines written since the last commit.
    pending_entries: u64,
}

/// What the writer remembers of a recorded source.
#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    hash: String,
    failed: Option<String>,
    skipped: Vec<SkipRecord>,
    trajectories: u64,
}

impl Recorded {
    fn of(entry: &SourceEntry) -> Self {
        Self {
            path: entry.path.clone(),
            hash: entry.hash.clone(),
            failed: entry.failed.clone(),
            skipped: entry.skipped.clone(),
            trajectories: entry.trajectories.len() as u64,
        }
    }
}

impl CacheWriter {
    /// Creates the cache in `dir`, or reopens it to add sources: checks `settings` against the
    /// cache's, takes the writer lock, and cuts every file back to its last commit.
    pub fn open(dir: &Path, settings: CacheSettings) -> Result<Self, CacheError> {
        if settings.size_px == 0 {
            return Err(CacheError::SettingsMismatch {
                path: dir.to_path_buf(),
                field: "size_px",
                cache: "a positive size".into(),
                requested: "0".into(),
            });
        }
        refuse_foreign_dir(dir)?;
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock = lock_dir(dir)?;
        let manifest = if Cache::is_cache(dir) {
            let manifest = Manifest::read(dir)?;
            if let Some((field, cache, requested)) = manifest.settings.first_difference(&settings) {
                return Err(CacheError::SettingsMismatch {
                    path: dir.join(MANIFEST_FILE),
                    field,
                    cache,
                    requested,
                });
            }
            manifest
        } else {
            Manifest::empty(settings)
        };
        let entries = read_journal(dir, &manifest.journal)?;
        let trajectories =
            tile_trajectories(&dir.join(JOURNAL_FILE), &entries, manifest.counts.rows)?;
        let files = DataFiles::open(dir, &manifest)?;
        let mut writer = Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            rows: manifest.counts.rows,
            manifest,
            files,
            by_path: HashMap::new(),
            statuses: Vec::new(),
            episodes: trajectories.iter().map(|t| (t.first_row, t.rows)).collect(),
            pending_entries: 0,
        };
        for entry in &entries {
            writer.remember(Recorded::of(entry));
        }
        if !Cache::is_cache(dir) {
            // A new cache gets its manifest at once, so that it is recognised as one.
            writer.commit()?;
        }
        Ok(writer)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest of the last commit.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Rows written so far, committed or not.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether the source at `path` was recorded, and with which fingerprint.
    pub fn status(&self, path: &str) -> SourceStatus {
        match self.by_path.get(path).map(|&i| &self.statuses[i]) {
            None => SourceStatus::New,
            Some(r) => SourceStatus::Recorded {
                hash: r.hash.clone(),
                failed: r.failed.is_some(),
            },
        }
    }

    fn remember(&mut self, recorded: Recorded) {
        match self.by_path.get(&recorded.path) {
            Some(&i) => self.statuses[i] = recorded,
            None => {
                self.by_path
                    .insert(recorded.path.clone(), self.statuses.len());
                self.statuses.push(recorded);
            }
        }
    }

    /// Appends a source's trajectories (rows, zero pad action) and its journal line. Nothing
    /// is committed until [`CacheWriter::commit`].
    pub fn append(&mut self, source: PreparedSource) -> Result<(), CacheError> {
        let frame_len = self.manifest.settings.frame_len();
        for traj in &source.trajectories {
            traj.check(frame_len)?;
        }
        let mut entries = Vec::with_capacity(source.trajectories.len());
        for traj in &source.trajectories {
            entries.push(self.append_rows(traj)?);
        }
        let entry = SourceEntry {
            path: source.path,
            hash: source.hash,
            failed: source.failed,
            trajectories: entries,
            skipped: source.skipped,
        };
        let journal_path = self.dir.join(JOURNAL_FILE);
        let mut line = serde_json::to_string(&entry).map_err(|e| CacheError::Journal {
            path: journal_path.clone(),
            line: (self.manifest.journal.entries + self.pending_entries + 1) as usize,
            reason: e.to_string(),
        })?;
        line.push('\n');
        self.files
            .journal
            .write_all(line.as_bytes())
            .map_err(io_err(&journal_path))?;
        self.pending_entries += 1;
        self.remember(Recorded::of(&entry));
        Ok(())
    }

    fn append_rows(&mut self, traj: &PreparedTrajectory) -> Result<TrajectoryEntry, CacheError> {
        let rows = traj.states.len() as u64;
        let dir = &self.dir;
        self.files
            .frames
            .write_all(&traj.frames)
            .map_err(io_err(&dir.join(FRAMES_FILE)))?;
        write_rows(&mut self.files.states, &dir.join(STATES_FILE), &traj.states)?;
        let pad = [0.0f32; BRIDGE_DIM];
        let actions_path = dir.join(ACTIONS_FILE);
        write_rows(&mut self.files.actions, &actions_path, &traj.actions)?;
        write_rows(&mut self.files.actions, &actions_path, &[pad])?;
        let entry = TrajectoryEntry {
            provenance: traj.provenance.clone(),
            first_row: self.rows,
            rows,
            split_key: split_key(&traj.split_name),
            language: traj.language.clone(),
        };
        self.episodes.push((self.rows, rows));
        self.rows += rows;
        Ok(entry)
    }

    /// Makes everything appended so far durable and visible: syncs the data files and the
    /// journal, then replaces the manifest atomically with the new counts, normalisation and
    /// committed lengths.
    pub fn commit(&mut self) -> Result<&Manifest, CacheError> {
        let journal_len = self.files.sync(&self.dir)?;
        let mut manifest = self.manifest.clone();
        manifest.counts = self.counts();
        manifest.journal = JournalState {
            committed_bytes: journal_len,
            entries: self.manifest.journal.entries + self.pending_entries,
        };
        manifest.sources_hash = self.sources_hash();
        manifest.skipped = self
            .statuses
            .iter()
            .flat_map(|r| {
                let failed = r.failed.as_ref().map(|reason| SkipRecord {
                    path: r.path.clone(),
                    reason: reason.clone(),
                });
                failed.into_iter().chain(r.skipped.iter().cloned())
            })
            .collect();
        let actions_len = manifest.data_lengths()[2];
        // Mapped, not read: the normalisation needs one column at a time.
        let actions = map_committed(&self.dir.join(ACTIONS_FILE), actions_len)?;
        manifest.action_norm = actions.and_then(|map| {
            let value = |i: usize| {
                let b = &map[i * 4..i * 4 + 4];
                f32::from_le_bytes([b[0], b[1], b[2], b[3]])
            };
            bounds_of(value, &self.episodes)
        });
        write_manifest(&self.dir, &manifest)?;
        self.manifest = manifest;
        self.pending_entries = 0;
        Ok(&self.manifest)
    }

    fn counts(&self) -> Counts {
        let episodes = self.episodes.len() as u64;
        Counts {
            rows: self.rows,
            episodes,
            transitions: self.rows - episodes,
            sources: self.statuses.len() as u64,
            failed_sources: self.statuses.iter().filter(|r| r.failed.is_some()).count() as u64,
            skipped_trajectories: self.statuses.iter().map(|r| r.skipped.len() as u64).sum(),
        }
    }

    fn sources_hash(&self) -> String {
        let mut h = Fnv::new();
        for r in self.statuses.iter().filter(|r| r.trajectories > 0) {
            h.field(r.path.as_bytes());
            h.field(r.hash.as_bytes());
        }
        format!("{:016x}", h.finish())
    }
}

/// Writes f32 rows little-endian.
fn write_rows(
    writer: &mut BufWriter<File>,
    path: &Path,
    rows: &[[f32; BRIDGE_DIM]],
) -> Result<(), CacheError> {
    for v in rows.iter().flatten() {
        writer.write_all(&v.to_le_bytes()).map_err(io_err(path))?;
    }
    Ok(())
}

/// Refuses an existing directory that is not a cache and holds files a cache would not, so a
/// mistyped `--out` never writes into someone's data.
fn refuse_foreign_dir(dir: &Path) -> Result<(), CacheError> {
    if !dir.exists() || Cache::is_cache(dir) {
        return Ok(());
    }
    let ours = [
        FRAMES_FILE,
        STATES_FILE,
        ACTIONS_FILE,
        JOURNAL_FILE,
        LOCK_FILE,
        "manifest.toml.tmp",
    ];
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let name = entry.map_err(io_err(dir))?.file_name();
        let name = name.to_string_lossy();
        if !ours.contains(&name.as_ref()) {
            return Err(CacheError::NotACache {
                path: dir.to_path_buf(),
                example: name.into_owned(),
            });
        }
    }
    Ok(())
}

/// Takes the exclusive writer lock of `dir`; released when the returned file is dropped
/// (also when the process dies).
fn lock_dir(dir: &Path) -> Result<File, CacheError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CacheError::Locked { path }),
        Err(std::fs::TryLockError::Error(source)) => Err(CacheError::Io { path, source }),
    }
}

/// Writes `manifest.toml` through a synced temporary file and a rename, then syncs the
/// directory, so the manifest on disk is always a complete old or new one.
fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), CacheError> {
    let path = dir.join(MANIFEST_FILE);
    let text = toml::to_string(manifest).map_err(|e| CacheError::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
    let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
    file.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    // The rename is durable once the directory entry is; not every platform lets a directory
    // be opened for syncing, and the data are safe either way (old manifest = old commit).
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(size_px: u32) -> CacheSettings {
        CacheSettings {
            size_px,
            camera: 0,
            binarise_gripper: false,
            recompute_actions: "off".into(),
            camera_lag: "auto".into(),
            crop_px: None,
        }
    }

    /// A trajectory of `rows` frames of 4x4, every byte of frame t equal to `seed + t`.
    fn trajectory(name: &str, rows: usize, seed: u8) -> PreparedTrajectory {
        PreparedTrajectory {
            provenance: format!("/data/{name}"),
            split_name: name.into(),
            language: Some(format!("task {name}")),
            frames: (0..rows)
                .flat_map(|t| vec![seed.wrapping_add(t as u8); 4 * 4 * 3])
                .collect(),
            states: (0..rows).map(|t| [t as f32; 7]).collect(),
            actions: (0..rows - 1)
                .map(|t| {
                    let mut a = [0.01 * t as f32 + f32::from(seed); 7];
                    a[GRIPPER_DIM] = (t % 2) as f32;
                    a
                })
                .collect(),
        }
    }

    fn source(name: &str, trajectories: Vec<PreparedTrajectory>) -> PreparedSource {
        PreparedSource {
            path: format!("/data/{name}"),
            hash: format!("fnv1a64:{name}"),
            failed: None,
            trajectories,
            skipped: Vec::new(),
        }
    }

    #[test]
    fn committed_sources_read_back_with_pad_actions_and_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = CacheWriter::open(dir.path(), settings(4)).unwrap();
        writer
            .append(source(
                "a",
                vec![trajectory("a", 3, 10), trajectory("a2", 2, 50)],
            ))
            .unwrap();
        writer
            .append(source("b", vec![trajectory("b", 4, 90)]))
            .unwrap();
        let manifest = writer.commit().unwrap().clone();
        assert_eq!(manifest.counts.rows, 9);
        assert_eq!(manifest.counts.episodes, 3);
        assert_eq!(manifest.counts.transitions, 6);
        assert_eq!(manifest.counts.sources, 2);
        drop(writer);

        let cache = Cache::open(dir.path()).unwrap();
        assert_eq!(cache.manifest(), &manifest);
        assert_eq!(cache.frames().len(), 9 * 48);
        assert_eq!(
            cache.frames()[3 * 48],
            50,
            "second trajectory's first frame"
        );
        let actions = cache.actions();
        assert_eq!(&actions[2 * 7..3 * 7], &[0.0; 7], "pad row of trajectory a");
        assert_eq!(actions[3 * 7], 50.0);
        assert_eq!(cache.states()[8 * 7], 3.0);
        let trajs = cache.trajectories();
        assert_eq!(trajs[1].provenance, "/data/a2");
        assert_eq!((trajs[2].first_row, trajs[2].rows), (5, 4));
        assert_eq!(trajs[2].split_key, split_key("b"));
        assert_eq!(trajs[0].language.as_deref(), Some("task a"));
        let data = cache.dataset().unwrap();
        assert_eq!(data.episode_ends(), &[2, 4, 8]);
        assert_eq!(data.summary().obs_shape, vec![4, 4, 3]);
    }

    #[test]
    fn uncommitted_appends_are_cut_off_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = CacheWriter::open(dir.path(), settings(4)).unwrap();
        writer
            .append(source("a", vec![trajectory("a", 3, 1)]))
            .unwrap();
        writer.commit().unwrap();
        // Appended and flushed but never committed: a kill in the middle of a chunk.
        writer
            .append(source("b", vec![trajectory("b", 5, 2)]))
            .unwrap();
        writer.files.sync(dir.path()).unwrap();
        drop(writer);
        assert!(
            std::fs::metadata(dir.path().join(FRAMES_FILE))
                .unwrap()
                .len()
                > 3 * 48
        );

        let cache = Cache::open(dir.path()).unwrap();
        assert_eq!(
            cache.manifest().counts.rows,
            3,
            "readers see the last commit"
        );
        drop(cache);
        let mut writer = CacheWriter::open(dir.path(), settings(4)).unwrap();
        assert_eq!(writer.status("/data/b"), SourceStatus::New);
        assert!(matches!(
            writer.status("/data/a"),
            SourceStatus::Recorded { failed: false, .. }
        ));
        writer
            .append(source("c", vec![trajectory("c", 2, 3)]))
            .unwrap();
        writer.commit().unwrap();
        drop(writer);
        assert_eq!(
            std::fs::metadata(dir.path().join(FRAMES_FILE))
                .unwrap()
                .len(),
            5 * 48,
            "the interrupted rows are gone"
        );
        let cache = Cache::open(dir.path()).unwrap();
        assert_eq!(cache.frames()[3 * 48], 3);
        assert_eq!(cache.sources().len(), 2);
    }

    #[test]
    fn settings_must_match_and_one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let writer = CacheWriter::open(dir.path(), settings(4)).unwrap();
        let err = CacheWriter::open(dir.path(), settings(4)).err().unwrap();
        assert!(matches!(err, CacheError::Locked { .. }), "{err}");
        drop(writer);
        let err = CacheWriter::open(dir.path(), settings(8)).err().unwrap();
        let text = err.to_string();
        assert!(
            text.contains("size_px") && text.contains('4') && text.contains('8'),
            "{text}"
        );
        let other = CacheSettings {
            binarise_gripper: true,
            ..settings(4)
        };
        let err = CacheWriter::open(dir.path(), other).err().unwrap();
        assert!(err.to_string().contains("binarise_gripper"), "{err}");
    }

    #[test]
    fn failures_and_skips_are_counted_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = CacheWriter::open(dir.path(), settings(4)).unwrap();
        let mut bad = source("bad", Vec::new());
        bad.failed = Some("obs_dict.pkl: truncated".into());
        writer.append(bad).unwrap();
        let mut partial = source("partial", vec![trajectory("p", 2, 0)]);
        partial.skipped.push(SkipRecord {
            path: "/data/partial#1/images0/im_3.jpg".into(),
            reason: "could not decode image".into(),
        });
        writer.append(partial).unwrap();
        let manifest = writer.commit().unwrap().clone();
        assert_eq!(manifest.counts.failed_sources, 1);
        assert_eq!(manifest.counts.skipped_trajectories, 1);
        assert_eq!(manifest.skipped.len(), 2);
        assert!(manifest.skipped[1].path.ends_with("im_3.jpg"));
        assert_eq!(
            writer.status("/data/bad"),
            SourceStatus::Recorded {
                hash: "fnv1a64:bad".into(),
                failed: true
            }
        );
        // A failed source read again successfully replaces its failure.
        writer
            .append(source("bad", vec![trajectory("bad", 2, 0)]))
            .unwrap();
        let manifest = writer.commit().unwrap();
        assert_eq!(manifest.counts.failed_sources, 0);
        assert_eq!(manifest.counts.sources, 2);
        assert_eq!(manifest.counts.episodes, 2);
    }

    #[test]
    fn malformed_trajectories_are_refused_with_their_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = CacheWriter::open(dir.path(), settings(4)).unwrap();
        let mut t = trajectory("x", 3, 0);
        t.actions.pop();
        let err = writer.append(source("x", vec![t])).unwrap_err();
        assert!(
            err.to_string().contains("/data/x") && err.to_string().contains("1 actions"),
            "{err}"
        );
        let mut t = trajectory("y", 3, 0);
        t.states[1][2] = f32::NAN;
        let err = writer.append(source("y", vec![t])).unwrap_err();
        assert!(err.to_string().contains("state 1"), "{err}");
    }

    #[test]
    fn action_bounds_skip_pad_rows_and_fix_the_gripper() {
        // Two episodes; dimension 0 takes 0..=100 over the transitions, pads hold 1000.
        let mut actions = Vec::new();
        let mut episodes = Vec::new();
        let mut value = 0.0f32;
        for len in [51u64, 52] {
            episodes.push(((actions.len() / 7) as u64, len));
            for t in 0..len {
                let mut a = [5.0f32; 7];
                a[0] = if t + 1 == len { 1000.0 } else { value };
                a[GRIPPER_DIM] = 0.3;
                if t + 1 < len {
                    value += 1.0;
                }
                actions.extend_from_slice(&a);
            }
        }
        let bounds = action_bounds(&actions, &episodes).unwrap();
        assert_eq!(bounds.transitions, 101);
        assert!((bounds.low[0] - 1.0).abs() < 1e-4 && (bounds.high[0] - 99.0).abs() < 1e-4);
        assert_eq!(
            (bounds.low[1], bounds.high[1]),
            (4.0, 6.0),
            "constant dimension"
        );
        assert_eq!((bounds.low[6], bounds.high[6]), (0.0, 1.0), "gripper");
        assert!(action_bounds(&actions, &[]).is_none());
    }

    #[test]
    fn split_is_deterministic_and_close_to_the_fraction() {
        let keys: Vec<u64> = (0..4000)
            .map(|i| split_key(&format!("raw/traj{i}")))
            .collect();
        let held = keys.iter().filter(|&&k| is_validation(k, 0.1)).count();
        assert!((300..500).contains(&held), "{held} of 4000 at 10%");
        assert!(keys.iter().all(|&k| !is_validation(k, 0.0)));
        assert!(keys.iter().all(|&k| is_validation(k, 1.0)));
        // Growing the fraction only adds trajectories.
        assert!(
            keys.iter()
                .all(|&k| !is_validation(k, 0.1) || is_validation(k, 0.2))
        );
        assert_eq!(split_key("raw/traj7"), keys[7]);
    }

    /// A cache of 40 three-row trajectories; trajectory i's actions are about i, so every
    /// trajectory moves the action percentiles.
    fn forty_trajectories(dir: &Path) -> Cache {
        let mut writer = CacheWriter::open(dir, settings(4)).unwrap();
        let trajs: Vec<_> = (0..40)
            .map(|i| trajectory(&format!("t{i}"), 3, i))
            .collect();
        writer.append(source("all", trajs)).unwrap();
        writer.commit().unwrap();
        drop(writer);
        Cache::open(dir).unwrap()
    }

    #[test]
    fn split_shares_frames_and_keeps_episodes_apart() {
        let dir = tempfile::tempdir().unwrap();
        let cache = forty_trajectories(dir.path());
        let split = cache.split(0.3).unwrap();
        let val = split.val.unwrap();
        assert_eq!(split.train.num_episodes() + val.num_episodes(), 40);
        assert!(val.num_episodes() > 3 && split.train.num_episodes() > 15);
        for (e, t) in cache.trajectories().iter().enumerate() {
            let start = t.first_row as u32;
            let in_val = val.episode_starts().contains(&start);
            assert_eq!(in_val, is_validation(t.split_key, 0.3), "episode {e}");
            assert_eq!(split.train.episode_starts().contains(&start), !in_val);
        }
        let (Obs::Pixels { data: a, .. }, Obs::Pixels { data: b, .. }) =
            (split.train.obs(), val.obs())
        else {
            panic!("pixel datasets expected")
        };
        assert_eq!(a.as_ptr(), b.as_ptr(), "one mapping, no copy");
        assert_eq!(a.as_ptr(), cache.frames().as_ptr());
        assert!(cache.split(1.0).is_err());
        let whole = cache.split(0.0).unwrap();
        assert!(whole.val.is_none());
        assert_eq!(Some(&whole.train_action_bounds), cache.action_bounds());
    }

    #[test]
    fn the_training_action_map_ignores_held_out_trajectories() {
        let dir = tempfile::tempdir().unwrap();
        let cache = forty_trajectories(dir.path());
        let split = cache.split(0.3).unwrap();
        let train_episodes: Vec<(u64, u64)> = cache
            .trajectories()
            .iter()
            .filter(|t| !is_validation(t.split_key, 0.3))
            .map(|t| (t.first_row, t.rows))
            .collect();
        let expected = action_bounds(cache.actions(), &train_episodes).unwrap();
        assert_eq!(split.train_action_bounds, expected);
        assert_eq!(
            split.train_action_bounds.transitions,
            2 * split.train.num_episodes() as u64
        );
        assert_ne!(Some(&split.train_action_bounds), cache.action_bounds());
    }

    #[test]
    fn fingerprint_follows_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        let traj = dir.path().join("traj0");
        std::fs::create_dir_all(traj.join("images0")).unwrap();
        std::fs::write(traj.join("images0/im_0.jpg"), b"abc").unwrap();
        std::fs::write(traj.join("obs_dict.pkl"), b"xyz").unwrap();
        let before = source_fingerprint(&traj).unwrap();
        assert_eq!(before, source_fingerprint(&traj).unwrap());
        assert!(before.starts_with("fnv1a64:"));
        std::fs::write(traj.join("images0/im_0.jpg"), b"abcd").unwrap();
        assert_ne!(before, source_fingerprint(&traj).unwrap());
        let err = source_fingerprint(&dir.path().join("missing")).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn a_directory_of_other_files_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let err = CacheWriter::open(dir.path(), settings(4)).err().unwrap();
        assert!(err.to_string().contains("notes.txt"), "{err}");
        assert!(!dir.path().join(MANIFEST_FILE).exists());
        // A cache that crashed before its first commit (only its own files) is reused.
        let fresh = tempfile::tempdir().unwrap();
        std::fs::write(fresh.path().join(LOCK_FILE), b"").unwrap();
        std::fs::write(fresh.path().join(FRAMES_FILE), [1u8; 10]).unwrap();
        let writer = CacheWriter::open(fresh.path(), settings(4)).unwrap();
        assert_eq!(writer.rows(), 0);
        assert_eq!(
            std::fs::metadata(fresh.path().join(FRAMES_FILE))
                .unwrap()
                .len(),
            0
        );
    }

    #[test]
    fn newer_format_versions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(CacheWriter::open(dir.path(), settings(4)).unwrap());
        let path = dir.path().join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("format_version = 1", "format_version = 9"),
        )
        .unwrap();
        let err = Cache::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, CacheError::FormatVersion { found: 9, .. }),
            "{err}"
        );
        assert!(Cache::is_cache(dir.path()));
        assert!(!Cache::is_cache(&dir.path().join("nope")));
    }
}
