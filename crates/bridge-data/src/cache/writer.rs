//! The writer: appends sources to a cache under its lock and commits them through the manifest.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::fingerprint::{Fnv, split_key};
use super::format::{
    CacheError, CacheSettings, Counts, JournalState, Manifest, PreparedSource, PreparedTrajectory,
    SkipRecord, SourceEntry, TrajectoryEntry, io_err,
};
use super::reader::{Cache, bounds_of, map_committed, read_journal, tile_trajectories};
use super::{ACTIONS_FILE, FRAMES_FILE, JOURNAL_FILE, LOCK_FILE, MANIFEST_FILE, STATES_FILE};
use crate::trajectory::BRIDGE_DIM;

/// The append handles of the four data files.
pub(super) struct DataFiles {
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
    pub(super) fn sync(&mut self, dir: &Path) -> Result<u64, CacheError> {
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
    pub(super) files: DataFiles,
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
    simulated: bool,
    intervened_steps_left_out: u64,
}

impl Recorded {
    fn of(entry: &SourceEntry) -> Self {
        Self {
            path: entry.path.clone(),
            hash: entry.hash.clone(),
            failed: entry.failed.clone(),
            skipped: entry.skipped.clone(),
            trajectories: entry.trajectories.len() as u64,
            simulated: entry.simulated,
            intervened_steps_left_out: entry.intervened_steps_left_out,
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
            simulated: source.simulated,
            intervened_steps_left_out: source.intervened_steps_left_out,
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
            simulated_episodes: self
                .statuses
                .iter()
                .filter(|r| r.simulated)
                .map(|r| r.trajectories)
                .sum(),
            intervened_steps_left_out: self
                .statuses
                .iter()
                .map(|r| r.intervened_steps_left_out)
                .sum(),
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
