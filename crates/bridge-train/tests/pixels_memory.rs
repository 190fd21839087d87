//! Preparing and training on a cache larger than a memory cap: the frames live in the page
//! cache through the memory map, not in the process's anonymous memory. A watcher thread samples
//! `RssAnon` (/proc/self/status) every few milliseconds through `prepare`, the cache open, a
//! sweep of the loader over the whole cache and a short `fit`, and the peak growth must stay
//! under CAP_MB while the cache's frames take more than twice that.
//!
//! (This file holds one test so that nothing else runs in the process while it measures.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bridge_data::SamplerConfig;
use bridge_data::cache::{Cache, CacheSettings};
use bridge_train::bench_data::{rss_anon_kib, synthetic_trajectory};
use bridge_train::config::{DataTraits, Override, RunConfig, resolve};
use bridge_train::data::action_norm_from_bounds;
use bridge_train::fit::{FitOptions, fit};
use bridge_train::loader::{Loader, LoaderConfig};
use bridge_train::prepare::{MemorySource, PrepareOptions, TrajectorySource, prepare};
use candle_core::Device;

/// The configured cap on anonymous memory growth.
const CAP_MB: f64 = 80.0;
/// Frames of 64 x 64 x 3 = 12 KiB: 16 000 of them are 197 MB.
const EPISODES: usize = 500;
const EPISODE_LEN: usize = 32;
const SIZE_PX: usize = 64;

/// Samples RssAnon until stopped; keeps the maximum.
struct Watcher {
    stop: Arc<AtomicBool>,
    peak_kib: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<()>,
}

impl Watcher {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kib = Arc::new(AtomicU64::new(rss_anon_kib().unwrap()));
        let (s, p) = (stop.clone(), peak_kib.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if let Some(kib) = rss_anon_kib() {
                    p.fetch_max(kib, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Self {
            stop,
            peak_kib,
            handle,
        }
    }

    fn peak_kib(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap();
        self.peak_kib.load(Ordering::SeqCst)
    }
}

#[test]
fn a_cache_larger_than_the_cap_is_prepared_and_trained_on_within_it() {
    let baseline_kib = rss_anon_kib().expect("/proc/self/status has RssAnon");
    let watcher = Watcher::start();
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");

    // Sources of 5 trajectories, made on demand: the test holds no copy of the data.
    let per_source = 5;
    let sources: Vec<Arc<dyn TrajectorySource>> = (0..EPISODES / per_source)
        .map(|s| {
            Arc::new(MemorySource::new(
                format!("/synthetic/s{s}"),
                "v1",
                move || {
                    Ok((0..per_source)
                        .map(|e| synthetic_trajectory(s * per_source + e, SIZE_PX, EPISODE_LEN))
                        .collect())
                },
            )) as Arc<dyn TrajectorySource>
        })
        .collect();
    let settings = CacheSettings::whole_frame(SIZE_PX as u32);
    let options = PrepareOptions {
        jobs: 2,
        ..PrepareOptions::new(settings)
    };
    prepare(&sources, &cache_dir, &options).unwrap();

    let cache = Cache::open(&cache_dir).unwrap();
    let cache_mb = cache.frames().len() as f64 / 1e6;
    let split = cache.split(0.05).unwrap();
    // Sweep: 120 batches x 64 elements x 5 roles = 38 400 frame reads over 16 000 frames.
    let sweep = LoaderConfig {
        sampler: SamplerConfig {
            batch_size: 64,
            ..SamplerConfig::bridge_pixels()
        },
        seed: 1,
        threads: 2,
        depth: 0,
    };
    let mut loader = Loader::start(&split.train, &sweep, 0, 120).unwrap();
    let mut checksum = 0u64;
    for _ in 0..120 {
        let batch = loader.next_batch().unwrap();
        checksum += u64::from(batch.pixels().unwrap().obs[0]);
    }
    drop(loader);

    let sets = [
        "steps=4",
        "batch_size=4",
        "latent_dim=16",
        "mrn_components=2",
        "mlp_hidden=[16]",
        "actor_hidden=[16]",
        "encoder_dim=16",
    ];
    let overrides: Vec<Override> = sets.iter().map(|s| s.parse().unwrap()).collect();
    let config = resolve(
        RunConfig::defaults_for(DataTraits::bridge(SIZE_PX)),
        None,
        &overrides,
    )
    .unwrap();
    let fit_options = FitOptions {
        action_norm: Some(action_norm_from_bounds(&split.train_action_bounds).unwrap()),
        loader_threads: 2,
        ..FitOptions::new(dir.path().join("run"), "memory test")
    };
    let outcome = fit(
        &split.train,
        split.val.as_ref(),
        &config,
        &fit_options,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(outcome.agent.step(), 4);

    let peak_kib = watcher.peak_kib();
    let growth_mb = (peak_kib.saturating_sub(baseline_kib)) as f64 * 1024.0 / 1e6;
    println!(
        "cache frames {cache_mb:.0} MB; RssAnon baseline {:.1} MB, peak {:.1} MB, growth {growth_mb:.1} MB (cap {CAP_MB} MB); checksum {checksum}",
        baseline_kib as f64 * 1024.0 / 1e6,
        peak_kib as f64 * 1024.0 / 1e6
    );
    assert!(
        cache_mb > 2.0 * CAP_MB,
        "the cache ({cache_mb:.0} MB) must exceed the cap"
    );
    assert!(
        growth_mb < CAP_MB,
        "anonymous memory grew by {growth_mb:.1} MB, over the {CAP_MB} MB cap"
    );
}
