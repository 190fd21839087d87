//! Model and training settings (docs/mqe.md). Every DEFAULT of the spec is a field here.
//!
//! Both structs reject unknown TOML keys; missing keys take the documented default.

use serde::{Deserialize, Serialize};

use crate::error::{MqeError, Result};

/// What the agent observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ObsKind {
    /// A flat f32 state vector of `dim` entries; the encoder is the identity.
    State { dim: usize },
    /// Square u8 images `size_px` x `size_px` x `channels` (HWC); IMPALA encoders.
    Pixels { size_px: usize, channels: usize },
}

/// Which IMPALA CNN the pixel encoders use (ignored for state observations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum EncoderKind {
    /// One residual block per stack (DEFAULT).
    #[default]
    #[serde(rename = "impala-small")]
    ImpalaSmall,
    /// Two residual blocks per stack.
    #[serde(rename = "impala")]
    Impala,
}

impl EncoderKind {
    /// Residual blocks per stack.
    pub fn blocks_per_stack(self) -> usize {
        match self {
            EncoderKind::ImpalaSmall => 1,
            EncoderKind::Impala => 2,
        }
    }
}

/// Which method is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Algo {
    /// Multistep quasimetric estimation: critic + DDPG+BC actor (DEFAULT).
    #[default]
    Mqe,
    /// Goal-conditioned behaviour cloning baseline: actor with the BC loss alone.
    Gcbc,
}

/// Network architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Observation kind and shape.
    pub obs: ObsKind,
    /// Action dimension (actions live in [-1, 1] after normalisation).
    pub action_dim: usize,
    /// Pixel encoder (DEFAULT "impala-small").
    #[serde(default)]
    pub encoder: EncoderKind,
    /// Latent size of phi and psi (DEFAULT 512).
    #[serde(default = "default_latent_dim")]
    pub latent_dim: usize,
    /// Hidden widths of the phi / psi MLPs (DEFAULT [512, 512, 512]).
    #[serde(default = "default_hidden")]
    pub mlp_hidden: Vec<usize>,
    /// Independent critic ensemble members (DEFAULT 2).
    #[serde(default = "default_ensemble")]
    pub ensemble: usize,
    /// MRN components; `latent_dim` must be a multiple of twice this (DEFAULT 8).
    #[serde(default = "default_mrn_components")]
    pub mrn_components: usize,
    /// Hidden widths of the actor (DEFAULT [512, 512, 512]).
    #[serde(default = "default_hidden")]
    pub actor_hidden: Vec<usize>,
    /// Output width of each IMPALA encoder (DEFAULT 512).
    #[serde(default = "default_latent_dim")]
    pub encoder_dim: usize,
    /// Method (DEFAULT mqe).
    #[serde(default)]
    pub algo: Algo,
    /// Pixels: phi and psi share one image encoder instead of one each (DEFAULT false, the
    /// published method). A shared encoder keeps phi's view of the image alive: on the virtual
    /// tabletop, phi's own encoder died (every unit after its last ReLU zero on every image),
    /// leaving phi(s, a) blind to s. See docs/mqe.md, section 3.
    #[serde(default)]
    pub shared_critic_encoder: bool,
}

fn default_latent_dim() -> usize {
    512
}
fn default_hidden() -> Vec<usize> {
    vec![512, 512, 512]
}
fn default_ensemble() -> usize {
    2
}
fn default_mrn_components() -> usize {
    8
}

impl ModelConfig {
    /// Defaults of docs/mqe.md for state observations of `obs_dim` entries.
    pub fn state(obs_dim: usize, action_dim: usize) -> Self {
        Self::with_obs(ObsKind::State { dim: obs_dim }, action_dim)
    }

    /// Defaults of docs/mqe.md for square images.
    pub fn pixels(size_px: usize, channels: usize, action_dim: usize) -> Self {
        Self::with_obs(ObsKind::Pixels { size_px, channels }, action_dim)
    }

    fn with_obs(obs: ObsKind, action_dim: usize) -> Self {
        Self {
            obs,
            action_dim,
            encoder: EncoderKind::default(),
            latent_dim: default_latent_dim(),
            mlp_hidden: default_hidden(),
            ensemble: default_ensemble(),
            mrn_components: default_mrn_components(),
            actor_hidden: default_hidden(),
            encoder_dim: default_latent_dim(),
            algo: Algo::default(),
            shared_critic_encoder: false,
        }
    }

    /// Checks the ranges and divisibility the networks rely on.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| {
            Err(MqeError::InvalidConfig {
                field: field.to_string(),
                reason,
            })
        };
        match self.obs {
            ObsKind::State { dim: 0 } => return bad("obs.dim", "must be > 0".into()),
            ObsKind::Pixels { size_px, channels } => {
                if size_px < 8 || channels == 0 {
                    return bad(
                        "obs",
                        format!(
                            "pixels need size_px >= 8 and channels > 0, got {size_px}x{channels}"
                        ),
                    );
                }
            }
            ObsKind::State { .. } => {}
        }
        if self.action_dim == 0 {
            return bad("action_dim", "must be > 0".into());
        }
        if self.ensemble == 0 {
            return bad("ensemble", "must be > 0".into());
        }
        if self.mrn_components == 0 || !self.latent_dim.is_multiple_of(2 * self.mrn_components) {
            return bad(
                "latent_dim",
                format!(
                    "{} is not a positive multiple of 2 * mrn_components ({})",
                    self.latent_dim, self.mrn_components
                ),
            );
        }
        if self.mlp_hidden.contains(&0) || self.actor_hidden.contains(&0) || self.encoder_dim == 0 {
            return bad(
                "mlp_hidden/actor_hidden/encoder_dim",
                "widths must be > 0".into(),
            );
        }
        Ok(())
    }

    /// Spatial size after the three IMPALA stacks (each halves with ceil): 64 -> 8, 128 -> 16.
    pub fn encoder_out_size_px(&self) -> Option<usize> {
        match self.obs {
            ObsKind::Pixels { size_px, .. } => Some((0..3).fold(size_px, |s, _| s.div_ceil(2))),
            ObsKind::State { .. } => None,
        }
    }
}

/// Optimisation, sampling and schedule settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Batch size B (DEFAULT 256).
    pub batch_size: usize,
    /// Adam learning rate (DEFAULT 3e-4).
    pub lr: f64,
    /// Adam beta1 (DEFAULT 0.9).
    pub adam_beta1: f64,
    /// Adam beta2 (DEFAULT 0.999).
    pub adam_beta2: f64,
    /// Adam epsilon (DEFAULT 1e-8).
    pub adam_eps: f64,
    /// Discount gamma: value goals K ~ Geometric(1 - gamma) (DEFAULT 0.995 mazes, 0.98 Bridge).
    pub gamma: f64,
    /// Waypoint k ~ Geometric(1 - lambda) (DEFAULT 0.95).
    pub waypoint_lambda: f64,
    /// Probability of replacing the waypoint by the next observation (DEFAULT 0.2 states, 0.1 pixels).
    pub one_step_prob: f64,
    /// BC weight alpha of DDPG+BC (DEFAULT 0.1).
    pub bc_alpha: f64,
    /// Share of actor goals drawn uniformly from the whole dataset (DEFAULT 0; 0.5 for stitch data).
    pub actor_random_goal_share: f64,
    /// Random-crop padding in pixels, by edge replication (DEFAULT 3).
    pub crop_pad_px: usize,
    /// Probability per batch of applying the random crop (DEFAULT 0.5; pixels only).
    pub crop_prob: f64,
    /// Training steps (DEFAULT 1M states, 500k pixels).
    pub steps: u64,
    /// Seed of parameter initialisation and sampling (DEFAULT 0).
    pub seed: u64,
    /// Steps between metric log lines (DEFAULT 1000).
    pub log_interval_steps: u64,
    /// Steps between validation / evaluation passes (DEFAULT 10000).
    pub eval_interval_steps: u64,
    /// Steps between checkpoints (DEFAULT 50000).
    pub checkpoint_interval_steps: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            lr: 3e-4,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            gamma: 0.995,
            waypoint_lambda: 0.95,
            one_step_prob: 0.2,
            bc_alpha: 0.1,
            actor_random_goal_share: 0.0,
            crop_pad_px: 3,
            crop_prob: 0.5,
            steps: 1_000_000,
            seed: 0,
            log_interval_steps: 1000,
            eval_interval_steps: 10_000,
            checkpoint_interval_steps: 50_000,
        }
    }
}

impl TrainConfig {
    /// The fields that only schedule a run: how long it trains and how often it logs,
    /// validates and saves. A resumed run may change them and still compute the same updates.
    pub const SCHEDULE_FIELDS: [&'static str; 4] = [
        "steps",
        "log_interval_steps",
        "eval_interval_steps",
        "checkpoint_interval_steps",
    ];

    /// This configuration with the schedule ([`Self::SCHEDULE_FIELDS`]) of `other`.
    pub fn with_schedule_of(&self, other: &TrainConfig) -> TrainConfig {
        TrainConfig {
            steps: other.steps,
            log_interval_steps: other.log_interval_steps,
            eval_interval_steps: other.eval_interval_steps,
            checkpoint_interval_steps: other.checkpoint_interval_steps,
            ..self.clone()
        }
    }

    /// Defaults for pixel observations (one-step probability 0.1, 500k steps).
    pub fn pixels() -> Self {
        Self {
            one_step_prob: 0.1,
            steps: 500_000,
            ..Self::default()
        }
    }

    /// Defaults for Bridge pixel data (trajectories of about 36 steps: gamma 0.98).
    pub fn bridge() -> Self {
        Self {
            gamma: 0.98,
            ..Self::pixels()
        }
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: String| {
            Err(MqeError::InvalidConfig {
                field: field.to_string(),
                reason,
            })
        };
        let open_unit = |v: f64| v > 0.0 && v < 1.0;
        let closed_unit = |v: f64| (0.0..=1.0).contains(&v);
        if self.batch_size == 0 {
            return bad("batch_size", "must be > 0".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", format!("must be a positive number, got {}", self.lr));
        }
        for (name, v) in [
            ("adam_beta1", self.adam_beta1),
            ("adam_beta2", self.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&v) {
                return bad(name, format!("must be in [0, 1), got {v}"));
            }
        }
        if self.adam_eps.is_nan() || self.adam_eps <= 0.0 {
            return bad("adam_eps", format!("must be > 0, got {}", self.adam_eps));
        }
        for (name, v) in [
            ("gamma", self.gamma),
            ("waypoint_lambda", self.waypoint_lambda),
        ] {
            if !open_unit(v) {
                return bad(name, format!("must be in (0, 1), got {v}"));
            }
        }
        for (name, v) in [
            ("one_step_prob", self.one_step_prob),
            ("actor_random_goal_share", self.actor_random_goal_share),
            ("crop_prob", self.crop_prob),
        ] {
            if !closed_unit(v) {
                return bad(name, format!("must be in [0, 1], got {v}"));
            }
        }
        if !(self.bc_alpha >= 0.0 && self.bc_alpha.is_finite()) {
            return bad("bc_alpha", format!("must be >= 0, got {}", self.bc_alpha));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(config: &TrainConfig) -> toml::Table {
        toml::Table::try_from(config).expect("a TrainConfig serialises as a table")
    }

    #[test]
    fn the_schedule_is_exactly_the_named_fields() {
        let trained = TrainConfig::bridge();
        let requested = TrainConfig {
            steps: trained.steps + 1,
            log_interval_steps: trained.log_interval_steps + 1,
            eval_interval_steps: trained.eval_interval_steps + 1,
            checkpoint_interval_steps: trained.checkpoint_interval_steps + 1,
            lr: trained.lr * 2.0,
            ..trained.clone()
        };
        let merged = trained.with_schedule_of(&requested);
        let (before, after, wanted) = (fields(&trained), fields(&merged), fields(&requested));
        let mut changed: Vec<&str> = before
            .keys()
            .filter(|key| before[*key] != after[*key])
            .map(String::as_str)
            .collect();
        let mut schedule = TrainConfig::SCHEDULE_FIELDS.to_vec();
        changed.sort_unstable();
        schedule.sort_unstable();
        assert_eq!(changed, schedule);
        for key in TrainConfig::SCHEDULE_FIELDS {
            assert_eq!(after[key], wanted[key], "{key}");
        }
        assert_eq!(merged.lr, trained.lr, "a training setting is not schedule");
    }
}
