//! # camera
//!
//! Frame sources for the runtime and the one preprocessing step shared by training and
//! deployment.
//!
//! For: [`FrameSource`] (a camera that yields timestamped RGB frames), and [`preprocess`]
//! (a whole frame squashed, not cropped, to the model's square input), which `bridge-train
//! prepare` and `bridge-run` both call so that the policy sees at run time exactly what it saw
//! in training.
//! Not for: models, datasets or the arm.
//!
//! ```
//! use camera::preprocess::squash_rgb;
//! let frame = vec![128u8; 640 * 480 * 3];
//! let mut model_input = Vec::new();
//! squash_rgb(&frame, 640, 480, 64, &mut model_input)?;
//! assert_eq!(model_input.len(), 64 * 64 * 3);
//! # Ok::<(), camera::CameraError>(())
//! ```

pub mod preprocess;

use std::time::Instant;

/// One RGB frame, row-major HWC, with when it was captured.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// `height_px * width_px * 3` bytes.
    pub rgb: Vec<u8>,
    pub width_px: u32,
    pub height_px: u32,
    /// When the frame was captured (for a real camera: when the driver handed it over).
    pub captured_at: Instant,
    /// Frame counter of its source, starting at 0.
    pub sequence: u64,
}

/// A camera: each call blocks until the next frame (paced at the source's rate) and returns it.
pub trait FrameSource: Send {
    /// The next frame.
    fn next_frame(&mut self) -> Result<Frame, CameraError>;
    /// What this source is, for logs and errors (`"v4l2 /dev/video0 640x480 MJPEG @30"`).
    fn describe(&self) -> String;
}

/// Why a frame could not be had or processed.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error("{source_name}: {reason}")]
    Source { source_name: String, reason: String },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("frame buffer holds {len} bytes; expected {width_px}x{height_px}x3 = {expected}")]
    FrameSize {
        len: usize,
        width_px: u32,
        height_px: u32,
        expected: usize,
    },
    #[error("image size {width_px}x{height_px} is empty; expected at least 1x1")]
    EmptyImage { width_px: u32, height_px: u32 },
    #[error("could not decode image: {0}")]
    Decode(String),
}
