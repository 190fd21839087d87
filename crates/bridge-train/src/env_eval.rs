//! Scoring a checkpoint in OGBench's own environments during training (`fit --eval-every`).
//!
//! What it is for: running `tools/ogbench-eval/evaluate.py` (Python: `ogbench` and `mujoco`,
//! which serve the checkpoint through `policy-server`) on the checkpoint a run has just saved,
//! and turning its JSON record into an [`EnvEvalRecord`] for `metrics.jsonl`.
//! What it is not for: the evaluation protocol itself, which lives in the Python tool so that
//! it is OGBench's code that steps the environment and says "success".
//!
//! ```no_run
//! use bridge_train::env_eval::EnvEvaluator;
//! let eval = EnvEvaluator::new("pointmaze-medium-stitch-v0", 10);
//! eval.preflight()?;
//! let record = eval.evaluate("runs/pm".as_ref(), 5000)?;
//! println!("mean success {:.0}%", 100.0 * record.mean_success);
//! # Ok::<(), bridge_train::env_eval::EnvEvalError>(())
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// The evaluator script, relative to the repository root.
pub const DEFAULT_SCRIPT: &str = "tools/ogbench-eval/evaluate.py";

/// Why an evaluation could not be run or read.
#[derive(Debug, thiserror::Error)]
pub enum EnvEvalError {
    #[error(
        "the OGBench evaluator {path} does not exist (pass --eval-script, or run from the repository root)"
    )]
    MissingScript { path: PathBuf },
    #[error(
        "the policy server {path} does not exist (build it: cargo build --release -p policy-server, or pass --eval-server)"
    )]
    MissingServer { path: PathBuf },
    #[error(
        "could not start {python}: {source} (pass --eval-python with a Python that has tools/ogbench-eval/requirements.txt installed)"
    )]
    Start {
        python: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{python} cannot import ogbench and mujoco: {stderr}(install tools/ogbench-eval/requirements.txt into it)"
    )]
    MissingPackages { python: String, stderr: String },
    #[error("the OGBench evaluator failed on {checkpoint} (exit status {status}): {stderr}")]
    Failed {
        checkpoint: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("the evaluator's record {path} is unreadable: {reason}")]
    BadRecord { path: PathBuf, reason: String },
}

/// One task's score, as the evaluator reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSuccess {
    pub task_id: u32,
    pub successes: u32,
    pub episodes: u32,
    pub success_rate: f64,
}

/// The part of the evaluator's JSON record that training logs.
#[derive(Debug, Clone, Deserialize)]
struct EvaluatorJson {
    env: String,
    episodes_per_task: u32,
    tasks: Vec<TaskSuccess>,
    mean_success: f64,
}

/// Marks an environment evaluation in `metrics.jsonl` (`"split": "env"`), so that its lines
/// are told apart from the loss records (`"train"`, `"val"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvSplit {
    Env,
}

/// One line of `metrics.jsonl`: the checkpoint at `step` scored in an OGBench environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvEvalRecord {
    pub step: u64,
    pub split: EnvSplit,
    /// OGBench environment name, e.g. `pointmaze-medium-stitch-v0`.
    pub env: String,
    pub episodes_per_task: u32,
    /// Mean over the tasks of the success rate, in [0, 1].
    pub mean_success: f64,
    pub tasks: Vec<TaskSuccess>,
    /// Wall time of the evaluation, seconds.
    pub wall_s: f64,
}

impl EnvEvalRecord {
    /// "success 60% (100/100/0/0/100)" for the progress bar.
    pub fn summary(&self) -> String {
        let per_task: Vec<String> = self
            .tasks
            .iter()
            .map(|t| format!("{:.0}", 100.0 * t.success_rate))
            .collect();
        format!(
            "success {:.0}% ({})",
            100.0 * self.mean_success,
            per_task.join("/")
        )
    }
}

/// How to run the evaluator.
#[derive(Debug, Clone)]
pub struct EnvEvaluator {
    /// OGBench environment name.
    pub env: String,
    /// Episodes per task.
    pub episodes: u32,
    /// Python interpreter with `ogbench` and `mujoco` installed.
    pub python: String,
    /// `tools/ogbench-eval/evaluate.py`.
    pub script: PathBuf,
    /// The `policy-server` binary.
    pub server: PathBuf,
    /// Seed of the environment resets.
    pub seed: u64,
}

impl EnvEvaluator {
    /// `episodes` per task in `env`, with `python3`, the script at [`DEFAULT_SCRIPT`] and the
    /// `policy-server` beside the running executable.
    pub fn new(env: impl Into<String>, episodes: u32) -> Self {
        let server = std::env::current_exe()
            .map(|exe| exe.with_file_name("policy-server"))
            .unwrap_or_else(|_| PathBuf::from("policy-server"));
        Self {
            env: env.into(),
            episodes,
            python: "python3".into(),
            script: PathBuf::from(DEFAULT_SCRIPT),
            server,
            seed: 0,
        }
    }

    /// Checks, before any training, that the script and the server exist and that the Python
    /// imports OGBench's packages: a run should not train for an hour and then fail here.
    pub fn preflight(&self) -> Result<(), EnvEvalError> {
        if !self.script.is_file() {
            return Err(EnvEvalError::MissingScript {
                path: self.script.clone(),
            });
        }
        if !self.server.is_file() {
            return Err(EnvEvalError::MissingServer {
                path: self.server.clone(),
            });
        }
        let output = Command::new(&self.python)
            .args(["-c", "import ogbench, mujoco"])
            .output()
            .map_err(|source| self.start_error(source))?;
        if !output.status.success() {
            return Err(EnvEvalError::MissingPackages {
                python: self.python.clone(),
                stderr: last_line(&output.stderr),
            });
        }
        Ok(())
    }

    /// Scores the checkpoint in `checkpoint_dir` (saved at `step`).
    pub fn evaluate(
        &self,
        checkpoint_dir: &Path,
        step: u64,
    ) -> Result<EnvEvalRecord, EnvEvalError> {
        let json_path = checkpoint_dir.join("env-eval.json");
        let started = Instant::now();
        let output = Command::new(&self.python)
            .arg(&self.script)
            .arg("--checkpoint")
            .arg(checkpoint_dir)
            .args(["--env", &self.env])
            .args(["--episodes", &self.episodes.to_string()])
            .args(["--seed", &self.seed.to_string()])
            .arg("--server")
            .arg(&self.server)
            .arg("--json")
            .arg(&json_path)
            .output()
            .map_err(|source| self.start_error(source))?;
        if !output.status.success() {
            return Err(EnvEvalError::Failed {
                checkpoint: checkpoint_dir.to_path_buf(),
                status: output.status.to_string(),
                stderr: last_line(&output.stderr),
            });
        }
        let parsed = read_record(&json_path)?;
        Ok(EnvEvalRecord {
            step,
            split: EnvSplit::Env,
            env: parsed.env,
            episodes_per_task: parsed.episodes_per_task,
            mean_success: parsed.mean_success,
            tasks: parsed.tasks,
            wall_s: started.elapsed().as_secs_f64(),
        })
    }

    fn start_error(&self, source: std::io::Error) -> EnvEvalError {
        EnvEvalError::Start {
            python: self.python.clone(),
            source,
        }
    }
}

/// The OGBench environment a dataset file belongs to, from its name:
/// `pointmaze-medium-stitch-v0.npz` and `pointmaze-medium-stitch-v0-val.npz` both give
/// `pointmaze-medium-stitch-v0`. None when the name does not look like an OGBench dataset.
pub fn env_for_dataset(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    let stem = stem.strip_suffix("-val").unwrap_or(stem);
    let versioned = stem
        .rsplit_once("-v")
        .is_some_and(|(_, v)| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()));
    (versioned && stem.contains('-')).then(|| stem.to_string())
}

fn read_record(path: &Path) -> Result<EvaluatorJson, EnvEvalError> {
    let bad = |reason: String| EnvEvalError::BadRecord {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let record: EvaluatorJson = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if record.tasks.is_empty() || !(0.0..=1.0).contains(&record.mean_success) {
        return Err(bad(format!(
            "expected at least one task and a mean success in [0, 1], got {} task(s) and {}",
            record.tasks.len(),
            record.mean_success
        )));
    }
    Ok(record)
}

/// The last non-empty line of a child's stderr: its error message, without the traceback.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    format!("{} ", line.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_names_give_their_environment() {
        let env = |p: &str| env_for_dataset(Path::new(p));
        assert_eq!(
            env("../data/pointmaze-medium-stitch-v0.npz").as_deref(),
            Some("pointmaze-medium-stitch-v0")
        );
        assert_eq!(
            env("pointmaze-large-navigate-v0-val.npz").as_deref(),
            Some("pointmaze-large-navigate-v0")
        );
        assert_eq!(env("cache64"), None);
        assert_eq!(env("play.npz"), None);
        assert_eq!(env("my-data-vx.npz"), None);
    }

    #[test]
    fn the_summary_lists_each_task() {
        let task = |task_id, successes| TaskSuccess {
            task_id,
            successes,
            episodes: 10,
            success_rate: f64::from(successes) / 10.0,
        };
        let record = EnvEvalRecord {
            step: 5000,
            split: EnvSplit::Env,
            env: "pointmaze-medium-stitch-v0".into(),
            episodes_per_task: 10,
            mean_success: 0.6,
            tasks: vec![
                task(1, 10),
                task(2, 10),
                task(3, 0),
                task(4, 0),
                task(5, 10),
            ],
            wall_s: 1.0,
        };
        assert_eq!(record.summary(), "success 60% (100/100/0/0/100)");
        let line = serde_json::to_string(&record).unwrap();
        assert!(line.contains(r#""split":"env""#), "{line}");
    }
}
