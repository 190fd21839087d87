//! # bridge-run
//!
//! The realtime runtime that drives a WidowX 250 toward a goal image with a learned
//! goal-conditioned policy, BridgeData V2 style, with a safety supervisor and a keyboard override.
//!
//! For: the `bridge-run` binary (real arm or `--sim`), and [`Runtime`] for any program that runs
//! episodes through the same code path (`bridge-sim eval`).
//! Not for: training (`bridge-train`), servo set-up and repair (`bridge-servo`), kinematics and
//! the servo protocol (crate `widowx`), frame capture (crate `camera`).
//!
//! Design: `docs/architecture.md` (threads, the path of one frame, modes) and `docs/widowx.md`, "Bridge conventions".
//!
//! Threads (docs/architecture.md, "bridge-run: threads and hand-offs"; wired in [`graph`], the
//! messages in [`messages`]):
//! - control (`control`): every `control_period_s` one SYNC_READ and one SYNC_WRITE, the mode
//!   machine ([`modes`]) and the safety supervisor ([`supervisor`]); never waits on the policy,
//!   never allocates or touches the disk;
//! - camera (`frames`): keeps the newest frame and its capture time;
//! - policy (`policy_loop`): at 5 Hz, the newest frame (never one older than
//!   `max_frame_age_s`) through the [`policy::Policy`] to a Bridge action, handed over through a
//!   freshest-value [`mailbox::Mailbox`]; the action becomes joints in [`action`];
//! - recorder ([`recorder`]): each episode in the BridgeData V2 raw layout;
//! - monitor ([`monitor`]): the log file, the status line, each episode's events and latencies;
//! - keyboard ([`keyboard`], in the binary): raw-mode keys to [`OperatorCommand`]s.
//!
//! Besides a learned policy, the policy thread runs the operator teleoperating ([`teleop`]), a
//! recorded episode replayed and a drive to a pose ([`replay`]), all as [`policy::Policy`]s, so
//! the same supervisor and recorder apply to them.
//!
//! The thread bodies (`control`, `frames`, `policy_loop`) are private: a program drives them
//! through [`Runtime`].
//!
//! ```no_run
//! use bridge_run::policy::{GoalImage, MqePolicy, Policy};
//! use bridge_run::sim::SimRig;
//! use bridge_run::{Runtime, RuntimeConfig, RuntimeOptions};
//!
//! let rig = SimRig::spawn(0)?; // a virtual arm on a table, driven over a pseudo-terminal
//! let policy = MqePolicy::load("models/sim-demo".as_ref(), &candle_core::Device::Cpu)?;
//! let goal = GoalImage::load("goal.png".as_ref(), policy.input_view(), Some((640, 480)))?;
//! let mut runtime = Runtime::start(
//!     RuntimeConfig::default(),
//!     rig.connect()?,
//!     Box::new(rig.camera(30.0)?),
//!     Box::new(policy),
//!     RuntimeOptions::default(),
//! )?;
//! let report = runtime.run_episode(&goal, 120)?;
//! println!("{}", report.summary);
//! runtime.park_and_stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod action;
pub mod bench;
pub mod clock;
pub mod config;
mod control;
mod error;
mod frames;
#[cfg(feature = "gamepad")]
pub mod gamepad;
pub mod graph;
pub mod keyboard;
pub mod mailbox;
pub mod messages;
pub mod modes;
pub mod monitor;
pub mod policy;
mod policy_loop;
pub mod realtime;
pub mod record;
pub mod recorder;
pub mod replay;
pub mod report;
pub mod runtime;
#[cfg(feature = "sim")]
pub mod sim;
mod stats;
pub mod supervisor;
pub mod teleop;

pub use config::RuntimeConfig;
pub use error::RunError;
pub use modes::{Mode, OperatorCommand};
pub use runtime::{EpisodeReport, Runtime, RuntimeOptions};
