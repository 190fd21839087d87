//! Where recorded data came from: a simulator or a real robot.
//!
//! A collection session that is not a real robot's says so with a small TOML file,
//! [`COLLECTION_FILE`], in its session directory (the raw layout's `<date_time>` folder, the
//! parent of `raw/`): `bridge-sim collect` and `bridge-run --sim` write `source = "simulator"`,
//! `bridge-run` on a real arm writes `source = "robot"`. Bridge's own tools ignore the file. Data
//! without one (BridgeData V2 as released) counts as a robot's. `bridge-train prepare` counts the
//! simulator's episodes into the cache, and the checkpoint records the result
//! (`data.data_source`), which the runtime checks before it drives a real arm.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The marker file of a collection session.
pub const COLLECTION_FILE: &str = "collection.toml";

/// How many directories above a trajectory the marker may be: `traj<i>`, `traj_group<k>`,
/// `raw`, then the session folder.
const SEARCH_DEPTH: usize = 4;

/// What produced a session's recordings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Collector {
    Simulator,
    Robot,
}

/// The contents of [`COLLECTION_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collection {
    pub source: Collector,
}

/// Why a marker could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: expected `source = \"simulator\"` or `source = \"robot\"`: {reason}")]
    Parse { path: PathBuf, reason: String },
}

impl Collection {
    /// Writes the marker into the session directory `session_dir` (created if missing).
    pub fn write(&self, session_dir: &Path) -> Result<(), ProvenanceError> {
        let path = session_dir.join(COLLECTION_FILE);
        let io = |source| ProvenanceError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(session_dir).map_err(io)?;
        let text = toml::to_string(self).map_err(|e| ProvenanceError::Parse {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&path, text).map_err(io)
    }

    /// Reads a marker file.
    pub fn read(path: &Path) -> Result<Collection, ProvenanceError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProvenanceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ProvenanceError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }
}

/// The collector of the recording at `path` (a trajectory directory or file): the nearest
/// marker among it and its ancestors, a robot when there is none.
pub fn collector_of(path: &Path) -> Result<Collector, ProvenanceError> {
    match marker_of(path) {
        Some(marker) => Ok(Collection::read(&marker)?.source),
        None => Ok(Collector::Robot),
    }
}

/// The nearest `collection.toml` above `path` (or in it), if any: present only in sessions our
/// own tools recorded, which always close each episode with an end record
/// ([`crate::raw::AGENT_DATA_FILE`]).
pub fn marker_of(path: &Path) -> Option<std::path::PathBuf> {
    path.ancestors()
        .take(SEARCH_DEPTH + 1)
        .map(|dir| dir.join(COLLECTION_FILE))
        .find(|marker| marker.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_marker_decides_and_none_means_robot() {
        let root = tempfile::tempdir().unwrap();
        let session = root.path().join("task/00/2026-12-03_10-00-00");
        let traj = session.join("raw/traj_group0/traj3");
        std::fs::create_dir_all(&traj).unwrap();
        assert_eq!(collector_of(&traj).unwrap(), Collector::Robot);
        Collection {
            source: Collector::Simulator,
        }
        .write(&session)
        .unwrap();
        assert_eq!(collector_of(&traj).unwrap(), Collector::Simulator);
        let text = std::fs::read_to_string(session.join(COLLECTION_FILE)).unwrap();
        assert_eq!(text.trim(), "source = \"simulator\"");
    }

    #[test]
    fn a_bad_marker_is_an_error_naming_the_file() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join(COLLECTION_FILE), "source = \"dream\"\n").unwrap();
        let err = collector_of(root.path()).unwrap_err().to_string();
        assert!(
            err.contains(COLLECTION_FILE) && err.contains("simulator"),
            "{err}"
        );
    }
}
