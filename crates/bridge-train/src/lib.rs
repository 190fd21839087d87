//! `bridge-train`: turns offline trajectories into MQE (or GCBC) checkpoints.
//!
//! What it is for: the training loop around [`mqe::Agent`] ([`fit::fit`]): configuration files
//! and overrides ([`config`]), action normalisation and batch conversion from the candle-free
//! `bridge-data` sampler ([`data`]), batches drawn ahead on background threads ([`loader`]),
//! progress, metrics, validation, checkpoints and exact resume; [`prepare`], which turns
//! BridgeData sources into the memory-mapped training cache of `bridge_data::cache`; the `bench`
//! timings ([`mod@bench`]); and [`maze`], a small U-maze where far goals need stitching, used by the
//! learning test.
//! What it is not for: the method itself (crate `mqe`), reading datasets and sampling batches
//! (crate `bridge-data`), or running a policy on a robot (`bridge-run`, `policy-server`).
//!
//! Design: `docs/mqe.md` (the method and its settings) and `docs/architecture.md` (the crates).
//!
//! ```no_run
//! use bridge_train::config::{resolve, DataTraits, RunConfig};
//! use bridge_train::fit::{fit, FitOptions};
//! # fn main() -> anyhow::Result<()> {
//! let data = bridge_data::ogbench::load("pointmaze-medium-stitch-v0.npz".as_ref())?;
//! let overrides = ["steps=1000".parse()?, "gamma=0.99".parse()?];
//! let base = RunConfig::defaults_for(DataTraits { pixels: false, stitch: true, bridge_size_px: None });
//! let config = resolve(base, None, &overrides)?;
//! let options = FitOptions {
//!     out_dir: "runs/pointmaze".into(),
//!     resume: None,
//!     dataset_name: "pointmaze-medium-stitch-v0".into(),
//!     progress: true,
//!     action_norm: None,
//!     loader_threads: 2,
//!     input_crop_px: None,
//!     data_source: mqe::DataSource::Unknown,
//!     env_eval: None,
//! };
//! let outcome = fit(&data, None, &config, &options, &candle_core::Device::Cpu)?;
//! println!("trained {} steps", outcome.agent.step());
//! # Ok(())
//! # }
//! ```
//!
//! The command line (`bridge-train prepare | fit | config | bench | bench-data`) is documented
//! in `src/main.rs`.

pub mod bench;
pub mod bench_data;
pub mod browse;
pub mod config;
pub mod data;
pub mod device_check;
pub mod env_eval;
pub mod fit;
pub mod loader;
pub mod maze;
pub mod prepare;
