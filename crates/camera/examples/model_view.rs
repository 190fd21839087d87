//! What the model sees of a camera frame, before and after the station's crop: writes a PNG
//! with the whole frame squashed to the model input (left) and the `[crop]` of a calibration
//! file squashed the same way (right), each enlarged 4x with nearest-neighbour pixels so that
//! single input pixels stay visible. Use it to choose a crop for a new station.
//!
//! ```text
//! cargo run --release -p camera --example model_view -- FRAME.jpg calibration/camera.toml OUT.png [SIZE_PX]
//! ```

use std::path::PathBuf;

use camera::preprocess::{Crop, ModelView};
use image::RgbImage;
use image::imageops::{self, FilterType};

/// Each input pixel becomes a square of this many output pixels.
const ENLARGE: u32 = 4;
/// White space between the two views, px.
const GAP_PX: u32 = 8;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [frame, calibration, out, rest @ ..] = args.as_slice() else {
        return Err("usage: model_view FRAME CALIBRATION.toml OUT.png [SIZE_PX]".into());
    };
    let size_px: u32 = match rest.first() {
        Some(text) => text.parse().map_err(|e| format!("SIZE_PX `{text}`: {e}"))?,
        None => 64,
    };
    let crop = Crop::from_calibration(&PathBuf::from(calibration))?
        .ok_or_else(|| format!("{calibration} has no [crop] table"))?;
    let rgb = image::open(frame)
        .map_err(|e| format!("{frame}: {e}"))?
        .into_rgb8();
    let views = [
        ModelView::from(size_px),
        ModelView {
            size_px,
            crop: Some(crop),
        },
    ];
    let side = size_px * ENLARGE;
    let mut canvas = RgbImage::from_pixel(2 * side + GAP_PX, side, image::Rgb([255, 255, 255]));
    for (i, view) in views.iter().enumerate() {
        let mut input = Vec::new();
        view.apply(rgb.as_raw(), rgb.width(), rgb.height(), &mut input)?;
        let small = RgbImage::from_raw(size_px, size_px, input).ok_or("model input size")?;
        let large = imageops::resize(&small, side, side, FilterType::Nearest);
        imageops::replace(
            &mut canvas,
            &large,
            i64::from(i as u32 * (side + GAP_PX)),
            0,
        );
    }
    canvas.save(out).map_err(|e| format!("{out}: {e}"))?;
    println!(
        "{out}: left the whole {}x{} frame, right the crop {:?}, each as the {size_px}x{size_px} model input",
        rgb.width(),
        rgb.height(),
        crop.to_array()
    );
    Ok(())
}
