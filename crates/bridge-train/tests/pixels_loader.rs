//! The background loader on a memory-mapped cache gives, step for step, the batches of the
//! synchronous sampler on an in-memory copy of the same data (same step seeds), crop
//! augmentation included; and a validation split never leaks into training batches.

use std::sync::Arc;

use bridge_data::cache::{Cache, CacheSettings};
use bridge_data::{BatchBuffers, Dataset, Obs, SamplerConfig};
use bridge_train::bench_data::synthetic_trajectory;
use bridge_train::loader::{Loader, LoaderConfig, sample_step};
use bridge_train::prepare::{MemorySource, PrepareOptions, TrajectorySource, prepare};

fn cache(dir: &std::path::Path) -> Cache {
    let sources: Vec<Arc<dyn TrajectorySource>> = (0..6)
        .map(|s| {
            Arc::new(MemorySource::new(
                format!("/synthetic/s{s}"),
                "v1",
                move || {
                    Ok((0..5)
                        .map(|e| synthetic_trajectory(s * 5 + e, 12, 9))
                        .collect())
                },
            )) as Arc<dyn TrajectorySource>
        })
        .collect();
    let settings = CacheSettings::whole_frame(12);
    prepare(&sources, dir, &PrepareOptions::new(settings)).unwrap();
    Cache::open(dir).unwrap()
}

/// The same dataset with its frames copied into an owned buffer.
fn owned_copy(data: &Dataset) -> Dataset {
    let Obs::Pixels {
        data: frames,
        height,
        width,
        channels,
    } = data.obs()
    else {
        panic!("pixels expected")
    };
    let obs = Obs::Pixels {
        data: frames.to_vec().into(),
        height: *height,
        width: *width,
        channels: *channels,
    };
    let lengths: Vec<usize> = data
        .episode_starts()
        .iter()
        .zip(data.episode_ends())
        .map(|(&s, &e)| (e - s + 1) as usize)
        .collect();
    Dataset::from_episode_lengths(obs, data.actions().to_vec(), data.action_dim(), &lengths)
        .unwrap()
}

#[test]
fn loader_on_the_mapped_cache_equals_the_synchronous_sampler() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path());
    let mapped = cache.dataset().unwrap();
    let owned = owned_copy(&mapped);
    let sampler = SamplerConfig {
        batch_size: 32,
        crop_prob: 0.7,
        ..SamplerConfig::bridge_pixels()
    };
    let config = LoaderConfig {
        sampler: sampler.clone(),
        seed: 17,
        threads: 3,
        depth: 0,
    };
    let mut loader = Loader::start(&mapped, &config, 100, 130).unwrap();
    let mut expected = BatchBuffers::new(&owned, 32);
    let mut cropped = 0;
    for step in 100..130 {
        let got = loader.next_batch().unwrap();
        sample_step(&owned, &sampler, 17, step, &mut expected).unwrap();
        assert_eq!(got, &expected, "step {step}");
        cropped += usize::from(got.crop_offsets().is_some());
    }
    assert!(
        cropped > 10 && cropped < 30,
        "the crop is drawn per batch: {cropped} of 30"
    );
}

#[test]
fn training_batches_never_touch_validation_trajectories() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path());
    let split = cache.split(0.3).unwrap();
    let val = split.val.unwrap();
    let val_rows: Vec<u32> = val
        .episode_starts()
        .iter()
        .zip(val.episode_ends())
        .flat_map(|(&s, &e)| s..=e)
        .collect();
    assert!(!val_rows.is_empty());
    let sampler = SamplerConfig {
        batch_size: 64,
        random_goal_share: 0.5,
        ..SamplerConfig::bridge_pixels()
    };
    let config = LoaderConfig {
        sampler,
        seed: 3,
        threads: 2,
        depth: 0,
    };
    let mut loader = Loader::start(&split.train, &config, 0, 20).unwrap();
    for _ in 0..20 {
        let idx = loader.next_batch().unwrap().indices().clone();
        for rows in [&idx.t, &idx.next, &idx.goal, &idx.waypoint, &idx.actor_goal] {
            assert!(rows.iter().all(|r| !val_rows.contains(r)), "{rows:?}");
        }
    }
}
