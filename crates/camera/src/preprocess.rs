//! The model's view of a frame ([`ModelView`]): by default the whole frame squashed (aspect
//! ratio not kept, nothing cropped) to a square of `size_px`, as BridgeData V2 policies are
//! trained (docs/widowx.md, "Camera"); optionally a [`Crop`] of the frame first, so that a small input
//! spends its pixels on the workspace instead of the room around it.
//!
//! Training (`bridge-train prepare`) and deployment (`bridge-run`, goal images included) both go
//! through [`ModelView::apply`], so the crop and the resampling filter are the same on both
//! sides. The crop a model was trained with travels in its checkpoint
//! (`data.input_crop_px` of `config.toml`), so the runtime never has to be told it again.
//!
//! ```
//! use camera::preprocess::{Crop, ModelView};
//! let view = ModelView { size_px: 64, crop: Some(Crop::new(152, 88, 320, 320)?) };
//! let frame = vec![128u8; 640 * 480 * 3];
//! let mut model_input = Vec::new();
//! view.apply(&frame, 640, 480, &mut model_input)?;
//! assert_eq!(model_input.len(), 64 * 64 * 3);
//! # Ok::<(), camera::CameraError>(())
//! ```

use std::path::Path;

use image::imageops::{self, FilterType};
use image::{GenericImageView, ImageBuffer, Rgb};
use serde::{Deserialize, Serialize};

use crate::CameraError;

/// A rectangle of the camera frame, in pixels of the frame as captured (x right, y down, from
/// the top-left corner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crop {
    pub x_px: u32,
    pub y_px: u32,
    pub width_px: u32,
    pub height_px: u32,
}

impl std::fmt::Display for Crop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}x{} px at ({}, {})",
            self.width_px, self.height_px, self.x_px, self.y_px
        )
    }
}

/// `crop` in words: its rectangle, or the whole frame when there is none.
pub fn describe_crop(crop: Option<Crop>) -> String {
    crop.map_or_else(
        || "the whole frame".to_string(),
        |c| format!("the crop {c}"),
    )
}

impl Crop {
    /// A crop of `width_px x height_px` at `(x_px, y_px)`; both sides must be at least 1.
    pub fn new(x_px: u32, y_px: u32, width_px: u32, height_px: u32) -> Result<Crop, CameraError> {
        let crop = Crop {
            x_px,
            y_px,
            width_px,
            height_px,
        };
        crop.check_size()?;
        Ok(crop)
    }

    /// `[x, y, width, height]`, the form stored in caches and checkpoints.
    pub fn to_array(self) -> [u32; 4] {
        [self.x_px, self.y_px, self.width_px, self.height_px]
    }

    /// The inverse of [`Crop::to_array`].
    pub fn from_array(xywh: [u32; 4]) -> Result<Crop, CameraError> {
        Crop::new(xywh[0], xywh[1], xywh[2], xywh[3])
    }

    /// The `[crop]` table of a camera calibration file (`calibration/camera.toml`), or `None`
    /// when the file has none (the whole frame is used).
    pub fn from_calibration(path: &Path) -> Result<Option<Crop>, CameraError> {
        let fail = |reason: String| CameraError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        Crop::from_calibration_str(&text).map_err(|e| fail(e.to_string()))
    }

    /// [`Crop::from_calibration`] on the file's text.
    pub fn from_calibration_str(text: &str) -> Result<Option<Crop>, CameraError> {
        #[derive(Deserialize)]
        struct Calibration {
            crop: Option<Crop>,
        }
        let parsed: Calibration = toml::from_str(text).map_err(|e| CameraError::File {
            path: "[crop]".into(),
            reason: e.to_string(),
        })?;
        if let Some(crop) = parsed.crop {
            crop.check_size()?;
        }
        Ok(parsed.crop)
    }

    fn check_size(&self) -> Result<(), CameraError> {
        if self.width_px == 0 || self.height_px == 0 {
            return Err(CameraError::EmptyImage {
                width_px: self.width_px,
                height_px: self.height_px,
            });
        }
        Ok(())
    }

    /// Errors unless the crop lies inside a `width_px x height_px` frame.
    fn check_inside(&self, width_px: u32, height_px: u32) -> Result<(), CameraError> {
        let right = u64::from(self.x_px) + u64::from(self.width_px);
        let bottom = u64::from(self.y_px) + u64::from(self.height_px);
        if right > u64::from(width_px) || bottom > u64::from(height_px) {
            return Err(CameraError::CropOutside {
                crop: *self,
                width_px,
                height_px,
            });
        }
        Ok(())
    }
}

impl std::str::FromStr for Crop {
    type Err = CameraError;

    /// `X,Y,WIDTH,HEIGHT` in pixels.
    fn from_str(text: &str) -> Result<Crop, CameraError> {
        let parts: Vec<Result<u32, _>> = text.split(',').map(|p| p.trim().parse()).collect();
        match parts.as_slice() {
            [Ok(x), Ok(y), Ok(w), Ok(h)] => Crop::new(*x, *y, *w, *h),
            _ => Err(CameraError::Decode(format!(
                "crop `{text}`: expected X,Y,WIDTH,HEIGHT in pixels (four whole numbers)"
            ))),
        }
    }
}

/// What the model sees of a frame: the crop (or the whole frame), squashed to `size_px` square.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelView {
    /// Side of the square model input.
    pub size_px: u32,
    /// The region of the frame used; `None`: the whole frame.
    pub crop: Option<Crop>,
}

impl From<u32> for ModelView {
    /// The whole frame squashed to `size_px` square (Bridge's convention).
    fn from(size_px: u32) -> ModelView {
        ModelView {
            size_px,
            crop: None,
        }
    }
}

impl ModelView {
    /// Bytes of one model input (`size_px^2 * 3`).
    pub fn input_len(&self) -> usize {
        frame_len(self.size_px, self.size_px)
    }

    /// Crops (if set) and squashes an RGB frame (`width_px x height_px x 3`, row-major) into
    /// `out` (resized to fit; its allocation is reused across calls).
    pub fn apply(
        &self,
        rgb: &[u8],
        width_px: u32,
        height_px: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), CameraError> {
        match self.crop {
            None => squash_rgb(rgb, width_px, height_px, self.size_px, out),
            Some(crop) => crop_and_squash(rgb, width_px, height_px, crop, self.size_px, out),
        }
    }

    /// Decodes a JPEG (or any format `image` reads) and applies the view to it.
    pub fn apply_encoded(&self, encoded: &[u8], out: &mut Vec<u8>) -> Result<(), CameraError> {
        let decoded = image::load_from_memory(encoded)
            .map_err(|e| CameraError::Decode(e.to_string()))?
            .into_rgb8();
        let (width_px, height_px) = decoded.dimensions();
        self.apply(decoded.as_raw(), width_px, height_px, out)
    }
}

fn crop_and_squash(
    rgb: &[u8],
    width_px: u32,
    height_px: u32,
    crop: Crop,
    size_px: u32,
    out: &mut Vec<u8>,
) -> Result<(), CameraError> {
    let view = frame_view(rgb, width_px, height_px)?;
    check_input_size(size_px)?;
    crop.check_inside(width_px, height_px)?;
    let region = view.view(crop.x_px, crop.y_px, crop.width_px, crop.height_px);
    out.clear();
    let resized = imageops::resize(&*region, size_px, size_px, FILTER);
    out.extend_from_slice(resized.as_raw());
    Ok(())
}

/// Errors for an empty model input.
fn check_input_size(size_px: u32) -> Result<(), CameraError> {
    if size_px == 0 {
        return Err(CameraError::EmptyImage {
            width_px: size_px,
            height_px: size_px,
        });
    }
    Ok(())
}

fn frame_view(
    rgb: &[u8],
    width_px: u32,
    height_px: u32,
) -> Result<ImageBuffer<Rgb<u8>, &[u8]>, CameraError> {
    check_frame(rgb.len(), width_px, height_px)?;
    ImageBuffer::from_raw(width_px, height_px, rgb).ok_or(CameraError::FrameSize {
        len: rgb.len(),
        width_px,
        height_px,
        expected: frame_len(width_px, height_px),
    })
}

/// Resampling filter. Triangle (bilinear) widens its support by the scale factor when
/// shrinking, so a 640x480 -> 128x128 squash averages every source pixel instead of aliasing.
const FILTER: FilterType = FilterType::Triangle;

/// Squashes an RGB frame (`width_px x height_px x 3`, row-major) to `size_px x size_px x 3`
/// into `out` (resized to fit; its allocation is reused across calls).
pub fn squash_rgb(
    rgb: &[u8],
    width_px: u32,
    height_px: u32,
    size_px: u32,
    out: &mut Vec<u8>,
) -> Result<(), CameraError> {
    let view = frame_view(rgb, width_px, height_px)?;
    check_input_size(size_px)?;
    out.clear();
    if width_px == size_px && height_px == size_px {
        out.extend_from_slice(rgb);
        return Ok(());
    }
    let resized = imageops::resize(&view, size_px, size_px, FILTER);
    out.extend_from_slice(resized.as_raw());
    Ok(())
}

/// Decodes a JPEG (or any format `image` reads) and squashes it like [`squash_rgb`].
pub fn decode_and_squash(
    encoded: &[u8],
    size_px: u32,
    out: &mut Vec<u8>,
) -> Result<(), CameraError> {
    let decoded = image::load_from_memory(encoded)
        .map_err(|e| CameraError::Decode(e.to_string()))?
        .into_rgb8();
    let (width_px, height_px) = decoded.dimensions();
    squash_rgb(decoded.as_raw(), width_px, height_px, size_px, out)
}

fn frame_len(width_px: u32, height_px: u32) -> usize {
    width_px as usize * height_px as usize * 3
}

fn check_frame(len: usize, width_px: u32, height_px: u32) -> Result<(), CameraError> {
    if width_px == 0 || height_px == 0 {
        return Err(CameraError::EmptyImage {
            width_px,
            height_px,
        });
    }
    let expected = frame_len(width_px, height_px);
    if len != expected {
        return Err(CameraError::FrameSize {
            len,
            width_px,
            height_px,
            expected,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_colour_survives_squashing() {
        let frame: Vec<u8> = [10u8, 200, 30].repeat(640 * 480);
        let mut out = Vec::new();
        squash_rgb(&frame, 640, 480, 64, &mut out).unwrap();
        assert_eq!(out.len(), 64 * 64 * 3);
        assert!(out.chunks(3).all(|px| px == [10, 200, 30]));
    }

    #[test]
    fn left_half_stays_left_whole_frame_kept() {
        // Left half black, right half white: squashing keeps the whole width, so column 0 is
        // black and the last column white.
        let mut frame = vec![0u8; 640 * 480 * 3];
        for row in frame.chunks_mut(640 * 3) {
            row[320 * 3..].fill(255);
        }
        let mut out = Vec::new();
        squash_rgb(&frame, 640, 480, 32, &mut out).unwrap();
        assert_eq!(out[0], 0);
        assert_eq!(out[31 * 3], 255);
    }

    #[test]
    fn a_crop_keeps_only_its_region() {
        // A white 100x100 square at (200, 100) in a black frame: cropped exactly, the input is
        // all white; a crop next to it is all black.
        let mut frame = vec![0u8; 640 * 480 * 3];
        for y in 100..200 {
            frame[(y * 640 + 200) * 3..(y * 640 + 300) * 3].fill(255);
        }
        let mut out = Vec::new();
        let white = ModelView {
            size_px: 16,
            crop: Some(Crop::new(200, 100, 100, 100).unwrap()),
        };
        white.apply(&frame, 640, 480, &mut out).unwrap();
        assert_eq!(out.len(), white.input_len());
        assert!(out.iter().all(|&v| v == 255));
        let black = ModelView {
            size_px: 16,
            crop: Some(Crop::new(300, 100, 100, 100).unwrap()),
        };
        black.apply(&frame, 640, 480, &mut out).unwrap();
        assert!(out.iter().all(|&v| v == 0));
        // Without a crop the view is the plain squash.
        let mut squashed = Vec::new();
        squash_rgb(&frame, 640, 480, 16, &mut squashed).unwrap();
        ModelView::from(16)
            .apply(&frame, 640, 480, &mut out)
            .unwrap();
        assert_eq!(out, squashed);
    }

    #[test]
    fn a_crop_outside_the_frame_or_empty_is_refused() {
        let frame = vec![0u8; 64 * 48 * 3];
        let mut out = Vec::new();
        let view = ModelView {
            size_px: 8,
            crop: Some(Crop::new(40, 0, 32, 32).unwrap()),
        };
        let err = view.apply(&frame, 64, 48, &mut out).unwrap_err();
        assert!(err.to_string().contains("64x48"), "{err}");
        assert!(Crop::new(0, 0, 0, 10).is_err());
        assert!("1,2,3".parse::<Crop>().is_err());
        assert_eq!("1, 2,3,4".parse::<Crop>().unwrap().to_array(), [1, 2, 3, 4]);
    }

    #[test]
    fn the_calibration_crop_is_read_and_checked() {
        let text =
            "[camera]\nwidth_px = 640\n[crop]\nx_px = 1\ny_px = 2\nwidth_px = 30\nheight_px = 40\n";
        let crop = Crop::from_calibration_str(text).unwrap().unwrap();
        assert_eq!(crop.to_array(), [1, 2, 30, 40]);
        assert_eq!(Crop::from_calibration_str("[camera]\n").unwrap(), None);
        let typo = text.replace("height_px = 40", "heigth_px = 40");
        assert!(Crop::from_calibration_str(&typo).is_err());
    }

    #[test]
    fn wrong_buffer_length_is_rejected() {
        let mut out = Vec::new();
        let err = squash_rgb(&[0u8; 10], 640, 480, 64, &mut out).unwrap_err();
        assert!(err.to_string().contains("640x480x3"), "{err}");
    }

    #[test]
    fn corrupt_jpeg_is_a_decode_error() {
        let mut out = Vec::new();
        let err = decode_and_squash(&[0xff, 0xd8, 0xff, 0x00, 0x12], 64, &mut out).unwrap_err();
        assert!(matches!(err, CameraError::Decode(_)), "{err}");
    }
}
