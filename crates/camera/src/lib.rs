//! # camera
//!
//! Frame sources for the runtime and the one preprocessing step shared by training and
//! deployment.
//!
//! For: [`FrameSource`] (a camera that yields timestamped RGB frames), and [`preprocess`]
//! (the calibration crop, then a squash to the model's square input), which `bridge-train
//! prepare` and `bridge-run` both call so that the policy sees at run time exactly what it saw
//! in training.
//! Not for: models, datasets, the arm or the simulator. This crate depends on no other crate of
//! the workspace, so the trainer links no serial or simulator code through it; the virtual
//! tabletop's camera (`widowx_sim::SimCamera`) implements [`FrameSource`] from the other side.
//!
//! Design: `docs/architecture.md`, "The path of one frame, camera to servo" (steps 1 and 3).
//!
//! Sources: [`folder::FolderSource`] (an image folder or a raw Bridge recording replayed),
//! and, with the `v4l2` feature, `v4l2::V4l2Camera` (a USB camera through nokhwa; needs libclang to build, so
//! the default build leaves it out).
//!
//! ```
//! use camera::preprocess::squash_rgb;
//! let frame = vec![128u8; 640 * 480 * 3];
//! let mut model_input = Vec::new();
//! squash_rgb(&frame, 640, 480, 64, &mut model_input)?;
//! assert_eq!(model_input.len(), 64 * 64 * 3);
//! # Ok::<(), camera::CameraError>(())
//! ```

pub mod folder;
pub mod preprocess;
#[cfg(feature = "v4l2")]
pub mod v4l2;

use std::time::{Duration, Instant};

pub use folder::{FolderOptions, FolderSource};
#[cfg(feature = "v4l2")]
pub use v4l2::{PixelFormat, V4l2Camera, V4l2Config, V4l2Device};

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
    #[error(
        "crop of {}x{} px at ({}, {}) does not fit in a {width_px}x{height_px} frame; \
         expected x + width <= {width_px} and y + height <= {height_px}",
        crop.width_px, crop.height_px, crop.x_px, crop.y_px
    )]
    CropOutside {
        crop: preprocess::Crop,
        width_px: u32,
        height_px: u32,
    },
    #[error("could not decode image: {0}")]
    Decode(String),
    /// A finite source (a replayed folder) has no more frames.
    #[error("{source_name}: no more frames")]
    Ended { source_name: String },
}

/// A frame clock: slot `k` is due `k` periods after the first frame. Waiting returns the next
/// slot, or, for a caller that fell behind, the latest slot already due (the ones in between are
/// dropped, and the slot number shows it). Every paced source uses it: the folder replay here and
/// the virtual tabletop's camera in `widowx-sim`.
#[derive(Debug)]
pub struct Pacer {
    period: Duration,
    started_at: Option<Instant>,
    next_slot: u64,
}

impl Pacer {
    /// A clock at `fps` frames per second, or an error naming `source_name` when that is not a
    /// rate in (0, 1000].
    pub fn at_rate(fps: f64, source_name: &str) -> Result<Pacer, CameraError> {
        if !(fps.is_finite() && fps > 0.0 && fps <= 1000.0) {
            return Err(CameraError::Source {
                source_name: source_name.to_string(),
                reason: format!("fps = {fps}; expected a rate in (0, 1000] frames per second"),
            });
        }
        Ok(Pacer {
            period: Duration::from_secs_f64(1.0 / fps),
            started_at: None,
            next_slot: 0,
        })
    }

    /// Sleeps until the next slot is due; returns when it was taken and its number.
    pub fn wait_next(&mut self) -> (Instant, u64) {
        let now = Instant::now();
        let started_at = *self.started_at.get_or_insert(now);
        let due = started_at + self.period.mul_f64(self.next_slot as f64);
        let slot = if due > now {
            std::thread::sleep(due - now);
            self.next_slot
        } else {
            let elapsed_slots = (now - started_at).as_secs_f64() / self.period.as_secs_f64();
            self.next_slot.max(elapsed_slots.floor() as u64)
        };
        self.next_slot = slot + 1;
        (Instant::now(), slot)
    }
}
