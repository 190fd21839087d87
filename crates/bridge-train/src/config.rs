//! The training configuration file: `[model]` (architecture, without the observation and action
//! shapes, which come from the data) and `[train]` (mqe's [`TrainConfig`]: every hyperparameter of
//! docs/mqe.md). Unknown keys are rejected, missing keys take the documented defaults, and
//! `key=value` overrides from the command line are applied last.

use std::path::{Path, PathBuf};

use mqe::{Algo, EncoderKind, ModelConfig, ObsKind, TrainConfig};
use serde::{Deserialize, Serialize};

/// Why a configuration could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has an unknown or mistyped key.
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// A `--set` override is not of the form `key=value`.
    #[error("override `{text}`: expected key=value (e.g. gamma=0.99 or model.latent_dim=128)")]
    OverrideSyntax { text: String },
    /// A `--set` override names no known setting.
    #[error(
        "override `{key}`: unknown setting; [train] has {train_keys}; [model] has {model_keys}"
    )]
    UnknownKey {
        key: String,
        train_keys: String,
        model_keys: String,
    },
    /// The merged settings do not form a valid configuration (wrong type, out of range).
    #[error("invalid configuration: {reason}")]
    Invalid { reason: String },
}

/// Architecture settings of [`ModelConfig`] that do not depend on the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchConfig {
    /// Method: "mqe" (DEFAULT) or "gcbc".
    pub algo: Algo,
    /// Pixel encoder: "impala-small" (DEFAULT) or "impala".
    pub encoder: EncoderKind,
    /// Latent size of phi and psi (DEFAULT 512).
    pub latent_dim: usize,
    /// Hidden widths of the phi / psi MLPs (DEFAULT [512, 512, 512]).
    pub mlp_hidden: Vec<usize>,
    /// Critic ensemble members (DEFAULT 2).
    pub ensemble: usize,
    /// MRN components (DEFAULT 8).
    pub mrn_components: usize,
    /// Hidden widths of the actor (DEFAULT [512, 512, 512]).
    pub actor_hidden: Vec<usize>,
    /// Output width of each IMPALA encoder (DEFAULT 512).
    pub encoder_dim: usize,
    /// Pixels: one image encoder for phi and psi (DEFAULT false, as published).
    pub shared_critic_encoder: bool,
}

impl Default for ArchConfig {
    fn default() -> Self {
        Self::of(&ModelConfig::state(1, 1))
    }
}

impl ArchConfig {
    /// The data-independent part of `model`.
    pub fn of(model: &ModelConfig) -> Self {
        Self {
            algo: model.algo,
            encoder: model.encoder,
            latent_dim: model.latent_dim,
            mlp_hidden: model.mlp_hidden.clone(),
            ensemble: model.ensemble,
            mrn_components: model.mrn_components,
            actor_hidden: model.actor_hidden.clone(),
            encoder_dim: model.encoder_dim,
            shared_critic_encoder: model.shared_critic_encoder,
        }
    }

    /// The full architecture for observations `obs` and actions of `action_dim`.
    pub fn model_config(&self, obs: ObsKind, action_dim: usize) -> ModelConfig {
        ModelConfig {
            obs,
            action_dim,
            encoder: self.encoder,
            latent_dim: self.latent_dim,
            mlp_hidden: self.mlp_hidden.clone(),
            ensemble: self.ensemble,
            mrn_components: self.mrn_components,
            actor_hidden: self.actor_hidden.clone(),
            encoder_dim: self.encoder_dim,
            algo: self.algo,
            shared_critic_encoder: self.shared_critic_encoder,
        }
    }
}

/// The whole training configuration, as written in a `--config` TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Architecture.
    pub model: ArchConfig,
    /// Optimisation, sampling and schedule.
    pub train: TrainConfig,
}

/// What the defaults depend on: the observation kind, whether the data are "stitch" data, and
/// whether they are BridgeData frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataTraits {
    /// Image observations: one-step probability 0.1 and 500k steps (docs/mqe.md 2.4, 6).
    pub pixels: bool,
    /// OGBench stitch data: half of the actor goals drawn from the whole dataset (docs/mqe.md 2.5).
    pub stitch: bool,
    /// BridgeData frames of this size (a training cache): gamma 0.98 (trajectories of about 36
    /// steps, docs/mqe.md 2.2) and the encoder of that size: "impala" at 128 px and above,
    /// "impala-small" below.
    pub bridge_size_px: Option<usize>,
}

impl DataTraits {
    /// Traits of a dataset file: pixels from its observations, stitch from its name
    /// (OGBench names its stitch datasets `*-stitch-*`).
    pub fn of(path: &Path, pixels: bool) -> Self {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        Self {
            pixels,
            stitch: name.is_some_and(|n| n.contains("stitch")),
            bridge_size_px: None,
        }
    }

    /// Traits of a BridgeData training cache of `size_px` frames.
    pub fn bridge(size_px: usize) -> Self {
        Self {
            pixels: true,
            stitch: false,
            bridge_size_px: Some(size_px),
        }
    }
}

/// Frame size from which the larger IMPALA encoder is the default (docs/mqe.md: impala-small at 64,
/// impala at 128).
pub const IMPALA_FROM_PX: usize = 128;

impl RunConfig {
    /// The documented defaults for data with `traits`.
    pub fn defaults_for(traits: DataTraits) -> Self {
        let mut train = if traits.pixels {
            TrainConfig::pixels()
        } else {
            TrainConfig::default()
        };
        if traits.stitch {
            train.actor_random_goal_share = 0.5;
        }
        let mut model = ArchConfig::default();
        if let Some(size_px) = traits.bridge_size_px {
            train.gamma = TrainConfig::bridge().gamma;
            if size_px >= IMPALA_FROM_PX {
                model.encoder = EncoderKind::Impala;
            }
        }
        Self { model, train }
    }

    /// The documented defaults for `algo` on data with `traits`. GCBC draws every actor goal from
    /// the future of the own trajectory, stitch data included, as OGBench's GCBC does: random
    /// actor goals serve a value-based actor, while for behaviour cloning the data's action
    /// toward a random goal is noise.
    pub fn defaults_for_algo(traits: DataTraits, algo: Algo) -> Self {
        let mut config = Self::defaults_for(traits);
        config.model.algo = algo;
        if algo == Algo::Gcbc {
            config.train.actor_random_goal_share = 0.0;
        }
        config
    }

    /// The configuration as pretty TOML (what `bridge-train config` prints).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid {
            reason: e.to_string(),
        })
    }
}

/// One `--set key=value` override. `key` is `field` or `section.field`; `value` is TOML
/// (`0.99`, `[128, 128]`, `"gcbc"`), or a bare word taken as a string (`gcbc`).
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// As typed.
    pub key: String,
    /// Parsed value.
    pub value: toml::Value,
}

impl std::str::FromStr for Override {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let (key, raw) = text
            .split_once('=')
            .ok_or_else(|| ConfigError::OverrideSyntax {
                text: text.to_string(),
            })?;
        let (key, raw) = (key.trim(), raw.trim());
        if key.is_empty() || raw.is_empty() {
            return Err(ConfigError::OverrideSyntax {
                text: text.to_string(),
            });
        }
        Ok(Self {
            key: key.to_string(),
            value: parse_value(raw),
        })
    }
}

fn parse_value(raw: &str) -> toml::Value {
    #[derive(Deserialize)]
    struct Wrapper {
        v: toml::Value,
    }
    match toml::from_str::<Wrapper>(&format!("v = {raw}")) {
        Ok(w) => w.v,
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Applies, in order: the config file (if any) over `base`, then `overrides`; validates the
/// result (ranges of [`TrainConfig::validate`]; the architecture is validated with the data).
pub fn resolve(
    base: RunConfig,
    file: Option<&Path>,
    overrides: &[Override],
) -> Result<RunConfig, ConfigError> {
    let mut merged = to_table(&base)?;
    if let Some(path) = file {
        merge(&mut merged, read_file_table(path)?);
    }
    for o in overrides {
        let (section, field) = locate(&merged, &o.key)?;
        // `locate` only returns sections that exist as tables.
        if let Some(table) = merged.get_mut(section).and_then(toml::Value::as_table_mut) {
            table.insert(field.to_string(), o.value.clone());
        }
    }
    let config: RunConfig =
        merged
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid {
                reason: e.message().to_string(),
            })?;
    config.train.validate().map_err(|e| ConfigError::Invalid {
        reason: e.to_string(),
    })?;
    Ok(config)
}

/// [`resolve`] for a new run: the defaults follow the data and the algorithm that the file or
/// the overrides choose ([`RunConfig::defaults_for_algo`]); explicit keys still win.
pub fn resolve_fresh(
    traits: DataTraits,
    file: Option<&Path>,
    overrides: &[Override],
) -> Result<RunConfig, ConfigError> {
    let algo = resolve(RunConfig::defaults_for(traits), file, overrides)?
        .model
        .algo;
    resolve(RunConfig::defaults_for_algo(traits, algo), file, overrides)
}

fn to_table(config: &RunConfig) -> Result<toml::Table, ConfigError> {
    toml::Table::try_from(config).map_err(|e| ConfigError::Invalid {
        reason: e.to_string(),
    })
}

/// Reads `path` and checks its keys against [`RunConfig`] on their own, so an unknown or
/// mistyped key is reported with the file's name and line.
fn read_file_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file_error = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    toml::from_str::<RunConfig>(&text).map_err(|e| file_error(e.to_string()))?;
    toml::from_str::<toml::Table>(&text).map_err(|e| file_error(e.to_string()))
}

/// Overwrites `base` with `top`, one level into the sections.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(section)), toml::Value::Table(fields)) => {
                section.extend(fields)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

const SECTIONS: [&str; 2] = ["train", "model"];

/// Finds the section of an override key: `section.field` as written, a bare field in [train]
/// first, then [model].
fn locate<'k>(merged: &toml::Table, key: &'k str) -> Result<(&'static str, &'k str), ConfigError> {
    let has = |section: &str, field: &str| {
        merged
            .get(section)
            .and_then(toml::Value::as_table)
            .is_some_and(|t| t.contains_key(field))
    };
    let found = match key.split_once('.') {
        Some((section, field)) => SECTIONS
            .into_iter()
            .find(|&s| s == section && has(s, field))
            .map(|s| (s, field)),
        None => SECTIONS
            .into_iter()
            .find(|&s| has(s, key))
            .map(|s| (s, key)),
    };
    found.ok_or_else(|| {
        let keys = |section: &str| {
            merged
                .get(section)
                .and_then(toml::Value::as_table)
                .map(|t| t.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        };
        ConfigError::UnknownKey {
            key: key.to_string(),
            train_keys: keys("train"),
            model_keys: keys("model"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> Override {
        text.parse().unwrap()
    }

    #[test]
    fn defaults_follow_the_data() {
        let state = RunConfig::defaults_for(DataTraits::default());
        assert_eq!(state.train, TrainConfig::default());
        let pixels = RunConfig::defaults_for(DataTraits {
            pixels: true,
            stitch: true,
            bridge_size_px: None,
        });
        assert_eq!(pixels.train.one_step_prob, 0.1);
        assert_eq!(pixels.train.actor_random_goal_share, 0.5);
        assert_eq!(pixels.model.encoder, EncoderKind::ImpalaSmall);
        let path = Path::new("/d/pointmaze-medium-stitch-v0.npz");
        assert!(DataTraits::of(path, false).stitch);
    }

    #[test]
    fn gcbc_on_stitch_data_takes_actor_goals_from_the_own_trajectory() {
        let stitch = DataTraits {
            pixels: false,
            stitch: true,
            bridge_size_px: None,
        };
        let mqe = resolve_fresh(stitch, None, &[]).unwrap();
        assert_eq!(mqe.train.actor_random_goal_share, 0.5);
        let gcbc = resolve_fresh(stitch, None, &[set("algo=gcbc")]).unwrap();
        assert_eq!(gcbc.model.algo, Algo::Gcbc);
        assert_eq!(gcbc.train.actor_random_goal_share, 0.0);
        let explicit = [set("algo=gcbc"), set("actor_random_goal_share=0.3")];
        let gcbc = resolve_fresh(stitch, None, &explicit).unwrap();
        assert_eq!(
            gcbc.train.actor_random_goal_share, 0.3,
            "an explicit key wins"
        );
    }

    #[test]
    fn bridge_caches_get_bridge_gamma_and_the_encoder_of_their_size() {
        let small = RunConfig::defaults_for(DataTraits::bridge(64));
        assert_eq!(small.train, TrainConfig::bridge());
        assert_eq!(small.model.encoder, EncoderKind::ImpalaSmall);
        let large = RunConfig::defaults_for(DataTraits::bridge(128));
        assert_eq!(large.train.gamma, 0.98);
        assert_eq!(large.model.encoder, EncoderKind::Impala);
    }

    #[test]
    fn overrides_reach_both_sections() {
        let overrides = [
            set("gamma=0.99"),
            set("model.latent_dim=64"),
            set("mlp_hidden=[32, 32]"),
            set("algo=gcbc"),
            set("train.steps=10"),
        ];
        let config = resolve(RunConfig::default(), None, &overrides).unwrap();
        assert_eq!(config.train.gamma, 0.99);
        assert_eq!(config.train.steps, 10);
        assert_eq!(config.model.latent_dim, 64);
        assert_eq!(config.model.mlp_hidden, vec![32, 32]);
        assert_eq!(config.model.algo, Algo::Gcbc);
    }

    #[test]
    fn unknown_override_names_the_key() {
        let err = resolve(RunConfig::default(), None, &[set("gama=0.9")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`gama`") && text.contains("gamma"), "{text}");
    }

    #[test]
    fn out_of_range_and_mistyped_values_are_refused() {
        let err = resolve(RunConfig::default(), None, &[set("gamma=1.5")]).unwrap_err();
        assert!(err.to_string().contains("gamma"), "{err}");
        let err = resolve(RunConfig::default(), None, &[set("latent_dim=big")]).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{err}");
        assert!("gamma".parse::<Override>().is_err());
    }

    #[test]
    fn file_keys_are_checked_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(&path, "[train]\ngamma = 0.9\n[model]\nlatent_dim = 64\n").unwrap();
        let config = resolve(RunConfig::default(), Some(&path), &[set("gamma=0.8")]).unwrap();
        assert_eq!((config.train.gamma, config.model.latent_dim), (0.8, 64));
        assert_eq!(config.train.lr, 3e-4, "untouched keys keep their defaults");

        std::fs::write(&path, "[train]\nbogus_key = 1\n").unwrap();
        let text = resolve(RunConfig::default(), Some(&path), &[])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("run.toml") && text.contains("bogus_key"),
            "{text}"
        );
    }

    #[test]
    fn printed_config_reads_back_identically() {
        let config = RunConfig::defaults_for(DataTraits {
            pixels: false,
            stitch: true,
            bridge_size_px: None,
        });
        let back: RunConfig = toml::from_str(&config.to_toml().unwrap()).unwrap();
        assert_eq!(back, config);
    }
}
