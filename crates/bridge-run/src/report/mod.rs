//! The run report of one episode: what the policy saw and did, readable without any tool.
//!
//! [`write_report`] writes into a directory:
//! - `animation.gif`: goal | observation side by side at the camera's resolution (the model's
//!   input, enlarged, where no camera frame was kept), one frame per policy step played at the
//!   Bridge rate of 5 Hz, with the step, the learned distance and the time above, and the events
//!   since the previous step (mode changes, operator keys, faults) below; a last frame says how
//!   the episode ended (an episode without any step gets that frame only);
//! - `distance.png`: the learned distance to the goal per policy step, with the mode changes and
//!   safety events marked and listed;
//! - `latency.png`: histograms of inference time, frame-to-command latency and control period,
//!   with a logarithmic count axis and p50 / p99 / max marked, so a rare slow sample shows;
//! - `events.txt`: one line per event;
//! - `summary.json`: how it ended, what it ran with, counts and percentiles ([`ReportSummary`]).
//!
//! The plots are drawn with the `image` crate and a built-in 5x7 pixel font, so no plotting
//! library or system font is needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bridge_data::stats::quantile;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::messages::TimedEvent;
use crate::record::RunRecord;

mod draw;
use draw::{plot_distance, plot_latencies, write_animation};

/// Side of each view in the animation when no camera frame is known (the model's input,
/// enlarged).
pub const VIEW_PX: u32 = 256;
/// Display time of one frame: one policy step at 5 Hz.
pub const FRAME_DELAY_MS: u32 = 200;
/// Display time of the last frame (how the episode ended).
pub const ENDING_DELAY_MS: u32 = 3000;

/// Width and height of every animation frame for views of `view_px` (width, height): two views
/// side by side, a caption strip above and an event strip below.
pub fn animation_size_px(view_px: (u32, u32)) -> (u32, u32) {
    let layout = draw::Layout::for_view(view_px);
    (layout.width_px(), layout.height_px())
}

/// Everything recorded about one episode that the report shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpisodeTrace {
    /// The goal as the model saw it, `size_px^2 * 3` bytes RGB.
    pub goal_model_rgb: Vec<u8>,
    /// Side of the model's square input.
    pub size_px: u32,
    /// Each policy step's observation as the model saw it.
    pub observations_model_rgb: Vec<Vec<u8>>,
    /// Learned distance to the goal, per policy step (NaN where there is none).
    pub distances: Vec<f32>,
    /// Inference wall time per policy step, seconds.
    pub inference_s: Vec<f64>,
    /// Time from a frame's capture to the command computed from it, seconds.
    pub frame_to_command_s: Vec<f64>,
    /// Control-loop periods, seconds.
    pub control_period_s: Vec<f64>,
    /// Every event of the episode, in order.
    pub events: Vec<TimedEvent>,
    /// The goal as the camera saw it (the animation's left view); `None`: the model's view.
    pub goal_frame: Option<Arc<RgbImage>>,
    /// Each policy step's camera frame as JPEG; `None` where none was kept.
    pub frames_jpeg: Vec<Option<Arc<Vec<u8>>>>,
    /// When each policy step's frame was captured, seconds from the episode start.
    pub step_times_s: Vec<f64>,
    /// How the episode ended, one sentence.
    pub ending: Option<String>,
    /// Where the goal came from.
    pub goal: String,
    /// What the run was started with.
    pub run: RunRecord,
}

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Creating the directory or writing a file failed.
    #[error("report file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Encoding an image failed.
    #[error("report file {path}: cannot encode: {reason}")]
    Encode { path: PathBuf, reason: String },
    /// The trace is inconsistent (buffer sizes).
    #[error("episode trace field `{field}`: {reason}")]
    Trace { field: String, reason: String },
}

/// Percentiles of a latency series, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyStats {
    /// Samples.
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatencyStats {
    /// Stats of `samples_s` (seconds; non-finite samples ignored), `None` when there is none.
    pub fn from_seconds(samples_s: &[f64]) -> Option<Self> {
        let mut ms: Vec<f64> = samples_s
            .iter()
            .filter(|s| s.is_finite())
            .map(|s| s * 1e3)
            .collect();
        if ms.is_empty() {
            return None;
        }
        Some(Self {
            count: ms.len(),
            mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
            p50_ms: quantile(&mut ms, 0.50)?,
            p99_ms: quantile(&mut ms, 0.99)?,
            max_ms: quantile(&mut ms, 1.0)?,
        })
    }
}

/// The learned distance over the episode (finite values only).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DistanceSummary {
    pub first: Option<f32>,
    pub last: Option<f32>,
    pub min: Option<f32>,
    /// Policy step at which `min` was reached.
    pub min_step: Option<usize>,
    /// Steps whose distance was NaN or infinite.
    pub non_finite: usize,
}

/// Contents of `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSummary {
    /// How the episode ended, one sentence.
    pub end_reason: Option<String>,
    /// Where the goal came from.
    pub goal: String,
    /// Checkpoint, its id, the simulator's seed and the command line.
    pub run: RunRecord,
    /// Policy steps.
    pub steps: usize,
    /// Side of the model input.
    pub size_px: u32,
    pub distance: DistanceSummary,
    pub inference: Option<LatencyStats>,
    pub frame_to_command: Option<LatencyStats>,
    pub control_period: Option<LatencyStats>,
    /// Number of lines in events.txt.
    pub events: usize,
    /// Files of the report, relative to its directory.
    pub files: Vec<String>,
}

/// File names inside the report directory.
pub const ANIMATION_FILE: &str = "animation.gif";
pub const DISTANCE_FILE: &str = "distance.png";
pub const LATENCY_FILE: &str = "latency.png";
pub const EVENTS_FILE: &str = "events.txt";
pub const SUMMARY_FILE: &str = "summary.json";

/// Writes the report files into `dir` (created if needed).
pub fn write_report(dir: &Path, trace: &EpisodeTrace) -> Result<(), ReportError> {
    check_trace(trace)?;
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    write_animation(&dir.join(ANIMATION_FILE), trace)?;
    save_png(&dir.join(DISTANCE_FILE), &plot_distance(trace))?;
    save_png(&dir.join(LATENCY_FILE), &plot_latencies(trace))?;
    write_events(&dir.join(EVENTS_FILE), &trace.events)?;
    let summary = summarize(trace);
    let json = serde_json::to_string_pretty(&summary).map_err(|e| ReportError::Encode {
        path: dir.join(SUMMARY_FILE),
        reason: e.to_string(),
    })?;
    write_file(&dir.join(SUMMARY_FILE), json.as_bytes())
}

/// The numbers of `summary.json`.
pub fn summarize(trace: &EpisodeTrace) -> ReportSummary {
    let finite: Vec<(usize, f32)> = trace
        .distances
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, d)| d.is_finite())
        .collect();
    let min = finite.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1));
    ReportSummary {
        end_reason: trace.ending.clone(),
        goal: trace.goal.clone(),
        run: trace.run.clone(),
        steps: trace.observations_model_rgb.len(),
        size_px: trace.size_px,
        distance: DistanceSummary {
            first: finite.first().map(|p| p.1),
            last: finite.last().map(|p| p.1),
            min: min.map(|p| p.1),
            min_step: min.map(|p| p.0),
            non_finite: trace.distances.len() - finite.len(),
        },
        inference: LatencyStats::from_seconds(&trace.inference_s),
        frame_to_command: LatencyStats::from_seconds(&trace.frame_to_command_s),
        control_period: LatencyStats::from_seconds(&trace.control_period_s),
        events: trace.events.len(),
        files: [
            ANIMATION_FILE,
            DISTANCE_FILE,
            LATENCY_FILE,
            EVENTS_FILE,
            SUMMARY_FILE,
        ]
        .map(String::from)
        .to_vec(),
    }
}

fn check_trace(trace: &EpisodeTrace) -> Result<(), ReportError> {
    let expected = trace.size_px as usize * trace.size_px as usize * 3;
    let bad = |field: String, len: usize| ReportError::Trace {
        field,
        reason: format!(
            "holds {len} bytes; expected {0}x{0}x3 = {expected}",
            trace.size_px
        ),
    };
    if trace.size_px == 0 {
        return Err(ReportError::Trace {
            field: "size_px".into(),
            reason: "must be > 0".into(),
        });
    }
    if trace.goal_model_rgb.len() != expected {
        return Err(bad("goal_model_rgb".into(), trace.goal_model_rgb.len()));
    }
    for (i, obs) in trace.observations_model_rgb.iter().enumerate() {
        if obs.len() != expected {
            return Err(bad(format!("observations_model_rgb[{i}]"), obs.len()));
        }
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    std::fs::write(path, bytes).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_events(path: &Path, events: &[TimedEvent]) -> Result<(), ReportError> {
    let mut text = String::new();
    for event in events {
        text.push_str(&event_line(event));
        text.push('\n');
    }
    write_file(path, text.as_bytes())
}

/// `+seconds  text`, with `SAFETY` before safety events.
pub fn event_line(event: &TimedEvent) -> String {
    format!(
        "+{:.3}s  {}{}",
        event.at_s,
        if event.safety { "SAFETY " } else { "" },
        event.text.trim_end()
    )
}

fn save_png(path: &Path, image: &RgbImage) -> Result<(), ReportError> {
    image
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| ReportError::Encode {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_as_numpy() {
        // np.percentile(range(1, 101), [50, 99]) = [50.5, 99.01]
        let samples_s: Vec<f64> = (1..=100).map(|i| f64::from(i) * 1e-3).collect();
        let s = LatencyStats::from_seconds(&samples_s).unwrap();
        assert_eq!(s.count, 100);
        assert!((s.p50_ms - 50.5).abs() < 1e-9 && (s.p99_ms - 99.01).abs() < 1e-9);
        assert!((s.max_ms - 100.0).abs() < 1e-9 && (s.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(LatencyStats::from_seconds(&[f64::NAN]), None);
    }
}
