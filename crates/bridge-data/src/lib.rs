//! Offline datasets for goal-conditioned training, and the MQE batch sampler.
//!
//! Design: `docs/widowx.md`, "BridgeData V2 on disk" (the formats read here), and `docs/mqe.md`
//! section 2 (the sampler).
//!
//! What it is for:
//! - [`Dataset`]: observations (state vectors or HWC u8 frames), actions and episode structure,
//!   independent of where the data came from, with a [`DataSummary`] for checkpoints.
//! - [`ogbench`]: reading OGBench `.npz` files (and their `-val.npz` companions).
//! - [`sampler`]: the batch sampling of docs/mqe.md section 2 (transitions, geometric value goals,
//!   waypoints, one-step override, actor goals, random crop), seeded and reproducible, into
//!   preallocated buffers that are reused across steps.
//! - BridgeData V2 readers, each yielding [`Trajectory`] values without Python: [`raw`] (trajectory
//!   directories with `obs_dict.pkl` / `policy_out.pkl`, and [`raw::RawEpisodeWriter`] to record
//!   in that layout), [`tfrecord`] (RLDS shards), [`npy_release`] (`out.npy`), [`pickle`] (the
//!   pickle machine with NumPy arrays under them), and [`sources`] (discovery, dispatch and the
//!   shared [`sources::ReadOptions`]).
//! - [`norm`]: the one action normalisation (fitted for the cache and for in-memory datasets);
//!   [`stats`]: the one percentile helper.
//! - [`cache`]: the training cache `bridge-train prepare` writes (squashed frames, states, actions,
//!   a manifest), append-only and resumable; [`cache::Cache`] memory-maps it into a [`Dataset`]
//!   whose frames ([`FrameBytes`]) are the mapping itself, so data larger than RAM can be trained on.
//!
//! What it is not for: tensors and devices. It depends on no tensor library; the trainer turns the
//! plain `Vec`s of a [`BatchBuffers`] into tensors (and scales pixels by 1/255).
//!
//! ```no_run
//! use bridge_data::{ogbench, Sampler, SamplerConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let split = ogbench::load_with_val("pointmaze-medium-stitch-v0.npz".as_ref())?;
//! println!("{:?}", split.train.summary());
//! let mut sampler = Sampler::new(SamplerConfig::ogbench_stitch(), 0)?;
//! let mut batch = sampler.buffers(&split.train);
//! for _step in 0..10 {
//!     sampler.sample(&split.train, &mut batch)?; // no allocation
//!     let states = batch.state().ok_or("expected state observations")?;
//!     let (_s, _g, _k) = (&states.obs, &states.goal, &batch.indices().waypoint_offset);
//! }
//! # Ok(())
//! # }
//! ```

pub mod cache;
mod dataset;
pub mod norm;
pub mod npy_release;
pub mod ogbench;
pub mod pickle;
pub mod provenance;
pub mod raw;
pub mod sampler;
pub mod sources;
pub mod stats;
pub mod tfrecord;
pub mod trajectory;

pub use dataset::FrameBytes;
pub use dataset::{DataSummary, Dataset, DatasetError, Obs, ObsKind};
pub use sampler::{
    BatchBuffers, IndexBatch, ObsBuffers, RoleBuffers, Sampler, SamplerConfig, SamplerError,
    sample_geometric,
};
pub use trajectory::{BRIDGE_DIM, Outcome, StepKind, StoredFrame, Trajectory};
