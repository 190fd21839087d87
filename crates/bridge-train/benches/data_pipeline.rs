//! The data pipeline's pieces, one frame or one batch at a time: JPEG decode alone, decode +
//! squash to 128 px (what `prepare` does per frame, on one core), and the background loader's
//! batches at 256 from a memory-mapped 64 px cache. `bridge-train bench-data` measures the whole
//! pipeline against the trainer.
//! Run with `cargo bench -p bridge-train --bench data_pipeline`.

use std::hint::black_box;
use std::sync::Arc;

use bridge_data::SamplerConfig;
use bridge_data::cache::{Cache, CacheSettings};
use bridge_train::bench_data::{synthetic_jpeg, synthetic_trajectory};
use bridge_train::loader::{Loader, LoaderConfig};
use bridge_train::prepare::{MemorySource, PrepareOptions, TrajectorySource, prepare};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench_frames(c: &mut Criterion) {
    let jpeg = synthetic_jpeg(1, 640, 480).expect("encodes");
    let mut group = c.benchmark_group("frame_640x480_jpeg");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode", |b| {
        b.iter(|| black_box(image::load_from_memory(&jpeg).expect("decodes").width()))
    });
    let mut out = Vec::new();
    group.bench_function("decode_and_squash_to_128", |b| {
        b.iter(|| {
            camera::preprocess::decode_and_squash(&jpeg, 128, &mut out).expect("squashes");
            black_box(out[0]);
        })
    });
    group.finish();
}

fn bench_loader(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sources: Vec<Arc<dyn TrajectorySource>> = (0..10)
        .map(|s| {
            Arc::new(MemorySource::new(format!("/bench/s{s}"), "v1", move || {
                Ok((0..20)
                    .map(|e| synthetic_trajectory(s * 20 + e, 64, 36))
                    .collect())
            })) as Arc<dyn TrajectorySource>
        })
        .collect();
    let settings = CacheSettings::whole_frame(64);
    prepare(&sources, dir.path(), &PrepareOptions::new(settings)).expect("prepares");
    let cache = Cache::open(dir.path()).expect("opens");
    let data = cache.dataset().expect("dataset");
    let config = LoaderConfig {
        sampler: SamplerConfig::bridge_pixels(),
        seed: 0,
        threads: 2,
        depth: 0,
    };
    let mut loader = Loader::start(&data, &config, 0, u64::MAX).expect("starts");
    let mut group = c.benchmark_group("loader_b256");
    group.throughput(Throughput::Elements(1)); // elements/s = batches/s
    group.bench_function("mapped_64px_2_threads", |b| {
        b.iter(|| black_box(loader.next_batch().expect("batch").actions()[0]))
    });
    group.finish();
}

criterion_group!(benches, bench_frames, bench_loader);
criterion_main!(benches);
