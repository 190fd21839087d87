//! What is saved with each recorded episode besides the raw layout's own files, so that a
//! recording says how it was made and how it ended:
//!
//! ```text
//! traj<i>/episode.toml      goal, checkpoint and its id, command line (written at the start)
//! traj<i>/run-config.toml   the resolved runtime configuration
//! traj<i>/goal.<png|jpg>    the goal image as given
//! traj<i>/agent_data.pkl    the end record (bridge_data::raw; written when the episode closes)
//! ```
//!
//! A directory without `agent_data.pkl` never closed (the process was killed): `prepare` counts
//! it as aborted.

use std::io::Read;
use std::path::{Path, PathBuf};

use bridge_data::Outcome;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::RuntimeConfig;
use crate::messages::EpisodeDone;
use crate::modes::EpisodeEnd;
use crate::policy::GoalImage;

/// What a run was started with, the same for each of its episodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The checkpoint directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<PathBuf>,
    /// [`checkpoint_id`] of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_id: Option<String>,
    /// The virtual tabletop's seed, on the simulator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_seed: Option<u64>,
    /// The program and its arguments.
    pub command_line: Vec<String>,
}

impl RunRecord {
    /// The record of this process's command line and `checkpoint` (its id is computed here).
    pub fn of_process(checkpoint: &Path) -> RunRecord {
        RunRecord {
            checkpoint: Some(checkpoint.to_path_buf()),
            checkpoint_id: checkpoint_id(checkpoint).ok(),
            sim_seed: None,
            command_line: std::env::args().collect(),
        }
    }
}

/// `sha256:` and the first 16 hex digits of the SHA-256 of `<dir>/model.safetensors`: the same
/// weights give the same id wherever they are stored.
pub fn checkpoint_id(dir: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(dir.join("model.safetensors"))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest = hasher.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

/// The start record of one episode.
pub struct EpisodeRecord<'a> {
    pub run: &'a RunRecord,
    pub config: &'a RuntimeConfig,
    pub goal: &'a GoalImage,
}

#[derive(Serialize)]
struct EpisodeToml<'a> {
    /// The goal's file in the trajectory directory, when it was copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    goal_image: Option<String>,
    /// Where the goal came from.
    goal_source: String,
    started_unix_s: f64,
    #[serde(flatten)]
    run: &'a RunRecord,
}

impl EpisodeRecord<'_> {
    /// Writes `episode.toml`, `run-config.toml` and the goal into `dir` (created).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let goal_image = self.copy_goal(dir)?;
        let toml = EpisodeToml {
            goal_image,
            goal_source: self.goal.path.display().to_string(),
            started_unix_s: crate::clock::unix_time_s(),
            run: self.run,
        };
        let text = toml::to_string(&toml).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("episode.toml"), text)?;
        std::fs::write(dir.join("run-config.toml"), self.config.to_toml())
    }

    /// Copies the goal file as `goal.<ext>`; a goal made in memory has none to copy.
    fn copy_goal(&self, dir: &Path) -> std::io::Result<Option<String>> {
        let source = &self.goal.path;
        if !source.is_file() {
            return Ok(None);
        }
        let ext = source
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("png")
            .to_ascii_lowercase();
        let name = format!("goal.{ext}");
        std::fs::copy(source, dir.join(&name))?;
        Ok(Some(name))
    }
}

/// The end record of an episode the control thread answered `done` for: completed only when
/// the policy took its last step and nothing stopped it.
pub fn recorded_outcome(done: &EpisodeDone) -> Outcome {
    match done {
        EpisodeDone::Ended(record) => match (record.end, &record.fault) {
            (_, Some(fault)) => Outcome::aborted(format!("safety fault: {fault}")),
            (EpisodeEnd::Completed, None) => Outcome::Completed,
            (end, None) => Outcome::aborted(crate::monitor::describe_end(end)),
        },
        EpisodeDone::NotBegun { mode } => {
            Outcome::aborted(format!("never began: the arm was in mode {mode}"))
        }
    }
}
