//! The reader: a committed cache opened for training, its frames memory-mapped.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{Mmap, MmapOptions};

use super::fingerprint::is_validation;
use super::format::{CacheError, JournalState, Manifest, SourceEntry, TrajectoryEntry, io_err};
use super::{
    ACTIONS_FILE, ActionBounds, CHANNELS, FRAMES_FILE, GRIPPER_DIM, JOURNAL_FILE, MANIFEST_FILE,
    STATES_FILE,
};
use crate::dataset::{Dataset, FrameBytes, Obs};
use crate::trajectory::BRIDGE_DIM;

/// The cache's action map (docs/mqe.md section 6, [`ActionBounds::fit`]) over the transitions of
/// `episodes` ((first row, rows) each) in row-major `actions` (`BRIDGE_DIM` per row), the
/// gripper mapped {0, 1} -> {-1, 1}. None when there is no transition.
pub fn action_bounds(actions: &[f32], episodes: &[(u64, u64)]) -> Option<ActionBounds> {
    bounds_of(|i| actions[i], episodes)
}

/// [`action_bounds`] over `action(i)`, the i-th value of the row-major action array.
pub(super) fn bounds_of(
    action: impl Fn(usize) -> f32,
    episodes: &[(u64, u64)],
) -> Option<ActionBounds> {
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
pub(super) fn map_committed(path: &Path, len: u64) -> Result<Option<Mmap>, CacheError> {
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
pub(super) fn read_journal(
    dir: &Path,
    state: &JournalState,
) -> Result<Vec<SourceEntry>, CacheError> {
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
pub(super) fn tile_trajectories(
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
