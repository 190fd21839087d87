//! One robot episode in Bridge conventions, independent of the file format it came from.
//!
//! Every reader ([`crate::raw`], [`crate::tfrecord`], [`crate::npy_release`]) yields
//! [`Trajectory`] values; `bridge-train prepare` turns them into the training cache.

use std::path::PathBuf;

/// Length of the Bridge state and action vectors: `[x, y, z, roll, pitch, yaw, gripper]`.
pub const BRIDGE_DIM: usize = 7;

/// One camera frame as stored by its source: still encoded (raw layout, TFRecord) or already
/// decoded (the NumPy release stores RGB arrays).
#[derive(Debug, Clone, PartialEq)]
pub enum StoredFrame {
    /// A JPEG file's bytes.
    Jpeg(Vec<u8>),
    /// Decoded RGB, `height_px * width_px * 3` bytes, row-major HWC.
    Rgb {
        width_px: u32,
        height_px: u32,
        data: Vec<u8>,
    },
}

/// One episode: `T + 1` observations (frame and state) and `T` actions, `actions[t]` taken in
/// observation `t` and leading to observation `t + 1`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    /// Where it came from: a trajectory directory, or `shard.tfrecord#<record index>`, or
    /// `out.npy#<list index>`; used in every error and in the cache manifest.
    pub source: PathBuf,
    /// Frames of the chosen camera, one per observation.
    pub frames: Vec<StoredFrame>,
    /// Bridge states, one per observation.
    pub states: Vec<[f32; BRIDGE_DIM]>,
    /// Bridge actions, one per transition (`frames.len() - 1` of them).
    pub actions: Vec<[f32; BRIDGE_DIM]>,
    /// The language annotation, when the episode has one.
    pub language: Option<String>,
}

impl Trajectory {
    /// Number of observations (`T + 1`).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// True when the trajectory holds no observation.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}
