//! `bridge-run bench`: runs episodes back to back for a while and reports the control-loop
//! period, the frame-to-command latency and the inference time (p50 / p99 / max).

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
