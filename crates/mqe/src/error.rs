//! Typed errors of the crate.

use std::path::PathBuf;

/// Everything that can go wrong in `mqe`.
#[derive(Debug, thiserror::Error)]
pub enum MqeError {
    /// A tensor operation failed (shape error, device error, ...).
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),

    /// A configuration value is out of its valid range.
    /// The device the user asked for cannot be used.
    #[error("--device {requested}: {reason}")]
    NoDevice {
        requested: &'static str,
        reason: String,
    },

    #[error("invalid config field `{field}`: {reason}")]
    InvalidConfig { field: String, reason: String },

    /// A batch tensor has the wrong shape or dtype for the model.
    #[error("batch field `{field}`: expected {expected}, got {got}")]
    BadBatch {
        field: &'static str,
        expected: String,
        got: String,
    },

    /// Reading or writing a checkpoint file failed at the OS level.
    #[error("checkpoint file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A checkpoint file exists but cannot be parsed (truncated, corrupt, not a checkpoint).
    #[error("checkpoint file {path} is corrupt or truncated: {reason}")]
    CorruptFile { path: PathBuf, reason: String },

    /// The checkpoint was written by an incompatible version of this crate.
    #[error("checkpoint {path}: format_version {found}, this build reads {expected}")]
    FormatVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },

    /// A tensor expected by the model is missing from the checkpoint.
    #[error("checkpoint file {path}: tensor `{name}` is missing (expected shape {expected:?})")]
    MissingTensor {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
    },

    /// A checkpoint tensor has a different shape than the model expects.
    #[error(
        "checkpoint file {path}: tensor `{name}` has shape {found:?}, the model expects {expected:?}"
    )]
    TensorShape {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    /// A checkpoint holds a tensor the model does not know.
    #[error("checkpoint file {path}: unexpected tensor `{name}`")]
    UnexpectedTensor { path: PathBuf, name: String },

    /// A checkpoint's configuration disagrees with what the caller expects.
    #[error("checkpoint config field `{field}` is {found}, expected {expected}")]
    ConfigMismatch {
        field: String,
        expected: String,
        found: String,
    },
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, MqeError>;

/// `error` and its causes as one message for the operator, each cause once: many errors print
/// their source in their own text as well as returning it from `source()`, so a cause whose
/// text the message already holds is not repeated.
pub fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod error_text_tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("checkpoint ck: {source}")]
    struct Outer {
        #[source]
        source: Inner,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("file ck/config.toml is corrupt")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("loading the policy")]
    struct Context {
        #[source]
        source: Outer,
    }

    #[test]
    fn each_cause_is_said_once() {
        let error = Context {
            source: Outer { source: Inner },
        };
        assert_eq!(
            error_text(&error),
            "loading the policy: checkpoint ck: file ck/config.toml is corrupt"
        );
    }
}
