//! Train-step and inference latency at the published configurations.
//!
//! `cargo bench -p mqe --bench train_step`

use std::hint::black_box;
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use mqe::{Agent, Batch, ModelConfig, TrainConfig};

fn state_batch(b: usize, dim: usize, action_dim: usize, dev: &Device) -> Batch {
    let obs = || Tensor::randn(0f32, 1.0, (b, dim), dev).unwrap();
    Batch {
        obs: obs(),
        next_obs: obs(),
        goal: obs(),
        waypoint: obs(),
        waypoint_offset: Tensor::ones(b, DType::F32, dev).unwrap(),
        actor_goal: obs(),
        action: Tensor::rand(-1f32, 1.0, (b, action_dim), dev).unwrap(),
    }
}

fn image(b: usize, size: usize, dev: &Device) -> Tensor {
    Tensor::rand(0f32, 255.0, (b, size, size, 3), dev)
        .unwrap()
        .to_dtype(DType::U8)
        .unwrap()
}

fn pixel_batch(b: usize, size: usize, action_dim: usize, dev: &Device) -> Batch {
    Batch {
        obs: image(b, size, dev),
        next_obs: image(b, size, dev),
        goal: image(b, size, dev),
        waypoint: image(b, size, dev),
        waypoint_offset: Tensor::ones(b, DType::F32, dev).unwrap(),
        actor_goal: image(b, size, dev),
        action: Tensor::rand(-1f32, 1.0, (b, action_dim), dev).unwrap(),
    }
}

fn bench(c: &mut Criterion) {
    let dev = Device::Cpu;
    let mut group = c.benchmark_group("mqe");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));

    let train = TrainConfig::default();
    let mut agent = Agent::new(ModelConfig::state(2, 2), train, &dev).unwrap();
    let batch = state_batch(256, 2, 2, &dev);
    group.bench_function("train_step_state_b256", |bch| {
        bch.iter(|| black_box(agent.train_step(&batch).unwrap()))
    });

    let train = TrainConfig {
        batch_size: 64,
        ..TrainConfig::pixels()
    };
    let mut agent = Agent::new(ModelConfig::pixels(64, 3, 7), train, &dev).unwrap();
    let batch = pixel_batch(64, 64, 7, &dev);
    group.bench_function("train_step_pixels64_b64", |bch| {
        bch.iter(|| black_box(agent.train_step(&batch).unwrap()))
    });
    let obs = image(1, 64, &dev);
    let goal = image(1, 64, &dev);
    group.bench_function("act_pixels64_b1", |bch| {
        bch.iter(|| black_box(agent.act(&obs, &goal).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
