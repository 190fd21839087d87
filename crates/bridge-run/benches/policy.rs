//! Batch-1 latency of one policy step (`MqePolicy::act`: upload the observation, actor, critic
//! distance, download, denormalise) at the published widths, with random weights.
//!
//! Also the critic's distance with the goal encoded every step (`Agent::distance`) against the
//! goal latent cached once per goal (`Agent::distance_to_latent`, what `MqePolicy` does).
//!
//! `cargo bench -p bridge-run --bench policy` (CPU); with `--features cuda` it runs on the GPU
//! when one is present.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use bridge_run::policy::{GoalImage, MqePolicy, Policy};
use candle_core::{Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use mqe::{Agent, CheckpointMeta, EncoderKind, ModelConfig, TrainConfig};

fn device() -> Device {
    mqe::select_device(mqe::DeviceChoice::Auto)
        .map(|s| s.device)
        .unwrap_or(Device::Cpu)
}

fn policy(dir: &Path, size_px: u32, encoder: EncoderKind, dev: &Device) -> MqePolicy {
    let mut model = ModelConfig::pixels(size_px as usize, 3, 7);
    model.encoder = encoder;
    let agent = Agent::new(model, TrainConfig::bridge(), &Device::Cpu).unwrap();
    agent
        .save_inference(dir, &CheckpointMeta::default())
        .unwrap();
    MqePolicy::load(dir, dev).unwrap()
}

fn image(size_px: u32, seed: u32) -> Vec<u8> {
    (0..size_px * size_px * 3)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed) >> 11) as u8)
        .collect()
}

fn bench(c: &mut Criterion) {
    let dev = device();
    let mut group = c.benchmark_group(format!(
        "policy_act_{}",
        if dev.is_cuda() { "cuda" } else { "cpu" }
    ));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    for (name, size_px, encoder) in [
        ("impala-small_64", 64, EncoderKind::ImpalaSmall),
        ("impala_128", 128, EncoderKind::Impala),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = policy(dir.path(), size_px, encoder, &dev);
        let goal = GoalImage::from_rgb(
            Path::new("bench"),
            &image(size_px, 1),
            size_px,
            size_px,
            size_px,
        )
        .unwrap();
        policy.set_goal(&goal).unwrap();
        let obs = image(size_px, 2);
        group.bench_function(name, |b| {
            b.iter(|| black_box(policy.act(black_box(&obs)).unwrap()))
        });
        let side = size_px as usize;
        let tensor = |rgb: &[u8]| Tensor::from_slice(rgb, (1, side, side, 3), &dev).unwrap();
        let (obs_t, goal_t) = (tensor(&obs), tensor(&goal.model_rgb));
        let agent = policy.agent();
        let latent = agent.goal_latent(&goal_t).unwrap();
        group.bench_function(format!("{name}_distance_goal_encoded"), |b| {
            b.iter(|| black_box(agent.distance(&obs_t, &goal_t).unwrap()))
        });
        group.bench_function(format!("{name}_distance_goal_cached"), |b| {
            b.iter(|| black_box(agent.distance_to_latent(&obs_t, &latent).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
