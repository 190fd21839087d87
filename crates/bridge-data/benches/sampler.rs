//! Sample + gather throughput at batch 256: state data, and 64x64x3 pixels with the random crop.
//! Run with `cargo bench -p bridge-data --bench sampler`; batches/s = 1 / reported time.

use std::hint::black_box;

use bridge_data::{Dataset, Obs, Sampler, SamplerConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// 1000 episodes of 201 rows with 2-d states and actions (the pointmaze stitch shape).
fn state_dataset() -> Dataset {
    let (episodes, len, dim) = (1000, 201, 2);
    let rows = episodes * len;
    let obs = Obs::State {
        data: (0..rows * dim).map(|v| (v % 97) as f32).collect(),
        dim,
    };
    let actions = (0..rows * 2).map(|v| (v % 13) as f32 / 13.0).collect();
    Dataset::from_episode_lengths(obs, actions, 2, &vec![len; episodes])
        .expect("valid synthetic data")
}

/// 200 episodes of 36 frames of 64x64x3 (the Bridge trajectory length), 88 MB.
fn pixel_dataset() -> Dataset {
    let (episodes, len, side) = (200, 36, 64);
    let rows = episodes * len;
    let obs = Obs::Pixels {
        data: (0..rows * side * side * 3)
            .map(|v| (v % 251) as u8)
            .collect(),
        height: side,
        width: side,
        channels: 3,
    };
    let actions = vec![0.5; rows * 7];
    Dataset::from_episode_lengths(obs, actions, 7, &vec![len; episodes])
        .expect("valid synthetic data")
}

fn bench_sampler(c: &mut Criterion) {
    let mut group = c.benchmark_group("sample_gather_b256");
    group.throughput(Throughput::Elements(1)); // one batch per iteration: elements/s = batches/s

    let states = state_dataset();
    let mut sampler = Sampler::new(SamplerConfig::ogbench_stitch(), 0).expect("valid config");
    let mut batch = sampler.buffers(&states);
    group.bench_function("state_2d", |b| {
        b.iter(|| {
            sampler.sample(&states, &mut batch).expect("sample");
            black_box(batch.actions()[0]);
        })
    });

    let pixels = pixel_dataset();
    let config = SamplerConfig {
        crop_prob: 1.0,
        ..SamplerConfig::bridge_pixels()
    };
    let mut sampler = Sampler::new(config, 0).expect("valid config");
    let mut batch = sampler.buffers(&pixels);
    group.bench_function("pixels_64x64x3_crop", |b| {
        b.iter(|| {
            sampler.sample(&pixels, &mut batch).expect("sample");
            black_box(batch.actions()[0]);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_sampler);
criterion_main!(benches);
