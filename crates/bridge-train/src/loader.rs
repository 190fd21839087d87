//! Background batch loading: sampler threads fill preallocated batch buffers ahead of the
//! trainer, so a training step never waits for its data.
//!
//! Exactness: the batch of step `s` is drawn by a sampler seeded with
//! [`step_seed`]`(seed, s)`, exactly as the synchronous loop does, whichever thread draws it.
//! Workers take step numbers in increasing order (after taking a free buffer), and the
//! consumer reorders what arrives, so [`Loader::next_batch`] yields steps `start, start + 1, ...`
//! with the same contents as [`Sampler::sample`] would, and a resumed run sees the same batches.
//!
//! Memory: `depth` buffers are allocated once and recycled (a free list feeding the workers);
//! the steps in flight never exceed them. At batch 256 a buffer of 128 px frames holds five
//! roles x 256 x 48 KiB = 63 MB, so the depth is kept small.

use std::collections::BTreeMap;
use std::thread::JoinHandle;

use bridge_data::{BatchBuffers, Dataset, Sampler, SamplerConfig, SamplerError};
use crossbeam_channel::{Receiver, Sender};

use crate::fit::step_seed;

/// Why no batch could be had.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error("sampling the batch of step {step}: {source}")]
    Sampler {
        step: u64,
        #[source]
        source: SamplerError,
    },
    #[error("the loader was asked for step {step}, past its last step {end} (exclusive)")]
    Exhausted { step: u64, end: u64 },
    #[error("a loader thread stopped unexpectedly (panicked) before delivering step {step}")]
    WorkerLost { step: u64 },
    #[error("could not start loader thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// How batches are produced.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Sampling settings (batch size included).
    pub sampler: SamplerConfig,
    /// The run seed; step `s` uses `step_seed(seed, s)`.
    pub seed: u64,
    /// Background threads; 0 samples on the caller's thread inside `next_batch`.
    pub threads: usize,
    /// Buffers in circulation (at least `threads + 2`: one per worker, one ready, one held by
    /// the consumer); 0 picks that minimum.
    pub depth: usize,
}

/// Yields the batches of steps `start..end` in order.
pub struct Loader {
    next_step: u64,
    end_step: u64,
    mode: Mode,
}

enum Mode {
    Inline {
        dataset: Dataset,
        sampler: SamplerConfig,
        seed: u64,
        buffers: BatchBuffers,
    },
    Threads(Pool),
}

type Delivery = (u64, Result<BatchBuffers, SamplerError>);

struct Pool {
    /// Buffers back to the workers. Dropping it stops them.
    free: Option<Sender<BatchBuffers>>,
    delivered: Receiver<Delivery>,
    /// Arrived ahead of their turn (an error too waits for its turn, so the first failing
    /// step is the one reported).
    early: BTreeMap<u64, Result<BatchBuffers, SamplerError>>,
    /// The batch last handed out; recycled on the next call.
    current: Option<BatchBuffers>,
    workers: Vec<JoinHandle<()>>,
}

impl Loader {
    /// Starts producing the batches of steps `start..end` of `dataset` (cloned: the frames are
    /// shared, not copied).
    pub fn start(
        dataset: &Dataset,
        config: &LoaderConfig,
        start: u64,
        end: u64,
    ) -> Result<Self, LoaderError> {
        let batch_size = config.sampler.batch_size;
        let mode = if config.threads == 0 {
            Mode::Inline {
                dataset: dataset.clone(),
                sampler: config.sampler.clone(),
                seed: config.seed,
                buffers: BatchBuffers::new(dataset, batch_size),
            }
        } else {
            Mode::Threads(Pool::spawn(dataset, config, start, end)?)
        };
        Ok(Self {
            next_step: start,
            end_step: end,
            mode,
        })
    }

    /// The step whose batch [`Loader::next_batch`] returns next.
    pub fn next_step(&self) -> u64 {
        self.next_step
    }

    /// The batch of the next step; valid until the following call (its buffer is then reused).
    pub fn next_batch(&mut self) -> Result<&BatchBuffers, LoaderError> {
        let step = self.next_step;
        if step >= self.end_step {
            return Err(LoaderError::Exhausted {
                step,
                end: self.end_step,
            });
        }
        self.next_step += 1;
        match &mut self.mode {
            Mode::Inline {
                dataset,
                sampler,
                seed,
                buffers,
            } => {
                sample_step(dataset, sampler, *seed, step, buffers)
                    .map_err(|source| LoaderError::Sampler { step, source })?;
                Ok(buffers)
            }
            Mode::Threads(pool) => pool.take(step),
        }
    }
}

/// The batch of `step`: a fresh sampler seeded for that step (what makes resume exact).
pub fn sample_step(
    dataset: &Dataset,
    sampler: &SamplerConfig,
    seed: u64,
    step: u64,
    buffers: &mut BatchBuffers,
) -> Result<(), SamplerError> {
    Sampler::new(sampler.clone(), step_seed(seed, step))?.sample(dataset, buffers)
}

impl Pool {
    fn spawn(
        dataset: &Dataset,
        config: &LoaderConfig,
        start: u64,
        end: u64,
    ) -> Result<Self, LoaderError> {
        let depth = config.depth.max(config.threads + 2);
        let (free_tx, free_rx) = crossbeam_channel::bounded(depth);
        for _ in 0..depth {
            // Cannot fail: the channel has room for every buffer and its receiver is alive.
            let _ = free_tx.send(BatchBuffers::new(dataset, config.sampler.batch_size));
        }
        // Unbounded, but never holds more than `depth` buffers.
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(start));
        let mut workers = Vec::with_capacity(config.threads);
        for i in 0..config.threads {
            let worker = Worker {
                dataset: dataset.clone(),
                sampler: config.sampler.clone(),
                seed: config.seed,
                end,
                next: next.clone(),
                free: free_rx.clone(),
                done: done_tx.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("batch-loader-{i}"))
                .spawn(move || worker.run())
                .map_err(LoaderError::Spawn)?;
            workers.push(handle);
        }
        Ok(Self {
            free: Some(free_tx),
            delivered: done_rx,
            early: BTreeMap::new(),
            current: None,
            workers,
        })
    }

    fn take(&mut self, step: u64) -> Result<&BatchBuffers, LoaderError> {
        if let (Some(buffer), Some(free)) = (self.current.take(), &self.free) {
            // Fails only once every worker has exited (past the last step): nothing to feed.
            let _ = free.send(buffer);
        }
        let result = loop {
            if let Some(result) = self.early.remove(&step) {
                break result;
            }
            match self.delivered.recv() {
                Ok((s, result)) => {
                    self.early.insert(s, result);
                }
                Err(_) => return Err(LoaderError::WorkerLost { step }),
            }
        };
        let buffer = result.map_err(|source| LoaderError::Sampler { step, source })?;
        Ok(self.current.insert(buffer))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Workers waiting for a buffer see the channel close and return; a worker in the
        // middle of a batch finishes it (its send to `delivered` cannot block: unbounded).
        self.free = None;
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

/// One background sampler.
struct Worker {
    dataset: Dataset,
    sampler: SamplerConfig,
    seed: u64,
    end: u64,
    next: std::sync::Arc<std::sync::atomic::AtomicU64>,
    free: Receiver<BatchBuffers>,
    done: Sender<Delivery>,
}

impl Worker {
    fn run(self) {
        // A buffer first, then a step number: steps are claimed in order and each claimed
        // step already owns a buffer, so the step the consumer waits for is always in progress.
        while let Ok(mut buffer) = self.free.recv() {
            let step = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if step >= self.end {
                return;
            }
            let result = sample_step(&self.dataset, &self.sampler, self.seed, step, &mut buffer)
                .map(|()| buffer);
            let failed = result.is_err();
            if self.done.send((step, result)).is_err() || failed {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_data::Obs;

    fn pixel_dataset() -> Dataset {
        let (rows, side) = (60, 6);
        let obs = Obs::Pixels {
            data: (0..rows * side * side * 3)
                .map(|v| (v * 7 % 251) as u8)
                .collect(),
            height: side,
            width: side,
            channels: 3,
        };
        let actions = (0..rows * 7).map(|v| v as f32).collect();
        Dataset::from_episode_lengths(obs, actions, 7, &[10, 20, 5, 25]).unwrap()
    }

    fn config(threads: usize) -> LoaderConfig {
        LoaderConfig {
            sampler: SamplerConfig {
                batch_size: 16,
                ..SamplerConfig::bridge_pixels()
            },
            seed: 42,
            threads,
            depth: 0,
        }
    }

    #[test]
    fn background_batches_equal_the_synchronous_sampler_in_step_order() {
        let data = pixel_dataset();
        for threads in [0, 1, 3] {
            let cfg = config(threads);
            let mut loader = Loader::start(&data, &cfg, 5, 45).unwrap();
            let mut expected = BatchBuffers::new(&data, 16);
            for step in 5..45 {
                assert_eq!(loader.next_step(), step);
                let got = loader.next_batch().unwrap();
                sample_step(&data, &cfg.sampler, cfg.seed, step, &mut expected).unwrap();
                assert_eq!(got, &expected, "{threads} threads, step {step}");
            }
            let err = loader.next_batch().unwrap_err();
            assert!(
                matches!(err, LoaderError::Exhausted { step: 45, end: 45 }),
                "{err}"
            );
        }
    }

    #[test]
    fn different_steps_give_different_batches_and_drop_stops_workers() {
        let data = pixel_dataset();
        let mut loader = Loader::start(&data, &config(2), 0, 1_000_000).unwrap();
        let first = loader.next_batch().unwrap().clone();
        let second = loader.next_batch().unwrap();
        assert_ne!(&first, second);
        // Dropping with most steps unclaimed must not hang.
        drop(loader);
    }

    #[test]
    fn sampler_errors_name_the_step() {
        let obs = Obs::State {
            data: vec![0.0; 3],
            dim: 1,
        };
        // Single-row episodes only: no transition to sample.
        let data = Dataset::from_episode_lengths(obs, vec![0.0; 3], 1, &[1, 1, 1]).unwrap();
        for threads in [0, 2] {
            let mut loader = Loader::start(&data, &config(threads), 7, 10).unwrap();
            let err = loader.next_batch().unwrap_err();
            assert!(
                matches!(err, LoaderError::Sampler { step: 7, .. }),
                "{threads}: {err}"
            );
        }
    }
}
