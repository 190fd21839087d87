//! The runtime's errors: each names the file, field, servo or thread it is about.

use std::path::PathBuf;

/// Why the runtime could not start, run an episode, or stop.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("configuration {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    #[error("the arm: {0}")]
    Driver(#[from] widowx_driver::DriverError),
    #[error("goal {path}: {reason}")]
    Goal { path: PathBuf, reason: String },
    #[error("cannot start the {thread} thread: {source}")]
    Thread {
        thread: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the {thread} thread stopped unexpectedly{}", detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    ThreadGone {
        thread: &'static str,
        detail: Option<String>,
    },
    #[error("log file {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} did not finish within {timeout_s} s (mode {mode})")]
    Timeout {
        what: &'static str,
        timeout_s: f64,
        mode: crate::modes::Mode,
    },
    #[cfg(feature = "sim")]
    #[error("virtual arm: {0}")]
    Sim(#[from] widowx_sim::SimError),
    #[error("camera: {0}")]
    Camera(#[from] camera::CameraError),
    #[error("the runtime is stopping (mode {mode}): no further episodes")]
    Stopped { mode: crate::modes::Mode },
    #[error("{reason}")]
    NotParked { reason: String },
}
