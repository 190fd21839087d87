//! The report's pictures: the animation (goal | observation per policy step) and the plots,
//! drawn with the `image` crate and a built-in 5x7 pixel font.

use std::path::Path;

use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};

use super::{
    ENDING_DELAY_MS, EpisodeTrace, FRAME_DELAY_MS, LatencyStats, ReportError, VIEW_PX, event_line,
    write_file,
};
use crate::messages::TimedEvent;

// ---------------------------------------------------------------------------------------------
// Animation

/// Events shown under each frame (the newest of those since the previous step).
const EVENT_LINES: u32 = 3;

/// Where things go in an animation frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    view_px: (u32, u32),
    /// Font scale: 2 for camera-sized views, 1 for small ones.
    scale: u32,
}

impl Layout {
    pub(super) fn for_view(view_px: (u32, u32)) -> Layout {
        Layout {
            view_px,
            scale: if view_px.0 >= 400 { 2 } else { 1 },
        }
    }

    fn line_px(&self) -> u32 {
        10 * self.scale
    }

    fn caption_px(&self) -> u32 {
        self.line_px() + 6 * self.scale
    }

    fn events_px(&self) -> u32 {
        EVENT_LINES * self.line_px() + 6 * self.scale
    }

    pub(super) fn width_px(&self) -> u32 {
        2 * self.view_px.0
    }

    pub(super) fn height_px(&self) -> u32 {
        self.caption_px() + self.view_px.1 + self.events_px()
    }

    /// Characters that fit across the frame.
    fn chars_per_line(&self) -> usize {
        (self.width_px() as i32 / (GLYPH_ADVANCE * self.scale as i32) - 2).max(1) as usize
    }
}

pub(super) fn write_animation(path: &Path, trace: &EpisodeTrace) -> Result<(), ReportError> {
    let encode_error = |reason: String| ReportError::Encode {
        path: path.to_path_buf(),
        reason,
    };
    let mut frames = animation_frames(trace).peekable();
    let Some((first, _)) = frames.peek() else {
        return Err(encode_error("no frame to encode".into()));
    };
    let (width_px, height_px) = (
        u16::try_from(first.width()).map_err(|e| encode_error(e.to_string()))?,
        u16::try_from(first.height()).map_err(|e| encode_error(e.to_string()))?,
    );
    // Encoded in memory and written in one go, so a write error (disk full) is reported
    // rather than lost in a buffered writer's drop.
    let mut bytes = Vec::new();
    {
        let mut encoder = gif::Encoder::new(&mut bytes, width_px, height_px, &[])
            .map_err(|e| encode_error(e.to_string()))?;
        encoder
            .set_repeat(gif::Repeat::Infinite)
            .map_err(|e| encode_error(e.to_string()))?;
        let mut previous: Option<RgbImage> = None;
        for (frame, delay_ms) in frames {
            let gif_frame = changed_part(previous.as_ref(), &frame, delay_ms);
            encoder
                .write_frame(&gif_frame)
                .map_err(|e| encode_error(e.to_string()))?;
            previous = Some(frame);
        }
    }
    write_file(path, &bytes)
}

/// The part of `frame` that differs from `previous` as a GIF sub-frame drawn over it (the goal
/// view never changes, so most frames carry only the observation and the text strips).
fn changed_part(
    previous: Option<&RgbImage>,
    frame: &RgbImage,
    delay_ms: u32,
) -> gif::Frame<'static> {
    let (x, y, w, h) = previous.and_then(|p| changed_box(p, frame)).unwrap_or((
        0,
        0,
        frame.width(),
        frame.height(),
    ));
    let part = imageops::crop_imm(frame, x, y, w, h).to_image();
    let mut rgba = image::DynamicImage::ImageRgb8(part).into_rgba8().into_raw();
    // Speed 10 of 1..30: NeuQuant samples every 10th pixel, plenty for these frames and
    // several times faster than the default.
    let mut gif_frame = gif::Frame::from_rgba_speed(w as u16, h as u16, &mut rgba, 10);
    gif_frame.left = x as u16;
    gif_frame.top = y as u16;
    gif_frame.dispose = gif::DisposalMethod::Keep;
    gif_frame.delay = u16::try_from(delay_ms / 10).unwrap_or(u16::MAX);
    gif_frame
}

/// The smallest rectangle (x, y, width, height) holding every pixel that differs; a 1x1 one
/// when nothing does (a GIF frame needs a pixel).
fn changed_box(previous: &RgbImage, frame: &RgbImage) -> Option<(u32, u32, u32, u32)> {
    if previous.dimensions() != frame.dimensions() {
        return None;
    }
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, pixel) in frame.enumerate_pixels() {
        if previous.get_pixel(x, y) != pixel {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    if x0 == u32::MAX {
        return Some((0, 0, 1, 1));
    }
    Some((x0, y0, x1 - x0 + 1, y1 - y0 + 1))
}

/// One frame per policy step, then one that says how the episode ended, each with its display
/// time in milliseconds.
fn animation_frames(trace: &EpisodeTrace) -> impl Iterator<Item = (RgbImage, u32)> + '_ {
    let goal_view = std::rc::Rc::new(match &trace.goal_frame {
        Some(frame) => frame.as_ref().clone(),
        None => upscale(&trace.goal_model_rgb, trace.size_px),
    });
    let goal_for_ending = std::rc::Rc::clone(&goal_view);
    let layout = Layout::for_view(goal_view.dimensions());
    let steps = trace.observations_model_rgb.len();
    let step_time = |step: usize| trace.step_times_s.get(step).copied();
    let per_step = (0..steps).map(move |step| {
        let view = step_view(trace, step, layout.view_px);
        let since = step.checked_sub(1).and_then(step_time);
        let events = events_between(&trace.events, since, step_time(step));
        let caption = step_caption(trace, step);
        let frame = animation_frame(layout, &goal_view, &view, &caption, &events);
        (frame, FRAME_DELAY_MS)
    });
    let ending = std::iter::once_with(move || {
        let last_view = match steps {
            0 => RgbImage::from_pixel(layout.view_px.0, layout.view_px.1, Rgb([0, 0, 0])),
            n => step_view(trace, n - 1, layout.view_px),
        };
        let since = steps.checked_sub(1).and_then(step_time);
        let mut events = events_between(&trace.events, since, None);
        let ending = trace.ending.as_deref().unwrap_or("episode over");
        // The runtime logs its summary as the last event; say it once.
        if events
            .last()
            .is_none_or(|(line, _)| !line.ends_with(ending))
        {
            events.push((format!("END: {ending}"), false));
        }
        let caption = format!("AFTER STEP {steps}");
        let frame = animation_frame(layout, &goal_for_ending, &last_view, &caption, &events);
        (frame, ENDING_DELAY_MS)
    });
    per_step.chain(ending)
}

/// Step `step`'s camera frame at `view_px`, or the model's view enlarged when none was kept.
fn step_view(trace: &EpisodeTrace, step: usize, view_px: (u32, u32)) -> RgbImage {
    let decoded = trace
        .frames_jpeg
        .get(step)
        .and_then(Option::as_ref)
        .and_then(|jpeg| image::load_from_memory(jpeg).ok())
        .map(image::DynamicImage::into_rgb8);
    let image =
        decoded.unwrap_or_else(|| upscale(&trace.observations_model_rgb[step], trace.size_px));
    if image.dimensions() == view_px {
        image
    } else {
        imageops::resize(&image, view_px.0, view_px.1, FilterType::Nearest)
    }
}

fn step_caption(trace: &EpisodeTrace, step: usize) -> String {
    let steps = trace.observations_model_rgb.len();
    let mut caption = format!("STEP {}/{steps}", step + 1);
    if let Some(d) = trace.distances.get(step).filter(|d| d.is_finite()) {
        caption.push_str(&format!("  D {}", fmt_num(*d)));
    }
    if let Some(t) = trace.step_times_s.get(step) {
        caption.push_str(&format!("  T +{t:.1}S"));
    }
    caption
}

/// Events after `since_s` (all when `None`) up to `until_s` (all later ones when `None`), as
/// lines with their safety flag.
fn events_between(
    events: &[TimedEvent],
    since_s: Option<f64>,
    until_s: Option<f64>,
) -> Vec<(String, bool)> {
    events
        .iter()
        .filter(|e| since_s.is_none_or(|t| e.at_s > t) && until_s.is_none_or(|t| e.at_s <= t))
        .map(|e| (event_line(e), e.safety))
        .collect()
}

/// A model image (validated length) scaled to VIEW_PX with nearest neighbour: the pixels the
/// model saw, enlarged, not smoothed.
fn upscale(model_rgb: &[u8], size_px: u32) -> RgbImage {
    let image = RgbImage::from_raw(size_px, size_px, model_rgb.to_vec())
        .unwrap_or_else(|| RgbImage::new(size_px, size_px));
    imageops::resize(&image, VIEW_PX, VIEW_PX, FilterType::Nearest)
}

/// `lines` cut into pieces of at most `width` characters, each with its line's flag.
fn wrapped(lines: &[(String, bool)], width: usize) -> Vec<(String, bool)> {
    lines
        .iter()
        .flat_map(|(line, flag)| {
            let chars: Vec<char> = line.chars().collect();
            chars
                .chunks(width.max(1))
                .map(|chunk| (chunk.iter().collect::<String>(), *flag))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn animation_frame(
    layout: Layout,
    goal: &RgbImage,
    obs: &RgbImage,
    caption: &str,
    events: &[(String, bool)],
) -> RgbImage {
    let (view_w, view_h) = layout.view_px;
    let scale = layout.scale;
    let mut canvas = Canvas::new(layout.width_px(), layout.height_px(), Rgb([20, 20, 20]));
    let top = layout.caption_px();
    imageops::replace(&mut canvas.image, goal, 0, i64::from(top));
    imageops::replace(&mut canvas.image, obs, i64::from(view_w), i64::from(top));
    let white = Rgb([255, 255, 255]);
    let margin = 3 * scale as i32;
    canvas.text(margin, margin, "GOAL", white, scale);
    canvas.text(view_w as i32 + margin, margin, caption, white, scale);
    canvas.fill_rect(view_w as i32 - 1, top as i32, 2, view_h, white);
    let lines = wrapped(events, layout.chars_per_line());
    let newest = &lines[lines.len().saturating_sub(EVENT_LINES as usize)..];
    for (i, (text, safety)) in newest.iter().enumerate() {
        let colour = if *safety {
            Rgb([255, 110, 90])
        } else {
            Rgb([200, 220, 255])
        };
        let y = (top + view_h) as i32 + margin + (i as u32 * layout.line_px()) as i32;
        canvas.text(margin, y, text, colour, scale);
    }
    if events.iter().any(|(_, safety)| *safety) {
        canvas.rect_outline(
            0,
            0,
            layout.width_px() as i32 - 1,
            layout.height_px() as i32 - 1,
            RED,
        );
    }
    canvas.image
}

// ---------------------------------------------------------------------------------------------
// Plots

const PLOT_BG: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([30, 30, 30]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const BLUE: Rgb<u8> = Rgb([40, 90, 200]);
const RED: Rgb<u8> = Rgb([200, 50, 40]);
const ORANGE: Rgb<u8> = Rgb([230, 130, 20]);

/// Data-to-pixel mapping of one plot panel.
#[derive(Debug, Clone, Copy)]
struct Axes {
    /// Plot area: left, top, width, height in pixels.
    left: i32,
    top: i32,
    width: i32,
    height: i32,
    x_range: (f64, f64),
    y_range: (f64, f64),
}

impl Axes {
    fn px(&self, x: f64, y: f64) -> (i32, i32) {
        let fx = (x - self.x_range.0) / (self.x_range.1 - self.x_range.0);
        let fy = (y - self.y_range.0) / (self.y_range.1 - self.y_range.0);
        (
            self.left + (fx * f64::from(self.width)).round() as i32,
            self.top + self.height - (fy * f64::from(self.height)).round() as i32,
        )
    }

    /// Frame, grid lines and tick labels; x and y labels under and left of the area.
    fn draw(&self, canvas: &mut Canvas, x_label: &str, y_label: &str) {
        self.draw_x(canvas, x_label);
        let y_ticks = nice_ticks(self.y_range.0, self.y_range.1, 5);
        for &y in &y_ticks {
            let (_, py) = self.px(self.x_range.0, y);
            canvas.fill_rect(self.left, py, self.width as u32, 1, GRID);
            canvas.fill_rect(self.left - 4, py, 4, 1, INK);
            let label = fmt_num(y as f32);
            canvas.text(
                self.left - 7 - text_width(&label, 1),
                py - 3,
                &label,
                INK,
                1,
            );
        }
        canvas.rect_outline(self.left, self.top, self.width, self.height, INK);
        canvas.text(self.left, self.top - 11, y_label, INK, 1);
    }

    /// The x grid, ticks, tick labels and label.
    fn draw_x(&self, canvas: &mut Canvas, x_label: &str) {
        let x_ticks = nice_ticks(self.x_range.0, self.x_range.1, 8);
        for &x in &x_ticks {
            let (px, _) = self.px(x, self.y_range.0);
            canvas.fill_rect(px, self.top, 1, self.height as u32, GRID);
            canvas.fill_rect(px, self.top + self.height, 1, 4, INK);
            let label = fmt_num(x as f32);
            canvas.text(
                px - text_width(&label, 1) / 2,
                self.top + self.height + 7,
                &label,
                INK,
                1,
            );
        }
        let x_label_px = self.left + (self.width - text_width(x_label, 1)) / 2;
        canvas.text(x_label_px, self.top + self.height + 20, x_label, INK, 1);
    }
}

/// Events marked on the distance plot: mode changes and safety events, not routine ones.
fn marked(event: &TimedEvent) -> bool {
    event.safety || event.text.starts_with("mode ")
}

/// The x position (in policy steps) of an event at `at_s`: halfway between the steps around
/// it, so a mark sits between the step before and the step after.
fn step_position(step_times_s: &[f64], at_s: f64) -> f64 {
    let before = step_times_s.iter().filter(|&&t| t < at_s).count();
    before as f64 - 0.5
}

/// Line plot of the distance per policy step; non-finite values leave gaps. Mode changes and
/// safety events are numbered vertical marks, listed under the plot.
pub(super) fn plot_distance(trace: &EpisodeTrace) -> RgbImage {
    const MAX_LISTED: usize = 12;
    let distances = &trace.distances;
    let marks: Vec<&TimedEvent> = trace.events.iter().filter(|e| marked(e)).collect();
    let listed = marks.len().min(MAX_LISTED);
    let list_px = if marks.is_empty() {
        0
    } else {
        14 + 11 * (listed as u32 + 1)
    };
    let mut canvas = Canvas::new(720, 400 + list_px, PLOT_BG);
    canvas.text(12, 10, "LEARNED DISTANCE TO GOAL PER POLICY STEP", INK, 2);
    let finite: Vec<f64> = distances
        .iter()
        .filter(|d| d.is_finite())
        .map(|&d| f64::from(d))
        .collect();
    let (lo, hi) = data_range(&finite, true);
    let last_step = (distances.len().max(2) - 1) as f64;
    let axes = Axes {
        left: 70,
        top: 50,
        width: 620,
        height: 300,
        x_range: (-0.5, last_step + 0.5),
        y_range: nice_range(lo, hi),
    };
    axes.draw(&mut canvas, "POLICY STEP", "DISTANCE");
    draw_marks(&mut canvas, &axes, trace, &marks);
    if finite.is_empty() {
        canvas.text(axes.left + 20, axes.top + 20, "NO FINITE DISTANCE", RED, 2);
    } else {
        draw_distance_line(&mut canvas, &axes, distances);
    }
    let list_top = axes.top + axes.height + 40;
    for (i, event) in marks.iter().take(MAX_LISTED).enumerate() {
        let colour = if event.safety { RED } else { ORANGE };
        let line: String = format!("{}: {}", i + 1, event_line(event))
            .chars()
            .take(110)
            .collect();
        canvas.text(12, list_top + 11 * i as i32, &line, colour, 1);
    }
    if marks.len() > MAX_LISTED {
        let more = format!("AND {} MORE IN EVENTS.TXT", marks.len() - MAX_LISTED);
        canvas.text(12, list_top + 11 * MAX_LISTED as i32, &more, INK, 1);
    }
    canvas.image
}

fn draw_marks(canvas: &mut Canvas, axes: &Axes, trace: &EpisodeTrace, marks: &[&TimedEvent]) {
    for (i, event) in marks.iter().enumerate() {
        let x =
            step_position(&trace.step_times_s, event.at_s).clamp(axes.x_range.0, axes.x_range.1);
        let (px, _) = axes.px(x, axes.y_range.0);
        let colour = if event.safety { RED } else { ORANGE };
        for y in (axes.top..axes.top + axes.height).step_by(4) {
            canvas.fill_rect(px, y, 1, 2, colour);
        }
        let label = (i + 1).to_string();
        // Alternate label heights so neighbouring marks stay readable.
        let y = axes.top + 3 + 9 * (i % 3) as i32;
        canvas.text(px + 2, y, &label, colour, 1);
    }
}

fn draw_distance_line(canvas: &mut Canvas, axes: &Axes, distances: &[f32]) {
    let mut previous: Option<(i32, i32)> = None;
    for (step, d) in distances.iter().enumerate() {
        if !d.is_finite() {
            previous = None;
            continue;
        }
        let point = axes.px(step as f64, f64::from(*d));
        if let Some(p) = previous {
            canvas.line(p, point, BLUE, 2);
        }
        canvas.fill_rect(point.0 - 2, point.1 - 2, 5, 5, BLUE);
        previous = Some(point);
    }
}

/// Three stacked histograms, in milliseconds.
pub(super) fn plot_latencies(trace: &EpisodeTrace) -> RgbImage {
    const PANEL_PX: u32 = 230;
    let panels = [
        ("INFERENCE TIME", &trace.inference_s),
        ("FRAME-TO-COMMAND LATENCY", &trace.frame_to_command_s),
        ("CONTROL PERIOD", &trace.control_period_s),
    ];
    let mut canvas = Canvas::new(720, PANEL_PX * panels.len() as u32, PLOT_BG);
    for (i, (title, samples_s)) in panels.into_iter().enumerate() {
        histogram_panel(&mut canvas, i as i32 * PANEL_PX as i32, title, samples_s);
    }
    canvas.image
}

/// A histogram over the whole range up to the slowest sample, its count axis logarithmic
/// (log10(1 + count)) so that one slow sample among thousands is a visible bar, with p50, p99
/// and max marked.
fn histogram_panel(canvas: &mut Canvas, top: i32, title: &str, samples_s: &[f64]) {
    const BINS: usize = 40;
    let ms: Vec<f64> = samples_s
        .iter()
        .filter(|s| s.is_finite())
        .map(|s| s * 1e3)
        .collect();
    let stats = LatencyStats::from_seconds(samples_s);
    let heading = match stats {
        Some(s) => format!(
            "{title} (MS)  N {}  P50 {}  P99 {}  MAX {}",
            s.count,
            fmt_num(s.p50_ms as f32),
            fmt_num(s.p99_ms as f32),
            fmt_num(s.max_ms as f32)
        ),
        None => format!("{title} (MS)  NO SAMPLES"),
    };
    canvas.text(12, top + 10, &heading, INK, 1);
    let (lo_ms, hi_ms) = data_range(&ms, true);
    let x_range = nice_range(lo_ms, hi_ms);
    let mut counts = [0usize; BINS];
    let bin_width = (x_range.1 - x_range.0) / BINS as f64;
    for v in &ms {
        let bin = ((v - x_range.0) / bin_width).floor() as usize;
        counts[bin.min(BINS - 1)] += 1;
    }
    let max_count = counts.iter().copied().max().unwrap_or(0).max(1);
    let log_count = |c: usize| (1.0 + c as f64).log10();
    let axes = Axes {
        left: 70,
        top: top + 40,
        width: 620,
        height: 140,
        x_range,
        y_range: (0.0, log_count(max_count).max(0.5)),
    };
    axes.draw_x(canvas, "MILLISECONDS");
    draw_log_count_axis(canvas, &axes, max_count);
    for (bin, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let x0 = x_range.0 + bin as f64 * bin_width;
        let (left, bar_top) = axes.px(x0, log_count(count));
        let (right, bottom) = axes.px(x0 + bin_width, 0.0);
        let width = (right - left - 1).max(1);
        let height = (bottom - bar_top).max(1);
        canvas.fill_rect(left + 1, bottom - height, width as u32, height as u32, BLUE);
    }
    if let Some(s) = stats {
        for (label, value_ms, colour) in [
            ("P50", s.p50_ms, INK),
            ("P99", s.p99_ms, ORANGE),
            ("MAX", s.max_ms, RED),
        ] {
            let (px, _) = axes.px(value_ms, 0.0);
            canvas.fill_rect(px, axes.top, 1, axes.height as u32, colour);
            let y = axes.top
                + match label {
                    "P50" => 2,
                    "P99" => 12,
                    _ => 22,
                };
            canvas.text(px + 3, y, label, colour, 1);
        }
    }
}

/// Count ticks at 1, 10, 100, ... on a log10(1 + count) axis.
fn draw_log_count_axis(canvas: &mut Canvas, axes: &Axes, max_count: usize) {
    let mut count = 1usize;
    while count <= max_count.max(1) {
        let (_, py) = axes.px(axes.x_range.0, (1.0 + count as f64).log10());
        canvas.fill_rect(axes.left, py, axes.width as u32, 1, GRID);
        canvas.fill_rect(axes.left - 4, py, 4, 1, INK);
        let label = count.to_string();
        canvas.text(
            axes.left - 7 - text_width(&label, 1),
            py - 3,
            &label,
            INK,
            1,
        );
        count *= 10;
    }
    canvas.rect_outline(axes.left, axes.top, axes.width, axes.height, INK);
    canvas.text(axes.left, axes.top - 11, "COUNT (LOG)", INK, 1);
}

/// Min and max of `values`, widened when empty or flat; from zero when `include_zero`.
fn data_range(values: &[f64], include_zero: bool) -> (f64, f64) {
    let mut lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if values.is_empty() {
        (lo, hi) = (0.0, 1.0);
    }
    if include_zero {
        lo = lo.min(0.0);
    }
    if hi - lo < 1e-9 {
        let pad = (hi.abs() * 0.1).max(1e-3);
        (lo, hi) = (lo - pad, hi + pad);
    }
    (lo, hi)
}

/// `[lo, hi]` extended outwards to multiples of the tick step.
fn nice_range(lo: f64, hi: f64) -> (f64, f64) {
    let step = nice_step(lo, hi, 5);
    let (nlo, nhi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    if nhi > nlo {
        (nlo, nhi)
    } else {
        (nlo, nlo + step)
    }
}

/// A tick step of 1, 2 or 5 times a power of ten giving at most about `max_ticks` ticks.
fn nice_step(lo: f64, hi: f64, max_ticks: usize) -> f64 {
    let raw = ((hi - lo) / max_ticks as f64).max(1e-12);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude)
}

fn nice_ticks(lo: f64, hi: f64, max_ticks: usize) -> Vec<f64> {
    let step = nice_step(lo, hi, max_ticks);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// A short number for a label: integer when whole, else 3 significant digits.
fn fmt_num(v: f32) -> String {
    if !v.is_finite() {
        return "NAN".into();
    }
    if v == v.round() && v.abs() < 1e6 {
        return format!("{v:.0}");
    }
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    format!("{v:.decimals$}")
}

// ---------------------------------------------------------------------------------------------
// Drawing

/// An RGB image with clipped drawing primitives.
struct Canvas {
    image: RgbImage,
}

impl Canvas {
    fn new(width_px: u32, height_px: u32, background: Rgb<u8>) -> Self {
        Self {
            image: RgbImage::from_pixel(width_px, height_px, background),
        }
    }

    fn put(&mut self, x: i32, y: i32, colour: Rgb<u8>) {
        if x >= 0 && y >= 0 && (x as u32) < self.image.width() && (y as u32) < self.image.height() {
            self.image.put_pixel(x as u32, y as u32, colour);
        }
    }

    fn fill_rect(&mut self, x: i32, y: i32, width_px: u32, height_px: u32, colour: Rgb<u8>) {
        for dy in 0..height_px as i32 {
            for dx in 0..width_px as i32 {
                self.put(x + dx, y + dy, colour);
            }
        }
    }

    fn rect_outline(&mut self, x: i32, y: i32, width_px: i32, height_px: i32, colour: Rgb<u8>) {
        self.fill_rect(x, y, width_px as u32 + 1, 1, colour);
        self.fill_rect(x, y + height_px, width_px as u32 + 1, 1, colour);
        self.fill_rect(x, y, 1, height_px as u32 + 1, colour);
        self.fill_rect(x + width_px, y, 1, height_px as u32 + 1, colour);
    }

    /// Bresenham line, `thickness_px` wide.
    fn line(&mut self, from: (i32, i32), to: (i32, i32), colour: Rgb<u8>, thickness_px: u32) {
        let (mut x, mut y) = from;
        let (dx, dy) = ((to.0 - x).abs(), -(to.1 - y).abs());
        let (sx, sy) = (if x < to.0 { 1 } else { -1 }, if y < to.1 { 1 } else { -1 });
        let mut err = dx + dy;
        let offset = thickness_px as i32 / 2;
        loop {
            self.fill_rect(x - offset, y - offset, thickness_px, thickness_px, colour);
            if (x, y) == to {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Draws `text` (upper-cased) with the 5x7 font, each font pixel `scale` pixels wide.
    fn text(&mut self, x: i32, y: i32, text: &str, colour: Rgb<u8>, scale: u32) {
        let s = scale as i32;
        for (i, ch) in text.chars().enumerate() {
            let rows = glyph(ch);
            let gx = x + i as i32 * GLYPH_ADVANCE * s;
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.fill_rect(gx + col * s, y + row as i32 * s, scale, scale, colour);
                    }
                }
            }
        }
    }
}

/// Horizontal distance between characters, in font pixels.
const GLYPH_ADVANCE: i32 = 6;

fn text_width(text: &str, scale: u32) -> i32 {
    text.chars().count() as i32 * GLYPH_ADVANCE * scale as i32
}

/// 5x7 glyph rows, bit 4 = leftmost column. Lower case is drawn as upper case.
fn glyph(ch: char) -> [u8; 7] {
    match ch.to_ascii_uppercase() {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        ' ' => [0; 7],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        ';' => [0, 0x0C, 0x0C, 0, 0x0C, 0x04, 0x08],
        '!' => [0x04, 0x04, 0x04, 0x04, 0x04, 0, 0x04],
        '\'' => [0x04, 0x04, 0x08, 0, 0, 0, 0],
        '`' => [0x08, 0x04, 0, 0, 0, 0, 0],
        '"' => [0x0A, 0x0A, 0, 0, 0, 0, 0],
        '*' => [0, 0x04, 0x15, 0x0E, 0x15, 0x04, 0],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '[' => [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E],
        ']' => [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '|' => [0x04; 7],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks_are_round_and_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 10.0, 5),
            vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
        );
        assert_eq!(nice_range(0.3, 9.2), (0.0, 10.0));
        let ticks = nice_ticks(0.0, 0.05, 5);
        assert!((ticks[1] - 0.01).abs() < 1e-12, "{ticks:?}");
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(fmt_num(12.0), "12");
        assert_eq!(fmt_num(0.12345), "0.123");
        assert_eq!(fmt_num(12.345), "12.3");
        assert_eq!(fmt_num(f32::NAN), "NAN");
    }
}
