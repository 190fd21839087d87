//! Reader throughput: pickle decoding of a Bridge-sized obs_dict, and TFRecord framing (CRCs)
//! and episode decoding of Bridge-sized RLDS records (38 steps, four 15 kB JPEG cameras).
//!
//! `cargo bench -p bridge-data --bench readers`

use std::hint::black_box;

use std::collections::HashMap;
use std::path::Path;

use bridge_data::pickle::{self, NdArray, Value};
use bridge_data::sources::ReadOptions;
use bridge_data::tfrecord::{self, BytesList, Example, Feature, FeatureKind, Features, FloatList};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// An obs_dict like a 40-step Bridge trajectory's.
fn obs_dict_pickle(steps: usize) -> Vec<u8> {
    let array = |shape: Vec<usize>| {
        let count: usize = shape.iter().product();
        let values: Vec<f64> = (0..count).map(|i| i as f64 * 0.001).collect();
        Value::Array(NdArray::from_f64(shape, &values))
    };
    let entry = |key: &str, value| (Value::Str(key.into()), value);
    let value = Value::Dict(vec![
        entry("state", array(vec![steps, 7])),
        entry("full_state", array(vec![steps, 7])),
        entry("qpos", array(vec![steps, 6])),
        entry("qvel", array(vec![steps, 6])),
        entry("joint_effort", array(vec![steps, 6])),
        entry("eef_transform", array(vec![steps, 4, 4])),
        entry("time_stamp", array(vec![steps])),
    ]);
    pickle::to_vec(&value).expect("plain values pickle")
}

fn pickle_decode(c: &mut Criterion) {
    let bytes = obs_dict_pickle(41);
    let mut group = c.benchmark_group("pickle");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("decode_obs_dict_41_steps", |b| {
        b.iter(|| pickle::from_slice(black_box(&bytes)).expect("decodes"))
    });
    group.finish();
}

/// A serialised RLDS episode: `steps` steps, four cameras of `jpeg_bytes`-sized frames.
fn episode_record(steps: usize, jpeg_bytes: usize) -> Vec<u8> {
    let mut jpeg = vec![0x5au8; jpeg_bytes];
    jpeg[..3].copy_from_slice(&[0xff, 0xd8, 0xff]);
    jpeg[jpeg_bytes - 2..].copy_from_slice(&[0xff, 0xd9]);
    let bytes_feature = |value: Vec<Vec<u8>>| Feature {
        kind: Some(FeatureKind::BytesList(BytesList { value })),
    };
    let floats = |count: usize| Feature {
        kind: Some(FeatureKind::FloatList(FloatList {
            value: (0..count).map(|i| i as f32 * 1e-3).collect(),
        })),
    };
    let mut feature = HashMap::new();
    for camera in 0..4 {
        feature.insert(
            format!("steps/observation/image_{camera}"),
            bytes_feature(vec![jpeg.clone(); steps]),
        );
    }
    feature.insert("steps/observation/state".into(), floats(steps * 7));
    feature.insert("steps/action".into(), floats(steps * 7));
    feature.insert(
        "steps/language_instruction".into(),
        bytes_feature(vec![b"put the spoon in the pot".to_vec(); steps]),
    );
    prost::Message::encode_to_vec(&Example {
        features: Some(Features { feature }),
    })
}

/// A shard of `episodes` framed records.
fn shard(record: &[u8], episodes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..episodes {
        let len = (record.len() as u64).to_le_bytes();
        out.extend_from_slice(&len);
        out.extend_from_slice(&tfrecord::masked_crc32c(&len).to_le_bytes());
        out.extend_from_slice(record);
        out.extend_from_slice(&tfrecord::masked_crc32c(record).to_le_bytes());
    }
    out
}

fn tfrecord_parse(c: &mut Criterion) {
    let record = episode_record(38, 15_000);
    let shard = shard(&record, 8);
    let mut group = c.benchmark_group("tfrecord");
    group.throughput(Throughput::Bytes(shard.len() as u64));
    group.bench_function("frame_and_crc_8_episodes", |b| {
        b.iter(|| {
            tfrecord::records(black_box(&shard))
                .map(|r| r.expect("valid").len())
                .sum::<usize>()
        })
    });
    group.throughput(Throughput::Bytes(record.len() as u64));
    let options = ReadOptions::default();
    group.bench_function("decode_episode_38_steps", |b| {
        b.iter(|| {
            tfrecord::decode_episode(black_box(&record), Path::new("bench"), 0, &options)
                .expect("decodes")
        })
    });
    group.finish();
}

criterion_group!(benches, pickle_decode, tfrecord_parse);
criterion_main!(benches);
