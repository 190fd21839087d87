//! Is a pixel checkpoint's critic still looking at the image? For each of phi's and psi's image
//! encoders, the share of units after the final ReLU that are positive for at least one of the
//! given frames (`mqe::Agent::critic_encoder_liveness`). 0 means that encoder has died: its
//! output is the same for every image, and no gradient can revive it.
//!
//! ```text
//! cargo run --release -p bridge-train --example encoder_liveness -- CHECKPOINT FRAME.png...
//! ```
//!
//! Frames are camera frames (any size); each is cropped and squashed as the checkpoint's
//! training data were (`data.input_crop_px`), as `bridge-run` does.

use anyhow::{Context, Result, bail};
use camera::preprocess::{Crop, ModelView};
use candle_core::{Device, Tensor};
use mqe::{Agent, CheckpointConfig, ObsKind};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [checkpoint, frames @ ..] = args.as_slice() else {
        bail!("usage: encoder_liveness CHECKPOINT FRAME.png...");
    };
    if frames.is_empty() {
        bail!("usage: encoder_liveness CHECKPOINT FRAME.png...");
    }
    let dir = std::path::Path::new(checkpoint);
    let config = CheckpointConfig::read(dir).with_context(|| format!("reading {checkpoint}"))?;
    let ObsKind::Pixels { size_px, channels } = config.model.obs else {
        bail!("{checkpoint} is a state checkpoint: it has no image encoders");
    };
    let crop = config
        .data
        .input_crop_px
        .map(Crop::from_array)
        .transpose()?;
    let view = ModelView {
        size_px: size_px as u32,
        crop,
    };
    let mut pixels = Vec::new();
    for frame in frames {
        let rgb = image::open(frame)
            .with_context(|| format!("reading {frame}"))?
            .into_rgb8();
        let mut input = Vec::new();
        view.apply(rgb.as_raw(), rgb.width(), rgb.height(), &mut input)?;
        pixels.extend(input);
    }
    let obs = Tensor::from_vec(
        pixels,
        (frames.len(), size_px, size_px, channels),
        &Device::Cpu,
    )?;
    let agent = Agent::load(dir, &Device::Cpu)?;
    match agent.critic_encoder_liveness(&obs)? {
        Some((phi, psi)) => println!(
            "{checkpoint} (step {}), {} frames: live units phi encoder {:.1}%, psi encoder {:.1}%{}",
            config.step,
            frames.len(),
            100.0 * phi,
            100.0 * psi,
            if config.model.shared_critic_encoder {
                " (one shared encoder)"
            } else {
                ""
            }
        ),
        None => println!("{checkpoint} has no critic image encoders (GCBC)"),
    }
    Ok(())
}
