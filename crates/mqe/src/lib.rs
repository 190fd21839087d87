//! MQE (multistep quasimetric estimation, docs/mqe.md) in candle: encoders, the MRN quasimetric
//! critic, the DDPG+BC actor, the GCBC baseline, their losses, an Adam with resumable state, and
//! the checkpoint format.
//!
//! What it is for: training ([`Agent::train_step`]) and running ([`Agent::act`],
//! [`Agent::distance`]) goal-conditioned policies from batches the caller samples.
//! What it is not for: datasets, batch sampling and augmentation (crate `bridge-data`), robots,
//! training schedules and logging (the `bridge-train` binary).
//!
//! Design: `docs/mqe.md` (the method, section by section, as this crate implements it).
//!
//! Speed on small CPUs: candle's elementwise thread pool spins while it waits, and on a 2-core
//! machine it competes with the rayon pool the matmuls and this crate's kernels use. Running with
//! `CANDLE_NUM_THREADS=1` (elementwise ops inline, matmuls still parallel) measured 330 ms instead
//! of 495 ms per state train step there. Binaries call [`threads::prefer_inline_elementwise_ops`]
//! first thing in `main`.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use mqe::{Agent, Batch, ModelConfig, TrainConfig};
//!
//! let dev = Device::Cpu;
//! let mut model = ModelConfig::state(2, 2);
//! (model.latent_dim, model.mlp_hidden, model.actor_hidden) = (32, vec![32], vec![32]);
//! let train = TrainConfig { batch_size: 8, ..TrainConfig::default() };
//! let mut agent = Agent::new(model, train, &dev)?;
//! let obs = || Tensor::randn(0f32, 1., (8, 2), &dev);
//! let batch = Batch {
//!     obs: obs()?, next_obs: obs()?, goal: obs()?, waypoint: obs()?,
//!     waypoint_offset: Tensor::ones(8, candle_core::DType::F32, &dev)?,
//!     actor_goal: obs()?, action: Tensor::zeros((8, 2), candle_core::DType::F32, &dev)?,
//! };
//! let metrics = agent.train_step(&batch)?;
//! assert!(metrics.total_loss.is_finite());
//! let action = agent.act(&batch.obs, &batch.goal)?; // [8, 2] in [-1, 1]
//! assert_eq!(action.dims(), &[8, 2]);
//! # Ok::<(), mqe::MqeError>(())
//! ```

pub mod action;
pub mod adam;
pub mod agent;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod error;
pub mod fused;
pub mod layers;
pub mod losses;
pub mod ops;
pub mod params;
pub mod threads;

pub use action::ActionNorm;
pub use adam::{Adam, AdamParams};
pub use agent::{Agent, Batch, Metrics};
pub use checkpoint::{CheckpointConfig, CheckpointMeta, DataSource, check_compatible};
pub use config::{Algo, EncoderKind, ModelConfig, ObsKind, TrainConfig};
pub use device::{DeviceChoice, SelectedDevice, device_label, select_device};
pub use error::error_text;
pub use error::{MqeError, Result};
