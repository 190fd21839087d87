//! Random-weight checkpoints, written by the real `mqe` checkpoint code.

use std::path::{Path, PathBuf};

use candle_core::Device;
use mqe::{Agent, CheckpointMeta, ModelConfig, TrainConfig};

/// A small pixel checkpoint (impala-small at 64 px, 32-wide networks, Bridge's 7-d actions,
/// the identity action map) in `dir/checkpoint`; `dataset` names it in its metadata.
pub fn tiny_pixel_checkpoint(dir: &Path, dataset: &str) -> PathBuf {
    let mut model = ModelConfig::pixels(64, 3, 7);
    model.latent_dim = 32;
    model.mlp_hidden = vec![32];
    model.actor_hidden = vec![32];
    model.encoder_dim = 32;
    let train = TrainConfig {
        batch_size: 4,
        ..TrainConfig::pixels()
    };
    let agent = Agent::new(model, train, &Device::Cpu).expect("a valid tiny model");
    let meta = CheckpointMeta {
        dataset: dataset.into(),
        episodes: 0,
        rows: 0,
        input_crop_px: None,
        data_source: mqe::DataSource::Unknown,
    };
    let checkpoint = dir.join("checkpoint");
    agent
        .save_inference(&checkpoint, &meta)
        .expect("writing the checkpoint");
    checkpoint
}
