//! The report's pictures: the animation (goal | observation per policy step) and the plots,
//! drawn with the `image` crate and a built-in 5x7 pixel font.

use std::path::Path;

use image::codecs::gif::{GifEncoder, Repeat};
use image::imageops::{self, FilterType};
use image::{Delay, Rgb, RgbImage, RgbaImage};

use super::{
    ANIMATION_SIZE_PX, CAPTION_PX, EpisodeTrace, FRAME_DELAY_MS, LatencyStats, ReportError,
    VIEW_PX, write_file,
};

// ---------------------------------------------------------------------------------------------
// Animation

pub(super) fn write_animation(path: &Path, trace: &EpisodeTrace) -> Result<(), ReportError> {
    let encode_error = |reason: String| ReportError::Encode {
        path: path.to_path_buf(),
        reason,
    };
    // Encoded in memory and written in one go, so a write error (disk full) is reported
    // rather than lost in a buffered writer's drop.
    let mut bytes = Vec::new();
    {
        // Speed 10 of 1..30: NeuQuant samples every 10th pixel, plenty for these frames and
        // several times faster than the default.
        let mut encoder = GifEncoder::new_with_speed(&mut bytes, 10);
        encoder
            .set_repeat(Repeat::Infinite)
            .map_err(|e| encode_error(e.to_string()))?;
        for frame in animation_frames(trace) {
            let rgba: RgbaImage = image::DynamicImage::ImageRgb8(frame).into_rgba8();
            let delay = Delay::from_numer_denom_ms(FRAME_DELAY_MS, 1);
            encoder
                .encode_frame(image::Frame::from_parts(rgba, 0, 0, delay))
                .map_err(|e| encode_error(e.to_string()))?;
        }
    }
    write_file(path, &bytes)
}

/// One frame per policy step; an episode without any step gets one frame showing the goal
/// (a GIF needs at least one).
fn animation_frames(trace: &EpisodeTrace) -> impl Iterator<Item = RgbImage> + '_ {
    let goal_view = upscale(&trace.goal_model_rgb, trace.size_px);
    let steps = trace.observations_model_rgb.len();
    let empty = (steps == 0).then(|| {
        let blank = RgbImage::from_pixel(VIEW_PX, VIEW_PX, Rgb([0, 0, 0]));
        animation_frame(&goal_view, &blank, "NO POLICY STEP")
    });
    let per_step = trace
        .observations_model_rgb
        .iter()
        .enumerate()
        .map(move |(step, obs)| {
            let caption = match trace.distances.get(step) {
                Some(d) if d.is_finite() => {
                    format!("STEP {}/{steps}  D {}", step + 1, fmt_num(*d))
                }
                _ => format!("STEP {}/{steps}", step + 1),
            };
            animation_frame(&goal_view, &upscale(obs, trace.size_px), &caption)
        });
    empty.into_iter().chain(per_step)
}

/// A model image (validated length) scaled to VIEW_PX with nearest neighbour: the pixels the
/// model saw, enlarged, not smoothed.
fn upscale(model_rgb: &[u8], size_px: u32) -> RgbImage {
    let image = RgbImage::from_raw(size_px, size_px, model_rgb.to_vec())
        .unwrap_or_else(|| RgbImage::new(size_px, size_px));
    imageops::resize(&image, VIEW_PX, VIEW_PX, FilterType::Nearest)
}

fn animation_frame(goal: &RgbImage, obs: &RgbImage, caption: &str) -> RgbImage {
    let (width_px, height_px) = ANIMATION_SIZE_PX;
    let mut canvas = Canvas::new(width_px, height_px, Rgb([20, 20, 20]));
    imageops::replace(&mut canvas.image, goal, 0, i64::from(CAPTION_PX));
    imageops::replace(
        &mut canvas.image,
        obs,
        i64::from(VIEW_PX),
        i64::from(CAPTION_PX),
    );
    let white = Rgb([255, 255, 255]);
    canvas.text(6, 6, "GOAL", white, 1);
    canvas.text(VIEW_PX as i32 + 6, 6, caption, white, 1);
    canvas.fill_rect(VIEW_PX as i32 - 1, CAPTION_PX as i32, 2, VIEW_PX, white);
    canvas.image
}

// ---------------------------------------------------------------------------------------------
// Plots

const PLOT_BG: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([30, 30, 30]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const BLUE: Rgb<u8> = Rgb([40, 90, 200]);
const RED: Rgb<u8> = Rgb([200, 50, 40]);

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
        let x_ticks = nice_ticks(self.x_range.0, self.x_range.1, 8);
        let y_ticks = nice_ticks(self.y_range.0, self.y_range.1, 5);
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
        let x_label_px = self.left + (self.width - text_width(x_label, 1)) / 2;
        canvas.text(x_label_px, self.top + self.height + 20, x_label, INK, 1);
        canvas.text(self.left, self.top - 11, y_label, INK, 1);
    }
}

/// Line plot of the distance per policy step; non-finite values leave gaps.
pub(super) fn plot_distance(distances: &[f32]) -> RgbImage {
    let mut canvas = Canvas::new(720, 400, PLOT_BG);
    canvas.text(12, 10, "LEARNED DISTANCE TO GOAL PER POLICY STEP", INK, 2);
    let finite: Vec<f64> = distances
        .iter()
        .filter(|d| d.is_finite())
        .map(|&d| f64::from(d))
        .collect();
    let (lo, hi) = data_range(&finite, true);
    let axes = Axes {
        left: 70,
        top: 50,
        width: 620,
        height: 300,
        x_range: (0.0, (distances.len().max(2) - 1) as f64),
        y_range: nice_range(lo, hi),
    };
    axes.draw(&mut canvas, "POLICY STEP", "DISTANCE");
    if finite.is_empty() {
        canvas.text(axes.left + 20, axes.top + 20, "NO FINITE DISTANCE", RED, 2);
        return canvas.image;
    }
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
    canvas.image
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

fn histogram_panel(canvas: &mut Canvas, top: i32, title: &str, samples_s: &[f64]) {
    const BINS: usize = 30;
    let ms: Vec<f64> = samples_s
        .iter()
        .filter(|s| s.is_finite())
        .map(|s| s * 1e3)
        .collect();
    let heading = match LatencyStats::from_seconds(samples_s) {
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
    let (lo_ms, hi_ms) = data_range(&ms, false);
    let x_range = nice_range(lo_ms, hi_ms);
    let mut counts = [0usize; BINS];
    let bin_width = (x_range.1 - x_range.0) / BINS as f64;
    for v in &ms {
        let bin = ((v - x_range.0) / bin_width).floor() as usize;
        counts[bin.min(BINS - 1)] += 1;
    }
    let max_count = counts.iter().copied().max().unwrap_or(0).max(1);
    let axes = Axes {
        left: 70,
        top: top + 40,
        width: 620,
        height: 140,
        x_range,
        y_range: nice_range(0.0, max_count as f64),
    };
    axes.draw(canvas, "MILLISECONDS", "COUNT");
    for (bin, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let x0 = x_range.0 + bin as f64 * bin_width;
        let (left, bar_top) = axes.px(x0, count as f64);
        let (right, bottom) = axes.px(x0 + bin_width, 0.0);
        let width = (right - left - 1).max(1);
        canvas.fill_rect(
            left + 1,
            bar_top,
            width as u32,
            (bottom - bar_top) as u32,
            BLUE,
        );
    }
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
