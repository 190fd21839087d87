//! The run report: every file is written, the GIF has one frame per policy step at the
//! documented size, the plots are PNGs of the documented size, summary.json parses.

use std::io::BufReader;
use std::path::Path;

use bridge_run::report::{
    ANIMATION_SIZE_PX, EpisodeTrace, ReportError, ReportSummary, summarize, write_report,
};
use image::AnimationDecoder;
use image::codecs::gif::GifDecoder;

const SIZE_PX: u32 = 64;

/// A goal with a red square top-left; observations where a square walks towards it.
fn synthetic_trace(steps: usize) -> EpisodeTrace {
    let frame = |sx: u32, sy: u32| {
        let mut rgb = vec![90u8; (SIZE_PX * SIZE_PX * 3) as usize];
        for y in sy..sy + 12 {
            for x in sx..sx + 12 {
                let i = ((y * SIZE_PX + x) * 3) as usize;
                rgb[i..i + 3].copy_from_slice(&[220, 40, 30]);
            }
        }
        rgb
    };
    let observations = (0..steps)
        .map(|t| {
            let p = 40 - (40 * t / steps.max(1)) as u32;
            frame(4 + p, 4 + p / 2)
        })
        .collect();
    let mut distances: Vec<f32> = (0..steps)
        .map(|t| 30.0 * (1.0 - t as f32 / steps as f32) + (t % 3) as f32)
        .collect();
    if steps > 5 {
        distances[5] = f32::NAN;
    }
    EpisodeTrace {
        goal_model_rgb: frame(4, 4),
        size_px: SIZE_PX,
        observations_model_rgb: observations,
        distances,
        inference_s: (0..steps).map(|t| 0.020 + 0.001 * (t % 7) as f64).collect(),
        frame_to_command_s: (0..steps).map(|t| 0.080 + 0.002 * (t % 5) as f64).collect(),
        control_period_s: (0..steps * 20)
            .map(|t| 0.010 + 0.0001 * ((t * 7919) % 11) as f64)
            .collect(),
        events: vec!["mode Running".into(), "safety: workspace clip x".into()],
    }
}

fn gif_frames(path: &Path) -> Vec<image::Frame> {
    let file = std::fs::File::open(path).unwrap();
    let decoder = GifDecoder::new(BufReader::new(file)).unwrap();
    decoder.into_frames().collect_frames().unwrap()
}

#[test]
fn report_files_are_written_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let trace = synthetic_trace(12);
    write_report(dir.path(), &trace).unwrap();

    let frames = gif_frames(&dir.path().join("animation.gif"));
    assert_eq!(frames.len(), 12);
    for frame in &frames {
        assert_eq!(frame.buffer().dimensions(), ANIMATION_SIZE_PX);
        assert_eq!(frame.delay().numer_denom_ms(), (200, 1));
    }
    // The goal's red square is visible, upscaled, in the left view of the first frame.
    let px = frames[0].buffer().get_pixel(10 * 4, 20 + 10 * 4);
    assert!(px[0] > 180 && px[1] < 90, "{px:?}");

    for (name, size) in [("distance.png", (720, 400)), ("latency.png", (720, 690))] {
        let png = image::open(dir.path().join(name)).unwrap();
        assert_eq!((png.width(), png.height()), size, "{name}");
    }

    let events = std::fs::read_to_string(dir.path().join("events.txt")).unwrap();
    assert_eq!(events, "mode Running\nsafety: workspace clip x\n");

    let json = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    let summary: ReportSummary = serde_json::from_str(&json).unwrap();
    assert_eq!(summary, summarize(&trace));
    assert_eq!(summary.steps, 12);
    assert_eq!(summary.distance.non_finite, 1);
    assert_eq!(summary.distance.first, Some(30.0));
    let inference = summary.inference.unwrap();
    assert_eq!(inference.count, 12);
    assert!((inference.max_ms - 26.0).abs() < 1e-9, "{inference:?}");
    assert_eq!(summary.control_period.unwrap().count, 240);
}

#[test]
fn empty_episode_still_gets_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let trace = EpisodeTrace {
        goal_model_rgb: vec![0; (SIZE_PX * SIZE_PX * 3) as usize],
        size_px: SIZE_PX,
        ..EpisodeTrace::default()
    };
    write_report(dir.path(), &trace).unwrap();
    // A GIF needs a frame: the goal alone.
    let frames = gif_frames(&dir.path().join("animation.gif"));
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].buffer().dimensions(), ANIMATION_SIZE_PX);
    let summary: ReportSummary =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary.steps, 0);
    assert_eq!(summary.inference, None);
    assert_eq!(summary.distance.min, None);
}

#[test]
fn observation_of_the_wrong_size_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut trace = synthetic_trace(4);
    trace.observations_model_rgb[2].truncate(100);
    let err = write_report(dir.path(), &trace).unwrap_err();
    assert!(matches!(err, ReportError::Trace { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("observations_model_rgb[2]") && msg.contains("12288"),
        "{msg}"
    );
}

#[test]
fn unwritable_directory_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let err = write_report(&blocker.join("report"), &synthetic_trace(2)).unwrap_err();
    assert!(matches!(err, ReportError::Io { .. }), "{err}");
    assert!(err.to_string().contains("file/report"), "{err}");
}
