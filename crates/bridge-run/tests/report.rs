//! The run report: every file is written, the GIF has one frame per policy step at the
//! documented size, the plots are PNGs of the documented size, summary.json parses.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use bridge_run::messages::TimedEvent;
use bridge_run::record::RunRecord;
use bridge_run::report::{
    EpisodeTrace, ReportError, ReportSummary, VIEW_PX, animation_size_px, summarize, write_report,
};
use image::AnimationDecoder;
use image::codecs::gif::GifDecoder;

const SIZE_PX: u32 = 64;
/// The camera frame size of the synthetic trace (small, so the test encodes quickly).
const CAMERA_PX: (u32, u32) = (160, 120);

fn event(at_s: f64, text: &str, safety: bool) -> TimedEvent {
    TimedEvent {
        at_s,
        text: text.into(),
        safety,
    }
}

/// A camera frame, green, with a blue bar whose width grows with `t`, as JPEG.
fn camera_jpeg(t: usize) -> Arc<Vec<u8>> {
    let (w, h) = CAMERA_PX;
    let image = image::RgbImage::from_fn(w, h, |x, _| {
        if x < 10 + 5 * t as u32 {
            image::Rgb([20, 40, 230])
        } else {
            image::Rgb([40, 200, 60])
        }
    });
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    Arc::new(bytes)
}

/// A goal with a red square top-left; observations where a square walks towards it; camera
/// frames for every step but the third; a pause, a jog and a safety event between steps.
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
    let goal_frame = image::RgbImage::from_fn(CAMERA_PX.0, CAMERA_PX.1, |x, y| {
        if x < 30 && y < 30 {
            image::Rgb([220, 40, 30])
        } else {
            image::Rgb([90, 90, 90])
        }
    });
    EpisodeTrace {
        goal_model_rgb: frame(4, 4),
        size_px: SIZE_PX,
        observations_model_rgb: observations,
        distances,
        inference_s: (0..steps).map(|t| 0.020 + 0.001 * (t % 7) as f64).collect(),
        frame_to_command_s: (0..steps).map(|t| 0.080 + 0.002 * (t % 5) as f64).collect(),
        // 4000 periods near 10 ms and one of 113 ms: the tail must show.
        control_period_s: (0..4000)
            .map(|t| 0.010 + 0.0001 * ((t * 7919) % 11) as f64)
            .chain([0.113])
            .collect(),
        events: vec![
            event(
                0.5,
                "mode idle -> running (runtime: the policy drives)",
                false,
            ),
            event(
                1.05,
                "mode running -> paused (operator: pause/resume)",
                false,
            ),
            event(1.1, "mode paused (operator: jog +x)", false),
            event(1.3, "step 7 clipped (workspace box)", false),
            event(1.5, "tracking error 0.2 rad", true),
        ],
        goal_frame: Some(Arc::new(goal_frame)),
        frames_jpeg: (0..steps)
            .map(|t| (t != 2).then(|| camera_jpeg(t)))
            .collect(),
        step_times_s: (0..steps).map(|t| 0.6 + 0.2 * t as f64).collect(),
        ending: Some("episode 1: 12 steps, ended: operator (park and quit); arm parking".into()),
        goal: "goals/red.png".into(),
        run: RunRecord {
            checkpoint: Some("models/sim-demo".into()),
            checkpoint_id: Some("sha256:00112233aabbccdd".into()),
            sim_seed: Some(3),
            command_line: vec!["bridge-run".into(), "--sim".into()],
        },
    }
}

fn gif_frames(path: &Path) -> Vec<image::Frame> {
    let file = std::fs::File::open(path).unwrap();
    let decoder = GifDecoder::new(BufReader::new(file)).unwrap();
    decoder.into_frames().collect_frames().unwrap()
}

/// Whether `frame` holds a pixel close to `colour` inside the rectangle.
fn has_colour(frame: &image::RgbaImage, area: (u32, u32, u32, u32), colour: [u8; 3]) -> bool {
    let (x0, y0, w, h) = area;
    (y0..y0 + h).any(|y| {
        (x0..x0 + w).any(|x| {
            let p = frame.get_pixel(x, y);
            (0..3).all(|c| (i32::from(p[c]) - i32::from(colour[c])).abs() < 40)
        })
    })
}

#[test]
fn report_files_are_written_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let trace = synthetic_trace(12);
    write_report(dir.path(), &trace).unwrap();

    // One frame per step and one for the ending, all at the camera's resolution.
    let frames = gif_frames(&dir.path().join("animation.gif"));
    assert_eq!(frames.len(), 13);
    let size = animation_size_px(CAMERA_PX);
    assert_eq!(size.0, 2 * CAMERA_PX.0);
    assert!(size.1 > CAMERA_PX.1, "{size:?}");
    for frame in &frames {
        assert_eq!(frame.buffer().dimensions(), size);
    }
    assert_eq!(frames[0].delay().numer_denom_ms(), (200, 1));
    assert_eq!(frames[12].delay().numer_denom_ms(), (3000, 1));
    let caption_px = (size.1 - CAMERA_PX.1) / 3; // at most the caption strip's height
    // The goal's red square, at camera resolution, in the left view.
    let goal_area = (5, caption_px + 20, 20, 5);
    assert!(has_colour(frames[0].buffer(), goal_area, [220, 40, 30]));
    // The camera frame (green with a blue bar) in the right view; the third step, with no
    // frame kept, shows the model's view (grey with a red square) instead.
    let right = (CAMERA_PX.0 + 100, caption_px + 60, 40, 20);
    assert!(has_colour(frames[0].buffer(), right, [40, 200, 60]));
    assert!(!has_colour(frames[2].buffer(), right, [40, 200, 60]));
    // The safety event between steps 5 and 6 (1-based) frames the sixth frame in red.
    let border = |f: &image::Frame| has_colour(f.buffer(), (0, 0, size.0, 1), [200, 50, 40]);
    assert!(border(&frames[5]), "the sixth frame shows the safety event");
    assert!(!border(&frames[4]));

    // Distance plot: taller than the bare plot, with the marked events listed.
    let distance = image::open(dir.path().join("distance.png")).unwrap();
    assert_eq!(distance.width(), 720);
    assert!(distance.height() > 400, "the marked events are listed");
    let latency = image::open(dir.path().join("latency.png")).unwrap();
    assert_eq!((latency.width(), latency.height()), (720, 690));

    let events = std::fs::read_to_string(dir.path().join("events.txt")).unwrap();
    assert_eq!(events.lines().count(), 5);
    assert!(
        events.contains("+1.500s  SAFETY tracking error 0.2 rad"),
        "{events}"
    );

    let json = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    assert_eq!(
        json,
        serde_json::to_string_pretty(&summarize(&trace)).unwrap()
    );
    let summary: ReportSummary = serde_json::from_str(&json).unwrap();
    assert_eq!(summary.steps, 12);
    assert_eq!(summary.distance.non_finite, 1);
    assert_eq!(summary.distance.first, Some(30.0));
    assert!(
        summary
            .end_reason
            .as_deref()
            .unwrap()
            .contains("park and quit")
    );
    assert_eq!(summary.goal, "goals/red.png");
    assert_eq!(summary.run.sim_seed, Some(3));
    assert_eq!(summary.run.command_line, ["bridge-run", "--sim"]);
    assert!(json.contains("sha256:00112233aabbccdd"), "{json}");
    let inference = summary.inference.unwrap();
    assert_eq!(inference.count, 12);
    assert!((inference.max_ms - 26.0).abs() < 1e-9, "{inference:?}");
    let period = summary.control_period.unwrap();
    assert_eq!(period.count, 4001);
    assert!((period.max_ms - 113.0).abs() < 1e-9);
}

#[test]
fn the_period_plot_shows_a_single_slow_sample_among_thousands() {
    let dir = tempfile::tempdir().unwrap();
    write_report(dir.path(), &synthetic_trace(12)).unwrap();
    let latency = image::open(dir.path().join("latency.png"))
        .unwrap()
        .into_rgb8();
    // The control-period panel is the third (rows 460..690); its plot area spans x 70..690 from
    // 0 ms. Every sample but one is under 12 ms, left of x 200 on any axis up to 200 ms; the
    // 113 ms sample must show as a bar in the right half.
    let blue_in_last_bins = (560..680).any(|y| {
        (380..690).any(|x| {
            let p = latency.get_pixel(x, y);
            p[2] > 150 && p[0] < 100
        })
    });
    assert!(blue_in_last_bins, "the slowest period is invisible");
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
    // A GIF needs a frame: the ending alone, with the goal (the model's view, enlarged).
    let frames = gif_frames(&dir.path().join("animation.gif"));
    assert_eq!(frames.len(), 1);
    assert_eq!(
        frames[0].buffer().dimensions(),
        animation_size_px((VIEW_PX, VIEW_PX))
    );
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
