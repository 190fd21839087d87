//! `bridge-run bench`: runs episodes back to back for a while and reports the control-loop
//! period, the frame-to-command latency and the inference time (p50 / p99 / max); [`Round`]s
//! repeat that quiet and beside a CPU-loading neighbour, with and without real-time priority,
//! and [`rounds_table`] sets them side by side.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::RunError;
use crate::policy::GoalImage;
use crate::runtime::Runtime;
use crate::stats::{LatencyRow, latency_table};

/// What a bench run measured.
#[derive(Debug, Clone)]
pub struct BenchResult {
    pub seconds: f64,
    pub episodes: usize,
    pub steps: usize,
    pub control_period_s: Vec<f64>,
    pub frame_to_command_s: Vec<f64>,
    pub inference_s: Vec<f64>,
    /// Safety events seen (a healthy bench has none but clipped steps).
    pub safety_events: Vec<String>,
}

impl BenchResult {
    /// The latency rows.
    pub fn rows(&self) -> Vec<LatencyRow> {
        vec![
            LatencyRow::of("control-loop period", &self.control_period_s),
            LatencyRow::of("frame-to-command latency", &self.frame_to_command_s),
            LatencyRow::of("inference", &self.inference_s),
        ]
    }

    /// The printed table.
    pub fn table(&self) -> String {
        latency_table(&self.rows())
    }
}

/// One bench setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// A CPU-loading neighbour runs beside the runtime.
    pub loaded: bool,
    /// The control thread asks for SCHED_FIFO and locked memory.
    pub realtime: bool,
}

impl Round {
    /// Quiet and loaded, each without and with real-time priority.
    pub const ALL: [Round; 4] = [
        Round {
            loaded: false,
            realtime: false,
        },
        Round {
            loaded: false,
            realtime: true,
        },
        Round {
            loaded: true,
            realtime: false,
        },
        Round {
            loaded: true,
            realtime: true,
        },
    ];

    /// "quiet, normal priority" and so on.
    pub fn name(&self) -> String {
        format!(
            "{}, {}",
            if self.loaded { "loaded" } else { "quiet" },
            if self.realtime {
                "SCHED_FIFO"
            } else {
                "normal priority"
            }
        )
    }
}

/// Threads that keep every core busy with arithmetic (no allocation, no I/O) until dropped:
/// the neighbour a loaded bench round runs beside.
pub struct CpuLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl CpuLoad {
    /// One busy thread per core, at normal priority.
    pub fn start() -> CpuLoad {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..cores)
            .filter_map(|i| {
                let stop = Arc::clone(&stop);
                std::thread::Builder::new()
                    .name(format!("bench-load-{i}"))
                    .spawn(move || {
                        let mut x = 1.0f64 + i as f64;
                        while !stop.load(Ordering::Relaxed) {
                            for _ in 0..10_000 {
                                x = (x * 1.000_001).sqrt() + 0.5;
                            }
                            std::hint::black_box(x);
                        }
                    })
                    .ok()
            })
            .collect();
        CpuLoad { stop, threads }
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The rounds side by side, milliseconds: control period p50 / p99 / max, the period's jitter
/// (its distance from `nominal_period_s`) at p99, frame-to-command p50 / p99, inference p50.
/// `notes[i]` follows round i's name (for example why real-time priority was refused).
pub fn rounds_table(
    rounds: &[(Round, BenchResult)],
    notes: &[String],
    nominal_period_s: f64,
) -> String {
    let ms = |samples: &[f64], q: f64| {
        bridge_data::stats::quantile_of(samples, q)
            .map_or_else(|| "-".to_string(), |s| format!("{:.2}", s * 1e3))
    };
    let mut out = format!(
        "{:<34} {:>8} {:>8} {:>8} {:>10} {:>9} {:>9} {:>9}\n",
        "round", "period", "p99", "max", "jitter p99", "f2c p50", "f2c p99", "infer p50"
    );
    for (i, (round, result)) in rounds.iter().enumerate() {
        let jitter: Vec<f64> = result
            .control_period_s
            .iter()
            .map(|p| (p - nominal_period_s).abs())
            .collect();
        let mut name = round.name();
        if let Some(note) = notes.get(i).filter(|n| !n.is_empty()) {
            name.push_str(&format!(" ({note})"));
        }
        out.push_str(&format!(
            "{:<34} {:>8} {:>8} {:>8} {:>10} {:>9} {:>9} {:>9}\n",
            name,
            ms(&result.control_period_s, 0.5),
            ms(&result.control_period_s, 0.99),
            ms(&result.control_period_s, 1.0),
            ms(&jitter, 0.99),
            ms(&result.frame_to_command_s, 0.5),
            ms(&result.frame_to_command_s, 0.99),
            ms(&result.inference_s, 0.5),
        ));
    }
    out.push_str("(milliseconds; period p50 first; f2c: frame-to-command latency)\n");
    out
}

/// Runs episodes toward `goal` until `duration` has passed (the last one is cut to fit).
pub fn run(
    runtime: &mut Runtime,
    goal: &GoalImage,
    duration: Duration,
) -> Result<BenchResult, RunError> {
    let started = Instant::now();
    let period_s = runtime.config().policy.policy_period_s;
    let mut result = BenchResult {
        seconds: 0.0,
        episodes: 0,
        steps: 0,
        control_period_s: Vec::new(),
        frame_to_command_s: Vec::new(),
        inference_s: Vec::new(),
        safety_events: Vec::new(),
    };
    while started.elapsed() < duration {
        let left_s = (duration - started.elapsed()).as_secs_f64();
        let max_steps = ((left_s / period_s).floor() as usize).max(1);
        let report = runtime.run_episode(goal, max_steps)?;
        result.episodes += 1;
        result.steps += report.steps;
        result.control_period_s.extend(&report.control_period_s);
        result.frame_to_command_s.extend(&report.frame_to_command_s);
        result.inference_s.extend(&report.inference_s);
        result
            .safety_events
            .extend(report.safety_events.iter().cloned());
        if report.fault.is_some() || report.end.is_none() || report.quit_requested() {
            break;
        }
    }
    result.seconds = started.elapsed().as_secs_f64();
    Ok(result)
}
