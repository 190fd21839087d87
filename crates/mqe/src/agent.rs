//! The MQE / GCBC agent: networks, one optimiser, train and inference entry points.

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::VarMap;

use crate::action::ActionNorm;
use crate::adam::{Adam, AdamParams};
use crate::config::{Algo, ModelConfig, ObsKind, TrainConfig};
use crate::error::{MqeError, Result};
use crate::layers::{Actor, Encoder, EnsembleMlp};
use crate::losses::{self, ActorLoss, CriticLoss};
use crate::ops::mrn_matched;
use crate::params::{ParamBuilder, init_rng};

/// One training batch (section 2). State observations are f32 `[B, dim]`; pixel observations
/// u8 `[B, H, W, C]`. Actions are already normalised to [-1, 1].
#[derive(Debug, Clone)]
pub struct Batch {
    /// s.
    pub obs: Tensor,
    /// s' (kept for samplers and diagnostics; the waypoint override already uses it).
    pub next_obs: Tensor,
    /// Value goal g.
    pub goal: Tensor,
    /// Waypoint w.
    pub waypoint: Tensor,
    /// k, the waypoint's offset in steps, as f32 `[B]`.
    pub waypoint_offset: Tensor,
    /// Actor goal.
    pub actor_goal: Tensor,
    /// a, f32 `[B, action_dim]` in [-1, 1].
    pub action: Tensor,
}

/// Health metrics of one batch (section 6). Terms a method does not have (the critic of GCBC)
/// are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    /// critic_loss + actor_loss (or the GCBC loss).
    pub total_loss: f32,
    /// Multistep backup term of the critic loss.
    pub loss_backup: f32,
    /// Action-invariance term of the critic loss.
    pub loss_inv: f32,
    /// Normalised q term of the actor loss.
    pub q_loss: f32,
    /// BC term of the actor loss (alpha included; the whole loss for GCBC).
    pub bc_loss: f32,
    /// Mean d(phi(s_i, a_i), psi(g_i)) over members and matching pairs.
    pub dist_matching: f32,
    /// Mean |q| of the actor's actions.
    pub q_abs_mean: f32,
    /// Mean squared error of mu to the data actions (per element).
    pub actor_mse: f32,
    /// Fraction of i with argmin_j dist[e, i, j] = i.
    pub pair_accuracy: f32,
}

/// Critic networks: encoders and ensembles of phi and psi.
pub(crate) struct Critic {
    pub phi_encoder: Encoder,
    /// None: psi uses phi's encoder (`shared_critic_encoder`).
    pub own_psi_encoder: Option<Encoder>,
    pub phi: EnsembleMlp,
    pub psi: EnsembleMlp,
}

impl Critic {
    /// psi's image encoder: its own, or the one it shares with phi.
    pub fn psi_encoder(&self) -> &Encoder {
        self.own_psi_encoder.as_ref().unwrap_or(&self.phi_encoder)
    }
}

/// Model, optimiser and action normalisation.
pub struct Agent {
    pub(crate) model: ModelConfig,
    pub(crate) train: TrainConfig,
    pub(crate) device: Device,
    pub(crate) varmap: VarMap,
    pub(crate) critic: Option<Critic>,
    pub(crate) actor: Actor,
    pub(crate) adam: Adam,
    pub(crate) action_norm: ActionNorm,
}

struct Losses {
    total: Tensor,
    critic: Option<CriticLoss>,
    actor: Option<ActorLoss>,
    mu: Tensor,
}

fn scalar(t: &Tensor) -> Result<f32> {
    Ok(t.to_dtype(DType::F32)?.to_scalar::<f32>()?)
}

impl Agent {
    /// A freshly initialised agent (seeded by `train.seed`) with identity action normalisation.
    pub fn new(model: ModelConfig, train: TrainConfig, device: &Device) -> Result<Self> {
        model.validate()?;
        train.validate()?;
        let varmap = VarMap::new();
        let mut rng = init_rng(train.seed);
        let mut pb = ParamBuilder::new(&varmap, device, &mut rng);
        let critic = match model.algo {
            Algo::Gcbc => None,
            Algo::Mqe => Some(build_critic(&mut pb, &model)?),
        };
        let actor = Actor::new(&mut pb.pp("actor"), &model)?;
        let adam = Adam::new(
            named_vars(&varmap),
            AdamParams {
                lr: train.lr,
                beta1: train.adam_beta1,
                beta2: train.adam_beta2,
                eps: train.adam_eps,
            },
        )?;
        let action_norm = ActionNorm::identity(model.action_dim);
        Ok(Self {
            model,
            train,
            device: device.clone(),
            varmap,
            critic,
            actor,
            adam,
            action_norm,
        })
    }

    /// Architecture.
    pub fn model_config(&self) -> &ModelConfig {
        &self.model
    }

    /// Training settings.
    pub fn train_config(&self) -> &TrainConfig {
        &self.train
    }

    /// Takes the schedule of `train` (steps, log/eval/checkpoint intervals), as when a resumed
    /// run is extended; the settings that shape the updates stay as they were.
    pub fn set_schedule(&mut self, train: &TrainConfig) {
        self.train = self.train.with_schedule_of(train);
    }

    /// Device the parameters live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Every parameter, by name, sorted.
    pub fn parameters(&self) -> Vec<(String, Var)> {
        named_vars(&self.varmap)
    }

    /// The optimiser (step count, state for resume).
    pub fn optimizer(&self) -> &Adam {
        &self.adam
    }

    /// Mutable optimiser, e.g. to restore state.
    pub fn optimizer_mut(&mut self) -> &mut Adam {
        &mut self.adam
    }

    /// Train steps taken so far.
    pub fn step(&self) -> u64 {
        self.adam.step_count()
    }

    /// The dataset-to-[-1, 1] action map stored with the model.
    pub fn action_norm(&self) -> &ActionNorm {
        &self.action_norm
    }

    /// Sets the action map (its dimension must be `action_dim`).
    pub fn set_action_norm(&mut self, norm: ActionNorm) -> Result<()> {
        norm.validate()?;
        if norm.dim() != self.model.action_dim {
            return Err(MqeError::InvalidConfig {
                field: "action.norm".into(),
                reason: format!(
                    "has {} dimensions, the model has action_dim {}",
                    norm.dim(),
                    self.model.action_dim
                ),
            });
        }
        self.action_norm = norm;
        Ok(())
    }

    /// One optimiser step on `batch` (total = critic + actor, one backward, one update).
    pub fn train_step(&mut self, batch: &Batch) -> Result<Metrics> {
        let losses = self.losses(batch)?;
        let grads = losses.total.backward()?;
        let metrics = self.metrics(&losses, batch)?;
        self.adam.step(&grads)?;
        Ok(metrics)
    }

    /// Metrics of `batch` without updating (validation).
    pub fn evaluate(&self, batch: &Batch) -> Result<Metrics> {
        let losses = self.losses(batch)?;
        self.metrics(&losses, batch)
    }

    /// Differentiable (critic loss, actor loss) of `batch`; for GCBC the critic loss is `None`
    /// and the actor loss is the BC loss. For tests and custom training loops.
    pub fn loss_tensors(&self, batch: &Batch) -> Result<(Option<Tensor>, Tensor)> {
        let losses = self.losses(batch)?;
        let actor = match &losses.actor {
            Some(a) => a.loss.clone(),
            None => losses.total.clone(),
        };
        Ok((losses.critic.map(|c| c.loss), actor))
    }

    /// The total loss of `batch` (critic + actor, or the GCBC loss) and the gradient of every
    /// parameter that gets one, by name in [`Agent::parameters`] order; nothing is updated.
    /// For checks that compare two implementations or two devices step by step.
    pub fn loss_and_gradients(&self, batch: &Batch) -> Result<(Tensor, Vec<(String, Tensor)>)> {
        let losses = self.losses(batch)?;
        let grads = losses.total.backward()?;
        let named = self
            .parameters()
            .into_iter()
            .filter_map(|(name, var)| grads.get(var.as_tensor()).map(|g| (name, g.clone())))
            .collect();
        Ok((losses.total, named))
    }

    /// Deployment action clip(mu, -1, 1) in the normalised action space, `[B, A]`.
    pub fn act(&self, obs: &Tensor, goal: &Tensor) -> Result<Tensor> {
        self.check_obs("obs", obs, None)?;
        self.check_obs("goal", goal, Some(obs.dim(0)?))?;
        Ok(self.actor.forward(obs, goal)?.clamp(-1.0, 1.0)?.detach())
    }

    /// d(psi(s), psi(g)) averaged over the ensemble, `[B]`.
    pub fn distance(&self, obs: &Tensor, goal: &Tensor) -> Result<Tensor> {
        self.check_obs("obs", obs, None)?;
        self.check_obs("goal", goal, Some(obs.dim(0)?))?;
        let b = obs.dim(0)?;
        let z = self.psi_latents(&Tensor::cat(&[obs, goal], 0)?)?;
        self.ensemble_distance(&z.narrow(1, 0, b)?, &z.narrow(1, b, b)?)
    }

    /// psi(g) for every ensemble member, `[E, B, latent]`: what [`Agent::distance_to_latent`]
    /// takes, so that a goal that stays fixed over many steps (deployment) is encoded once.
    pub fn goal_latent(&self, goal: &Tensor) -> Result<Tensor> {
        self.check_obs("goal", goal, None)?;
        Ok(self.psi_latents(goal)?.detach())
    }

    /// d(psi(s), z_g) averaged over the ensemble, `[B]`, for `goal_latent` from
    /// [`Agent::goal_latent`] (one goal per observation, or one goal for all of them).
    pub fn distance_to_latent(&self, obs: &Tensor, goal_latent: &Tensor) -> Result<Tensor> {
        self.check_obs("obs", obs, None)?;
        let z_obs = self.psi_latents(obs)?;
        let expected = [z_obs.dim(0)?, obs.dim(0)?, z_obs.dim(2)?];
        let dims = goal_latent.dims();
        let fits = dims.len() == 3
            && dims[0] == expected[0]
            && dims[2] == expected[2]
            && (dims[1] == expected[1] || dims[1] == 1);
        if !fits {
            return Err(MqeError::BadBatch {
                field: "goal_latent",
                expected: format!("[{}, {} or 1, {}]", expected[0], expected[1], expected[2]),
                got: format!("{dims:?}"),
            });
        }
        let z_goal = goal_latent.broadcast_as(z_obs.shape())?.contiguous()?;
        self.ensemble_distance(&z_obs, &z_goal)
    }

    /// For pixel MQE models, the share of live units at the end of phi's and psi's image
    /// encoders on `obs` (see [`Encoder::live_fraction`]); psi's equals phi's when they share
    /// one encoder. None for states and GCBC. A health check: an encoder at 0 has died.
    pub fn critic_encoder_liveness(&self, obs: &Tensor) -> Result<Option<(f32, f32)>> {
        self.check_obs("obs", obs, None)?;
        let Some(critic) = &self.critic else {
            return Ok(None);
        };
        let Some(phi) = critic.phi_encoder.live_fraction(obs)? else {
            return Ok(None);
        };
        let psi = match &critic.own_psi_encoder {
            Some(encoder) => encoder.live_fraction(obs)?.unwrap_or(phi),
            None => phi,
        };
        Ok(Some((phi, psi)))
    }

    /// psi(enc_psi(x)) for every ensemble member, `[E, B, latent]`; errors for GCBC.
    fn psi_latents(&self, x: &Tensor) -> Result<Tensor> {
        let critic = self
            .critic
            .as_ref()
            .ok_or_else(|| MqeError::InvalidConfig {
                field: "algo".into(),
                reason: "distance needs a critic; this model is gcbc".into(),
            })?;
        critic
            .psi
            .forward(&critic.psi_encoder().forward(x, true)?, true)
    }

    fn ensemble_distance(&self, z_from: &Tensor, z_to: &Tensor) -> Result<Tensor> {
        let d = mrn_matched(z_from, z_to, self.model.mrn_components)?;
        Ok(d.mean(0)?.detach())
    }

    fn losses(&self, batch: &Batch) -> Result<Losses> {
        self.check_batch(batch)?;
        let Some(critic) = &self.critic else {
            let mu = self.actor.forward(&batch.obs, &batch.actor_goal)?;
            let total = losses::gcbc_loss(&mu, &batch.action.to_dtype(DType::F32)?)?;
            return Ok(Losses {
                total,
                critic: None,
                actor: None,
                mu,
            });
        };
        let b = batch.obs.dim(0)?;
        let comps = self.model.mrn_components;
        // Encoder features of s (for phi) and of s and g (for psi), with gradient. phi's are
        // reused (detached) by the actor term; a shared encoder encodes s once for both.
        let s_and_g = Tensor::cat(&[&batch.obs, &batch.goal], 0)?;
        let (phi_features, psi_sg_features) = match &critic.own_psi_encoder {
            Some(psi_encoder) => (
                critic.phi_encoder.forward(&batch.obs, false)?,
                psi_encoder.forward(&s_and_g, false)?,
            ),
            None => {
                let features = critic.phi_encoder.forward(&s_and_g, false)?;
                (features.narrow(0, 0, b)?, features)
            }
        };
        let action = batch.action.to_dtype(DType::F32)?;
        // phi(s, a) with gradient.
        let phi_sa = critic
            .phi
            .forward(&Tensor::cat(&[&phi_features, &action], D::Minus1)?, false)?;
        // psi of s and g with gradient, one pass.
        let psi_sg = critic.psi.forward(&psi_sg_features, false)?;
        let (psi_s, psi_g) = (psi_sg.narrow(1, 0, b)?, psi_sg.narrow(1, b, b)?);
        // psi of the waypoint (distW has no gradient) and of the actor goal (frozen critic).
        let psi_wa = critic.psi.forward(
            &critic.psi_encoder().forward(
                &Tensor::cat(&[&batch.waypoint, &batch.actor_goal], 0)?,
                true,
            )?,
            true,
        )?;
        let (psi_w, psi_actor_goal) = (psi_wa.narrow(1, 0, b)?, psi_wa.narrow(1, b, b)?);
        let critic_loss = losses::critic_loss(
            &phi_sa,
            &psi_s,
            &psi_w,
            &psi_g,
            &batch.waypoint_offset,
            self.train.gamma,
            comps,
        )?;
        let mu = self.actor.forward(&batch.obs, &batch.actor_goal)?;
        let a_q = losses::clip_action(&mu)?;
        let phi_pi = critic.phi.forward(
            &Tensor::cat(&[&phi_features.detach(), &a_q], D::Minus1)?,
            true,
        )?;
        let q_e = mrn_matched(&phi_pi, &psi_actor_goal, comps)?.neg()?;
        let actor_loss = losses::actor_loss(&q_e, &mu, &action, self.train.bc_alpha)?;
        let total = (&critic_loss.loss + &actor_loss.loss)?;
        Ok(Losses {
            total,
            critic: Some(critic_loss),
            actor: Some(actor_loss),
            mu,
        })
    }

    fn metrics(&self, losses: &Losses, batch: &Batch) -> Result<Metrics> {
        let action = batch.action.to_dtype(DType::F32)?;
        let mut m = Metrics {
            total_loss: scalar(&losses.total)?,
            actor_mse: scalar(&(&losses.mu - &action)?.sqr()?.mean_all()?)?,
            ..Metrics::default()
        };
        match (&losses.critic, &losses.actor) {
            (Some(c), Some(a)) => {
                m.loss_backup = scalar(&c.loss_backup)?;
                m.loss_inv = scalar(&c.loss_inv)?;
                m.dist_matching = losses::mean_matching_dist(&c.dist)?;
                m.pair_accuracy = losses::pair_accuracy(&c.dist)?;
                m.q_loss = scalar(&a.q_loss)?;
                m.bc_loss = scalar(&a.bc_loss)?;
                m.q_abs_mean = scalar(&a.q_abs_mean)?;
            }
            _ => m.bc_loss = m.total_loss,
        }
        Ok(m)
    }

    fn obs_shape(&self) -> (Vec<usize>, DType) {
        match self.model.obs {
            ObsKind::State { dim } => (vec![dim], DType::F32),
            ObsKind::Pixels { size_px, channels } => (vec![size_px, size_px, channels], DType::U8),
        }
    }

    fn check_obs(&self, field: &'static str, t: &Tensor, batch: Option<usize>) -> Result<()> {
        let (shape, dtype) = self.obs_shape();
        let ok = t.rank() == shape.len() + 1
            && t.dims()[1..] == shape[..]
            && t.dtype() == dtype
            && batch.is_none_or(|b| t.dims()[0] == b);
        if ok {
            Ok(())
        } else {
            Err(MqeError::BadBatch {
                field,
                expected: format!(
                    "{dtype:?} [{}, {shape:?}]",
                    batch.map_or("B".into(), |b| b.to_string())
                ),
                got: format!("{:?} {:?}", t.dtype(), t.dims()),
            })
        }
    }

    fn check_batch(&self, batch: &Batch) -> Result<()> {
        let b = batch.obs.dim(0)?;
        self.check_obs("obs", &batch.obs, Some(b))?;
        self.check_obs("goal", &batch.goal, Some(b))?;
        self.check_obs("waypoint", &batch.waypoint, Some(b))?;
        self.check_obs("actor_goal", &batch.actor_goal, Some(b))?;
        let bad = |field, expected: String, t: &Tensor| MqeError::BadBatch {
            field,
            expected,
            got: format!("{:?} {:?}", t.dtype(), t.dims()),
        };
        if batch.action.dims() != [b, self.model.action_dim] {
            return Err(bad(
                "action",
                format!("[{b}, {}]", self.model.action_dim),
                &batch.action,
            ));
        }
        if batch.waypoint_offset.dims() != [b] {
            return Err(bad(
                "waypoint_offset",
                format!("[{b}]"),
                &batch.waypoint_offset,
            ));
        }
        Ok(())
    }
}

fn build_critic(pb: &mut ParamBuilder, model: &ModelConfig) -> Result<Critic> {
    let phi_encoder = Encoder::new(&mut pb.pp("phi").pp("encoder"), model, 1)?;
    let own_psi_encoder = match model.shared_critic_encoder {
        true => None,
        false => Some(Encoder::new(&mut pb.pp("psi").pp("encoder"), model, 1)?),
    };
    let feature_dim = match model.obs {
        ObsKind::State { dim } => dim,
        ObsKind::Pixels { .. } => model.encoder_dim,
    };
    let phi = EnsembleMlp::new(
        &mut pb.pp("phi").pp("mlp"),
        model.ensemble,
        feature_dim + model.action_dim,
        &model.mlp_hidden,
        model.latent_dim,
    )?;
    let psi = EnsembleMlp::new(
        &mut pb.pp("psi").pp("mlp"),
        model.ensemble,
        feature_dim,
        &model.mlp_hidden,
        model.latent_dim,
    )?;
    Ok(Critic {
        phi_encoder,
        own_psi_encoder,
        phi,
        psi,
    })
}

/// All variables of `varmap`, sorted by name.
pub(crate) fn named_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = match varmap.data().lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    let mut vars: Vec<_> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}
