//! Checkpoint directories: `model.safetensors`, `config.toml` and, for resuming,
//! `optimizer.safetensors`.
//!
//! Loading validates the format version, the configuration, and every tensor's presence and
//! shape, and names the file, field or tensor that is wrong.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::action::ActionNorm;
use crate::agent::Agent;
use crate::config::{ModelConfig, ObsKind, TrainConfig};
use crate::error::{MqeError, Result};

/// Version of the checkpoint layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Parameter file inside a checkpoint directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// Configuration file inside a checkpoint directory.
pub const CONFIG_FILE: &str = "config.toml";
/// Optimiser state file inside a checkpoint directory (optional).
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Where a checkpoint's training data came from. A program that drives a real robot checks it:
/// a policy trained on simulator data has never seen a real camera or arm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSource {
    /// Not recorded (checkpoints written before the field existed, random weights).
    #[default]
    Unknown,
    /// Every episode came from a simulator.
    Simulator,
    /// Every episode came from a real robot (BridgeData V2, a station's own recordings).
    Robot,
    /// Some episodes from a simulator, some from a robot.
    Mixed,
    /// A benchmark's dataset (OGBench), not robot data at all.
    Benchmark,
}

impl DataSource {
    /// The source of data with `simulated` of `episodes` episodes from a simulator.
    pub fn of_episodes(simulated: u64, episodes: u64) -> DataSource {
        match simulated {
            0 => DataSource::Robot,
            s if s >= episodes => DataSource::Simulator,
            _ => DataSource::Mixed,
        }
    }

    /// Whether any of the data came from a simulator.
    pub fn includes_simulator(self) -> bool {
        matches!(self, DataSource::Simulator | DataSource::Mixed)
    }

    /// The name used in `config.toml` (`data.data_source`).
    pub fn as_str(self) -> &'static str {
        match self {
            DataSource::Unknown => "unknown",
            DataSource::Simulator => "simulator",
            DataSource::Robot => "robot",
            DataSource::Mixed => "mixed",
            DataSource::Benchmark => "benchmark",
        }
    }
}

impl std::fmt::Display for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the model was trained on, recorded for provenance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointMeta {
    /// Dataset path or name.
    pub dataset: String,
    /// Episodes in the training data.
    pub episodes: u64,
    /// Rows (observations) in the training data.
    pub rows: u64,
    /// For pixels: the region `[x, y, width, height]` of the camera frame, in its pixels, that
    /// was squashed into the model input (the training cache's crop); absent: the whole frame.
    /// The runtime applies the same crop to every observation and goal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_crop_px: Option<[u32; 4]>,
    /// Where the training data came from.
    #[serde(default)]
    pub data_source: DataSource,
}

/// Observation description, redundant with `model.obs`, written for readers of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationInfo {
    /// "state" or "pixels".
    pub kind: String,
    /// Per-observation shape: `[dim]` or `[H, W, C]`.
    pub shape: Vec<usize>,
    /// "f32" or "u8".
    pub dtype: String,
}

impl ObservationInfo {
    fn of(obs: ObsKind) -> Self {
        match obs {
            ObsKind::State { dim } => Self {
                kind: "state".into(),
                shape: vec![dim],
                dtype: "f32".into(),
            },
            ObsKind::Pixels { size_px, channels } => Self {
                kind: "pixels".into(),
                shape: vec![size_px, size_px, channels],
                dtype: "u8".into(),
            },
        }
    }
}

/// Action description: dimension and normalisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionInfo {
    /// Action dimension.
    pub dim: usize,
    /// Dataset range mapped to [-1, 1].
    pub norm: ActionNorm,
}

/// Contents of `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Train steps taken when written.
    pub step: u64,
    /// Architecture.
    pub model: ModelConfig,
    /// Observation kind and shape.
    pub observation: ObservationInfo,
    /// Action dimension and normalisation.
    pub action: ActionInfo,
    /// Training settings.
    pub train: TrainConfig,
    /// Training data summary.
    pub data: CheckpointMeta,
}

impl CheckpointConfig {
    /// Reads and validates `dir/config.toml`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| MqeError::Io {
            path: path.clone(),
            source,
        })?;
        // Read the version alone first so an old or new layout gets a version error, not a
        // confusing field error.
        #[derive(Deserialize)]
        struct Version {
            format_version: Option<u32>,
        }
        let corrupt = |reason: String| MqeError::CorruptFile {
            path: path.clone(),
            reason,
        };
        let version: Version = toml::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        match version.format_version {
            Some(FORMAT_VERSION) => {}
            Some(found) => {
                return Err(MqeError::FormatVersion {
                    path,
                    found,
                    expected: FORMAT_VERSION,
                });
            }
            None => return Err(corrupt("missing `format_version`".into())),
        }
        let cfg: Self = toml::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        cfg.model.validate()?;
        cfg.train.validate()?;
        cfg.action.norm.validate()?;
        check_field(
            "observation",
            &ObservationInfo::of(cfg.model.obs),
            &cfg.observation,
        )?;
        check_field("action.dim", &cfg.model.action_dim, &cfg.action.dim)?;
        check_field(
            "action.norm dimensions",
            &cfg.action.dim,
            &cfg.action.norm.dim(),
        )?;
        Ok(cfg)
    }
}

fn check_field<T: PartialEq + std::fmt::Debug>(field: &str, expected: &T, found: &T) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(MqeError::ConfigMismatch {
            field: field.into(),
            expected: format!("{expected:?}"),
            found: format!("{found:?}"),
        })
    }
}

/// Compares the architecture `found` in a checkpoint with what the caller `expected`, naming
/// the first field that differs.
pub fn check_compatible(expected: &ModelConfig, found: &ModelConfig) -> Result<()> {
    check_field("model.obs", &expected.obs, &found.obs)?;
    check_field("model.action_dim", &expected.action_dim, &found.action_dim)?;
    check_field("model.encoder", &expected.encoder, &found.encoder)?;
    check_field("model.latent_dim", &expected.latent_dim, &found.latent_dim)?;
    check_field("model.mlp_hidden", &expected.mlp_hidden, &found.mlp_hidden)?;
    check_field("model.ensemble", &expected.ensemble, &found.ensemble)?;
    check_field(
        "model.mrn_components",
        &expected.mrn_components,
        &found.mrn_components,
    )?;
    check_field(
        "model.actor_hidden",
        &expected.actor_hidden,
        &found.actor_hidden,
    )?;
    check_field(
        "model.encoder_dim",
        &expected.encoder_dim,
        &found.encoder_dim,
    )?;
    check_field("model.algo", &expected.algo, &found.algo)
}

fn load_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let bytes = std::fs::read(path).map_err(|source| MqeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| MqeError::CorruptFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes `tensors` to `path` through a temporary file, so a crash never leaves half a file.
fn save_safetensors(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    let tmp = tmp_path(path);
    candle_core::safetensors::save(tensors, &tmp).map_err(|e| MqeError::CorruptFile {
        path: tmp.clone(),
        reason: format!("cannot write: {e}"),
    })?;
    rename(&tmp, path)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|source| MqeError::Io {
        path: to.to_path_buf(),
        source,
    })
}

impl Agent {
    /// Writes model, config and optimiser state into `dir` (created if needed).
    pub fn save(&self, dir: &Path, meta: &CheckpointMeta) -> Result<()> {
        self.save_inference(dir, meta)?;
        let tensors = self.adam.state_tensors()?;
        save_safetensors(&tensors, &dir.join(OPTIMIZER_FILE))
    }

    /// Writes model and config only (what deployment needs; no resume).
    pub fn save_inference(&self, dir: &Path, meta: &CheckpointMeta) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| MqeError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let tensors: HashMap<String, Tensor> = self
            .parameters()
            .into_iter()
            .map(|(name, var)| (name, var.as_tensor().clone()))
            .collect();
        save_safetensors(&tensors, &dir.join(MODEL_FILE))?;
        let cfg = self.checkpoint_config(meta);
        let text = toml::to_string_pretty(&cfg).map_err(|e| MqeError::CorruptFile {
            path: dir.join(CONFIG_FILE),
            reason: format!("cannot serialise: {e}"),
        })?;
        let path = dir.join(CONFIG_FILE);
        let tmp = tmp_path(&path);
        std::fs::write(&tmp, text).map_err(|source| MqeError::Io {
            path: tmp.clone(),
            source,
        })?;
        rename(&tmp, &path)
    }

    /// The `config.toml` contents this agent would write.
    pub fn checkpoint_config(&self, meta: &CheckpointMeta) -> CheckpointConfig {
        CheckpointConfig {
            format_version: FORMAT_VERSION,
            step: self.step(),
            model: self.model.clone(),
            observation: ObservationInfo::of(self.model.obs),
            action: ActionInfo {
                dim: self.model.action_dim,
                norm: self.action_norm.clone(),
            },
            train: self.train.clone(),
            data: meta.clone(),
        }
    }

    /// Loads a checkpoint directory; restores the optimiser state too if the directory has one.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let cfg = CheckpointConfig::read(dir)?;
        let mut agent = Agent::new(cfg.model.clone(), cfg.train.clone(), device)?;
        agent.set_action_norm(cfg.action.norm.clone())?;
        agent.load_parameters(&dir.join(MODEL_FILE))?;
        let opt_path = dir.join(OPTIMIZER_FILE);
        if opt_path.exists() {
            let tensors = load_safetensors(&opt_path, device)?;
            agent.adam.restore(&tensors, &opt_path)?;
            check_field("step (optimizer vs config.toml)", &cfg.step, &agent.step())?;
        }
        Ok(agent)
    }

    /// [`Agent::load`], refusing a checkpoint whose architecture differs from `expected`.
    pub fn load_expecting(dir: &Path, expected: &ModelConfig, device: &Device) -> Result<Self> {
        let cfg = CheckpointConfig::read(dir)?;
        check_compatible(expected, &cfg.model)?;
        Self::load(dir, device)
    }

    fn load_parameters(&mut self, path: &Path) -> Result<()> {
        let mut tensors = load_safetensors(path, &self.device)?;
        let params = self.parameters();
        let mut values = Vec::with_capacity(params.len());
        for (name, var) in &params {
            let t = tensors
                .remove(name)
                .ok_or_else(|| MqeError::MissingTensor {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    expected: var.dims().to_vec(),
                })?;
            if t.dims() != var.dims() {
                return Err(MqeError::TensorShape {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    expected: var.dims().to_vec(),
                    found: t.dims().to_vec(),
                });
            }
            values.push(t.to_dtype(DType::F32)?);
        }
        if let Some(name) = tensors.keys().min() {
            return Err(MqeError::UnexpectedTensor {
                path: path.to_path_buf(),
                name: name.clone(),
            });
        }
        for ((_, var), value) in params.iter().zip(values) {
            var.set(&value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod data_source_tests {
    use super::DataSource;

    #[test]
    fn the_share_of_simulator_episodes_names_the_source() {
        assert_eq!(DataSource::of_episodes(0, 10), DataSource::Robot);
        assert_eq!(DataSource::of_episodes(10, 10), DataSource::Simulator);
        assert_eq!(DataSource::of_episodes(3, 10), DataSource::Mixed);
        assert!(DataSource::Mixed.includes_simulator());
        assert!(
            !DataSource::Unknown.includes_simulator() && !DataSource::Robot.includes_simulator()
        );
        let meta: super::CheckpointMeta = toml::from_str(
            "dataset = \"d\"\nepisodes = 1\nrows = 2\ndata_source = \"simulator\"\n",
        )
        .unwrap();
        assert_eq!(meta.data_source, DataSource::Simulator);
        let older: super::CheckpointMeta =
            toml::from_str("dataset = \"d\"\nepisodes = 1\nrows = 2\n").unwrap();
        assert_eq!(older.data_source, DataSource::Unknown);
    }
}
