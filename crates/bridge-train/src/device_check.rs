//! `bridge-train check-device`: one pixel training step's loss and gradients on the chosen
//! device, against the CPU fast path, parameter by parameter.
//!
//! On a GPU this shows that the portable ops (the code a GPU runs, see `mqe::ops`) give the
//! numbers the tested CPU kernels give. Asked for the CPU, the second pass forces the portable
//! path there, so the same check runs, and can fail, on a machine without a GPU.

use candle_core::{Device, Tensor};
use mqe::{Agent, Batch, ModelConfig, TrainConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::fit::FitError;

/// The comparison of one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRow {
    /// `total loss` or `gradient of <parameter>`.
    pub name: String,
    /// max |device - cpu| / max |cpu|.
    pub rel_diff: f32,
}

/// What `check-device` compares: the pixel model at the published 64 px sizes.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Batch size of the step.
    pub batch_size: usize,
    /// Seed of the parameters and the batch.
    pub seed: u64,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            batch_size: 32,
            seed: 7,
        }
    }
}

/// Loss and every gradient of one pixel step on `device` against the CPU fast path.
pub fn compare_with_cpu(options: CheckOptions, device: &Device) -> Result<Vec<CheckRow>, FitError> {
    let model = ModelConfig::pixels(64, 3, 7);
    let train = TrainConfig {
        batch_size: options.batch_size,
        seed: options.seed,
        ..TrainConfig::pixels()
    };
    let cpu_batch = random_batch(options.batch_size, options.seed, &Device::Cpu)?;
    let reference = loss_and_grads(
        &Agent::new(model.clone(), train.clone(), &Device::Cpu)?,
        &cpu_batch,
    )?;
    let on_device = || -> Result<_, FitError> {
        let batch = random_batch(options.batch_size, options.seed, device)?;
        loss_and_grads(&Agent::new(model.clone(), train.clone(), device)?, &batch)
    };
    let checked = if device.is_cpu() {
        mqe::ops::with_portable_ops(on_device)?
    } else {
        on_device()?
    };
    reference
        .iter()
        .zip(&checked)
        .map(|((name, want), (other, got))| {
            debug_assert_eq!(name, other);
            Ok(CheckRow {
                name: name.clone(),
                rel_diff: mqe::ops::max_relative_difference(got, want)
                    .map_err(mqe::MqeError::from)?,
            })
        })
        .collect()
}

/// `[("total loss", loss), ("gradient of <name>", grad), ...]`.
fn loss_and_grads(agent: &Agent, batch: &Batch) -> Result<Vec<(String, Tensor)>, FitError> {
    let (total, grads) = agent.loss_and_gradients(batch)?;
    let mut out = vec![("total loss".to_string(), total)];
    out.extend(
        grads
            .into_iter()
            .map(|(name, grad)| (format!("gradient of {name}"), grad)),
    );
    Ok(out)
}

/// Camera-like frames: flat coloured blocks on a flat table (ties in every pooling window), and
/// random actions and waypoint offsets.
fn random_batch(b: usize, seed: u64, device: &Device) -> Result<Batch, FitError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let side = 64;
    let mut frames = || -> Result<Tensor, FitError> {
        let mut data = vec![100u8; b * side * side * 3];
        for img in data.chunks_mut(side * side * 3) {
            for _ in 0..4 {
                let (y0, x0) = (rng.random_range(0..56), rng.random_range(0..56));
                let colour: [u8; 3] = rng.random();
                for y in y0..y0 + 8 {
                    for x in x0..x0 + 8 {
                        img[(y * side + x) * 3..][..3].copy_from_slice(&colour);
                    }
                }
            }
        }
        Ok(Tensor::from_vec(data, (b, side, side, 3), device).map_err(mqe::MqeError::from)?)
    };
    let (obs, next_obs, goal, waypoint, actor_goal) =
        (frames()?, frames()?, frames()?, frames()?, frames()?);
    let offsets: Vec<f32> = (0..b).map(|i| (1 + i % 8) as f32).collect();
    let actions: Vec<f32> = (0..b * 7).map(|_| rng.random_range(-1.0..1.0)).collect();
    let tensor = |v: Vec<f32>, shape: &[usize]| -> Result<Tensor, FitError> {
        Ok(Tensor::from_vec(v, shape, device).map_err(mqe::MqeError::from)?)
    };
    Ok(Batch {
        obs,
        next_obs,
        goal,
        waypoint,
        waypoint_offset: tensor(offsets, &[b])?,
        actor_goal,
        action: tensor(actions, &[b, 7])?,
    })
}

/// The comparison as a table, worst first.
pub fn format_table(rows: &[CheckRow]) -> String {
    let mut sorted = rows.to_vec();
    sorted.sort_by(|a, b| b.rel_diff.total_cmp(&a.rel_diff));
    let width = sorted.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut out = format!("{:width$}  max rel diff\n", "tensor");
    for row in &sorted {
        out.push_str(&format!("{:width$}  {:.2e}\n", row.name, row.rel_diff));
    }
    out
}
