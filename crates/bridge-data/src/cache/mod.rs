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

mod fingerprint;
mod format;
mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use crate::norm::ActionBounds;
use crate::trajectory::BRIDGE_DIM;

pub use fingerprint::{is_validation, source_fingerprint, split_key};
pub use format::{
    CacheError, CacheSettings, Counts, JournalState, Manifest, PreparedSource, PreparedTrajectory,
    SkipRecord, SourceEntry, TrajectoryEntry,
};
pub use reader::{Cache, CacheSplit, action_bounds};
pub use writer::{CacheWriter, SourceStatus};

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
