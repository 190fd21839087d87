//! `bridge-train bench`: training seconds per step, actor latency and sampler throughput on
//! random in-memory data, at the published sizes (the numbers the JAX implementation is compared
//! with: 0.47-0.70 s/step state, 2.2-2.6 s/step pixels, 3.2 ms pixel act at batch 1).

use std::time::Instant;

use bridge_data::{BatchBuffers, Sampler};
use bridge_data::{Dataset, Obs};
use candle_core::{Device, Tensor};
use mqe::{ActionNorm, Agent, Batch, ModelConfig, TrainConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::{BatchConverter, sampler_config};
use crate::fit::FitError;

/// What to measure.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// Timed training steps per configuration (after one warm-up step).
    pub train_steps: usize,
    /// Timed actor queries per configuration (after a few warm-up queries).
    pub act_queries: usize,
    /// Timed sampler batches per configuration.
    pub sampler_batches: usize,
    /// Also measure the pixel configuration (slow on a CPU).
    pub pixels: bool,
    /// Batch size of the pixel configuration (64 here; 256 is the published size, for a GPU).
    pub pixel_batch: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            train_steps: 5,
            act_queries: 200,
            sampler_batches: 200,
            pixels: true,
            pixel_batch: 64,
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    /// What was measured.
    pub name: String,
    /// Median.
    pub p50: f64,
    /// 99th percentile (the maximum for few samples).
    pub p99: f64,
    /// Unit of `p50` and `p99`.
    pub unit: &'static str,
    /// Samples behind the figures.
    pub samples: usize,
}

/// Shape of one benchmark configuration.
struct Setup {
    label: &'static str,
    model: ModelConfig,
    train: TrainConfig,
    data: Dataset,
}

fn state_setup() -> Result<Setup, FitError> {
    let mut rng = StdRng::seed_from_u64(1);
    // OGBench pointmaze scale: 2-d states, 1000-step episodes.
    let rows = 200 * 1000;
    let obs = Obs::State {
        data: (0..rows * 2).map(|_| rng.random_range(0.0..20.0)).collect(),
        dim: 2,
    };
    let actions = (0..rows * 2).map(|_| rng.random_range(-1.0..1.0)).collect();
    Ok(Setup {
        label: "state (obs 2, action 2, batch 256)",
        model: ModelConfig::state(2, 2),
        train: TrainConfig::default(),
        data: random_dataset(obs, actions, 2, 1000)?,
    })
}

fn pixel_setup(batch_size: usize) -> Result<Setup, FitError> {
    let mut rng = StdRng::seed_from_u64(2);
    let frames = 40 * 50;
    let obs = Obs::Pixels {
        data: (0..frames * 64 * 64 * 3).map(|_| rng.random()).collect(),
        height: 64,
        width: 64,
        channels: 3,
    };
    let actions = (0..frames * 7)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    Ok(Setup {
        label: pixel_label(batch_size),
        model: ModelConfig::pixels(64, 3, 7),
        train: TrainConfig {
            batch_size,
            ..TrainConfig::pixels()
        },
        data: random_dataset(obs, actions, 7, 50)?,
    })
}

/// Row labels are static: the two batch sizes in use have their own, others a generic one.
fn pixel_label(batch_size: usize) -> &'static str {
    match batch_size {
        64 => "pixels (64x64x3, impala-small x3, action 7, batch 64)",
        256 => "pixels (64x64x3, impala-small x3, action 7, batch 256)",
        _ => "pixels (64x64x3, impala-small x3, action 7, --pixel-batch)",
    }
}

fn random_dataset(
    obs: Obs,
    actions: Vec<f32>,
    action_dim: usize,
    episode_len: usize,
) -> Result<Dataset, FitError> {
    let rows = actions.len() / action_dim;
    let lengths = vec![episode_len; rows / episode_len];
    Ok(Dataset::from_episode_lengths(
        obs, actions, action_dim, &lengths,
    )?)
}

/// Runs the benchmarks; rows in table order.
pub fn run(options: BenchOptions, device: &Device) -> Result<Vec<BenchRow>, FitError> {
    let mut setups = vec![state_setup()?];
    if options.pixels {
        setups.push(pixel_setup(options.pixel_batch)?);
    }
    let mut rows = Vec::new();
    for setup in &setups {
        let (sampler_row, batch) = bench_sampler(setup, options.sampler_batches, device)?;
        let mut agent = Agent::new(setup.model.clone(), setup.train.clone(), device)?;
        rows.push(bench_train(setup, &mut agent, &batch, options.train_steps)?);
        rows.push(bench_act(setup, &agent, &batch, options.act_queries)?);
        rows.push(sampler_row);
    }
    Ok(rows)
}

fn bench_sampler(
    setup: &Setup,
    batches: usize,
    device: &Device,
) -> Result<(BenchRow, Batch), FitError> {
    let mut sampler = Sampler::new(sampler_config(&setup.train), 0)?;
    let mut buffers: BatchBuffers = sampler.buffers(&setup.data);
    let mut converter = BatchConverter::new(device, ActionNorm::identity(setup.model.action_dim));
    let mut times = Vec::with_capacity(batches);
    let mut sample = || -> Result<Batch, FitError> {
        let start = Instant::now();
        sampler.sample(&setup.data, &mut buffers)?;
        let batch = converter.convert(&buffers)?;
        times.push(start.elapsed().as_secs_f64());
        Ok(batch)
    };
    let mut batch = sample()?;
    for _ in 1..batches {
        batch = sample()?;
    }
    let times_ms: Vec<f64> = times.iter().map(|t| t * 1e3).collect();
    let row = summarise(
        format!("sampler + to tensors, {}", setup.label),
        times_ms,
        "ms/batch",
    );
    Ok((row, batch))
}

fn bench_train(
    setup: &Setup,
    agent: &mut Agent,
    batch: &Batch,
    steps: usize,
) -> Result<BenchRow, FitError> {
    agent.train_step(batch)?;
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps.max(1) {
        let start = Instant::now();
        agent.train_step(batch)?;
        sync(agent.device())?;
        times.push(start.elapsed().as_secs_f64());
    }
    Ok(summarise(
        format!("train step, {}", setup.label),
        times,
        "s/step",
    ))
}

fn bench_act(
    setup: &Setup,
    agent: &Agent,
    batch: &Batch,
    queries: usize,
) -> Result<BenchRow, FitError> {
    let obs = batch.obs.narrow(0, 0, 1).map_err(mqe::MqeError::from)?;
    let goal = batch.goal.narrow(0, 0, 1).map_err(mqe::MqeError::from)?;
    let act_once = || -> Result<(), FitError> {
        let action: Tensor = agent.act(&obs, &goal)?;
        // Reading the values back is part of a real query.
        action
            .flatten_all()
            .and_then(|a| a.to_vec1::<f32>())
            .map_err(mqe::MqeError::from)?;
        Ok(())
    };
    for _ in 0..5 {
        act_once()?;
    }
    let mut times = Vec::with_capacity(queries);
    for _ in 0..queries.max(1) {
        let start = Instant::now();
        act_once()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let label = setup.label.split(" (").next().unwrap_or(setup.label);
    Ok(summarise(format!("actor at batch 1, {label}"), times, "ms"))
}

fn sync(device: &Device) -> Result<(), FitError> {
    device.synchronize().map_err(mqe::MqeError::from)?;
    Ok(())
}

fn summarise(name: String, mut samples: Vec<f64>, unit: &'static str) -> BenchRow {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((samples.len() - 1) as f64 * q).round() as usize;
        samples[i.min(samples.len() - 1)]
    };
    BenchRow {
        name,
        p50: at(0.5),
        p99: at(0.99),
        unit,
        samples: samples.len(),
    }
}

/// Sampler throughput in batches per second, from the median time per batch of each sampler
/// row: `(name, batches_per_s)`.
pub fn sampler_rates(rows: &[BenchRow]) -> Vec<(String, f64)> {
    rows.iter()
        .filter(|r| r.unit == "ms/batch")
        .map(|r| (r.name.clone(), 1e3 / r.p50.max(1e-9)))
        .collect()
}

/// The rows as an aligned text table.
pub fn format_table(rows: &[BenchRow]) -> String {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut out = format!(
        "{:<width$}  {:>12}  {:>12}  {:<9}  {:>7}\n",
        "measure", "p50", "p99", "unit", "samples"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<width$}  {:>12.4}  {:>12.4}  {:<9}  {:>7}\n",
            r.name, r.p50, r.p99, r.unit, r.samples
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_picks_median_and_tail() {
        let row = summarise("x".into(), (1..=100).map(f64::from).collect(), "ms");
        assert_eq!((row.p50, row.p99, row.samples), (51.0, 99.0, 100));
        assert!(format_table(&[row]).contains("ms"));
    }
}
