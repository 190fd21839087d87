//! The model's view of a frame: the whole frame squashed (aspect ratio not kept, nothing
//! cropped) to a square of `size_px`, as BridgeData V2 policies are trained (widowx.md, "Camera").
//!
//! Training (`bridge-train prepare`) and deployment (`bridge-run`) both call [`squash_rgb`], so
//! the resampling filter is the same on both sides.

use image::imageops::{self, FilterType};
use image::{ImageBuffer, Rgb};

use crate::CameraError;

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
    check_frame(rgb.len(), width_px, height_px)?;
    if size_px == 0 {
        return Err(CameraError::EmptyImage {
            width_px: size_px,
            height_px: size_px,
        });
    }
    out.clear();
    if width_px == size_px && height_px == size_px {
        out.extend_from_slice(rgb);
        return Ok(());
    }
    let view: ImageBuffer<Rgb<u8>, &[u8]> =
        ImageBuffer::from_raw(width_px, height_px, rgb).ok_or(CameraError::FrameSize {
            len: rgb.len(),
            width_px,
            height_px,
            expected: frame_len(width_px, height_px),
        })?;
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
