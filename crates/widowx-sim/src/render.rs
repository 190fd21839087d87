//! A software renderer for the tabletop: the scene camera's view (pinhole, from
//! `calibration/camera.toml`) of the table, the arm's links and fingers, and the blocks, with a
//! z-buffer, flat Lambert shading from one directional light, and soft contact shadows straight
//! below the blocks and the gripper (the cue that tells height from a single view).
//!
//! Fast by construction: the table (a textured plane, ray-cast and 2x2 supersampled) is drawn
//! once when the renderer is built and copied into each frame; the arm and blocks are a few dozen
//! boxes rasterised with edge functions into preallocated buffers. One core, no allocation per
//! frame after the first.
//!
//! Deterministic: the same scene and style give the same bytes. [`RenderStyle::jittered`] draws
//! lighting and colours from a seed, for data augmentation across episodes.
//!
//! ```
//! use widowx_sim::render::{CameraModel, RenderStyle, Renderer};
//! use widowx_sim::world::{BlockState, Scene};
//!
//! let mut renderer = Renderer::new(CameraModel::c920_over_shoulder(), RenderStyle::plain());
//! let scene = Scene {
//!     joints_rad: [0.0, -0.8, 0.5, 0.0, 1.5, 0.0, 0.9],
//!     blocks: vec![BlockState::on_table("red", [210, 40, 40], 0.035, [0.3, 0.1], 0.0)],
//! };
//! let mut rgb = vec![0u8; 640 * 480 * 3];
//! renderer.render(&scene, &mut rgb)?;
//! # Ok::<(), widowx_sim::render::RenderError>(())
//! ```

pub mod bodies;
mod camera_model;
mod raster;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::world::{Scene, TABLE_EXTENT_M, TABLE_Z_M};
use bodies::{BoxBody, scene_boxes};
pub use camera_model::{CameraModel, DEFAULT_CALIBRATION_TOML};
use raster::Raster;

/// Why a frame could not be rendered or a camera loaded.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("camera calibration {origin}: {reason}")]
    Calibration { origin: String, reason: String },
    #[error("output buffer holds {len} bytes; expected {width_px}x{height_px}x3 = {expected}")]
    BufferSize {
        len: usize,
        width_px: u32,
        height_px: u32,
        expected: usize,
    },
}

/// Lighting and colours.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderStyle {
    /// Unit vector toward the light, in `base_link`.
    pub light_direction: [f64; 3],
    /// Brightness of a surface facing away from the light (fraction of its colour).
    pub ambient: f64,
    /// Extra brightness of a surface facing the light.
    pub diffuse: f64,
    pub table_rgb: [u8; 3],
    /// Beyond the table's edges.
    pub background_rgb: [u8; 3],
    /// Per-channel gain applied to block colours.
    pub block_gain: [f64; 3],
    /// Overall gain of the image.
    pub exposure: f64,
    /// Darkness of a contact shadow right under an object on the table (0 = none, 1 = black).
    pub shadow_strength: f64,
}

impl RenderStyle {
    /// Light from above, slightly in front and to the left; a pale wooden table.
    pub fn plain() -> RenderStyle {
        RenderStyle {
            light_direction: unit([0.25, 0.35, 1.0]),
            ambient: 0.45,
            diffuse: 0.6,
            table_rgb: [196, 178, 150],
            background_rgb: [64, 66, 72],
            block_gain: [1.0; 3],
            exposure: 1.0,
            shadow_strength: 0.5,
        }
    }

    /// [`RenderStyle::plain`] with lighting and colours drawn from `seed`: the light tilted up to
    /// 35 degrees from the vertical, ambient and diffuse +-15%, table colour +-12 per channel,
    /// block colours +-8% per channel, exposure +-10%.
    pub fn jittered(seed: u64) -> RenderStyle {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x7ab1_e70b_5eed_0001);
        let plain = RenderStyle::plain();
        let tilt_rad = rng.random_range(0.0..35f64.to_radians());
        let azimuth_rad = rng.random_range(0.0..std::f64::consts::TAU);
        let mut jitter =
            |value: f64, fraction: f64| value * rng.random_range(1.0 - fraction..1.0 + fraction);
        let ambient = jitter(plain.ambient, 0.15);
        let diffuse = jitter(plain.diffuse, 0.15);
        let exposure = jitter(plain.exposure, 0.10);
        let block_gain = [jitter(1.0, 0.08), jitter(1.0, 0.08), jitter(1.0, 0.08)];
        let table_rgb = plain
            .table_rgb
            .map(|c| (f64::from(c) + rng.random_range(-12.0..12.0)).clamp(0.0, 255.0) as u8);
        RenderStyle {
            light_direction: [
                tilt_rad.sin() * azimuth_rad.cos(),
                tilt_rad.sin() * azimuth_rad.sin(),
                tilt_rad.cos(),
            ],
            ambient,
            diffuse,
            table_rgb,
            block_gain,
            exposure,
            ..plain
        }
    }

    /// Brightness of a surface with unit normal `normal` (base frame).
    fn brightness(&self, normal: &[f64; 3]) -> f64 {
        let facing = dot(normal, &self.light_direction).max(0.0);
        (self.ambient + self.diffuse * facing) * self.exposure
    }
}

/// Renders scenes seen by one camera in one style. Owns its buffers; reuse it across frames.
#[derive(Debug, Clone)]
pub struct Renderer {
    camera: CameraModel,
    style: RenderStyle,
    /// The empty table as seen by the camera, and its inverse depth (0 = infinitely far).
    table_rgb: Vec<u8>,
    table_inv_depth: Vec<f32>,
    inv_depth: Vec<f32>,
    boxes: Vec<BoxBody>,
}

/// Points whose camera depth is below this are clipped, m.
const NEAR_M: f64 = 0.02;
/// Grid lines on the table every this many metres, this wide.
const GRID_PITCH_M: f64 = 0.05;
const GRID_LINE_HALF_WIDTH_M: f64 = 0.0009;
/// Size of the table's checker squares, m.
const CHECKER_M: f64 = 0.10;

impl Renderer {
    /// A renderer for `camera` in `style`; draws the empty table once.
    pub fn new(camera: CameraModel, style: RenderStyle) -> Renderer {
        let pixels = camera.width_px as usize * camera.height_px as usize;
        let mut renderer = Renderer {
            table_rgb: vec![0; pixels * 3],
            table_inv_depth: vec![0.0; pixels],
            inv_depth: vec![0.0; pixels],
            boxes: Vec::with_capacity(32),
            camera,
            style,
        };
        renderer.draw_table();
        renderer
    }

    pub fn camera(&self) -> &CameraModel {
        &self.camera
    }

    pub fn style(&self) -> &RenderStyle {
        &self.style
    }

    pub fn width_px(&self) -> u32 {
        self.camera.width_px
    }

    pub fn height_px(&self) -> u32 {
        self.camera.height_px
    }

    /// Bytes of one RGB frame.
    pub fn frame_len(&self) -> usize {
        self.table_rgb.len()
    }

    /// Renders `scene` into `out_rgb` (row-major RGB, `width x height x 3` bytes).
    pub fn render(&mut self, scene: &Scene, out_rgb: &mut [u8]) -> Result<(), RenderError> {
        if out_rgb.len() != self.table_rgb.len() {
            return Err(RenderError::BufferSize {
                len: out_rgb.len(),
                width_px: self.camera.width_px,
                height_px: self.camera.height_px,
                expected: self.table_rgb.len(),
            });
        }
        out_rgb.copy_from_slice(&self.table_rgb);
        self.inv_depth.copy_from_slice(&self.table_inv_depth);
        let mut raster = Raster::new(
            out_rgb,
            &mut self.inv_depth,
            self.camera.width_px as usize,
            self.camera.height_px as usize,
        );
        draw_shadows(&mut raster, &self.camera, &self.style, scene);
        self.boxes.clear();
        scene_boxes(scene, &mut self.boxes);
        for body in &self.boxes {
            draw_box(&mut raster, &self.camera, &self.style, body);
        }
        Ok(())
    }

    /// Renders `scene` into a new buffer.
    pub fn render_to_vec(&mut self, scene: &Scene) -> Vec<u8> {
        let mut rgb = vec![0; self.frame_len()];
        // The buffer has the right size by construction.
        let _ = self.render(scene, &mut rgb);
        rgb
    }

    fn draw_table(&mut self) {
        let (width, height) = (
            self.camera.width_px as usize,
            self.camera.height_px as usize,
        );
        let lit = self.style.brightness(&[0.0, 0.0, 1.0]);
        let background = self.style.background_rgb.map(f64::from);
        const SUBSAMPLES: [f64; 2] = [0.25, 0.75];
        for v in 0..height {
            for u in 0..width {
                let mut sum = [0.0; 3];
                for sv in SUBSAMPLES {
                    for su in SUBSAMPLES {
                        let sample = match self.table_hit(u as f64 + su, v as f64 + sv) {
                            Some((xy, _)) => {
                                table_texture(&self.style.table_rgb, xy).map(|c| c * lit)
                            }
                            None => background,
                        };
                        for channel in 0..3 {
                            sum[channel] += sample[channel] / 4.0;
                        }
                    }
                }
                let pixel = v * width + u;
                self.table_rgb[pixel * 3..pixel * 3 + 3].copy_from_slice(&sum.map(to_byte));
                self.table_inv_depth[pixel] = self
                    .table_hit(u as f64 + 0.5, v as f64 + 0.5)
                    .map_or(0.0, |(_, depth)| (1.0 / depth) as f32);
            }
        }
    }

    /// Where the ray through pixel coordinates `(u, v)` meets the table top, and its camera
    /// depth; `None` beyond the table's edges or above the horizon.
    fn table_hit(&self, u_px: f64, v_px: f64) -> Option<([f64; 2], f64)> {
        table_hit(&self.camera, u_px, v_px)
    }
}

fn table_hit(camera: &CameraModel, u_px: f64, v_px: f64) -> Option<([f64; 2], f64)> {
    let d = camera.ray_direction(u_px, v_px);
    if d[2] > -1e-9 {
        return None;
    }
    let depth = (TABLE_Z_M - camera.position_m[2]) / d[2];
    let xy = [
        camera.position_m[0] + depth * d[0],
        camera.position_m[1] + depth * d[1],
    ];
    let (x_min, x_max, y_min, y_max) = TABLE_EXTENT_M;
    let on_table = (x_min..=x_max).contains(&xy[0]) && (y_min..=y_max).contains(&xy[1]);
    (on_table && depth > NEAR_M).then_some((xy, depth))
}

/// The table's colour at `xy`: wood-coloured, faint 10 cm checks and a 5 cm grid, so that motion
/// over it is visible.
fn table_texture(base_rgb: &[u8; 3], xy: [f64; 2]) -> [f64; 3] {
    let check = ((xy[0] / CHECKER_M).floor() + (xy[1] / CHECKER_M).floor()).rem_euclid(2.0);
    let mut gain = if check < 0.5 { 1.0 } else { 0.95 };
    let line_distance = |c: f64| {
        let r = c.rem_euclid(GRID_PITCH_M);
        r.min(GRID_PITCH_M - r)
    };
    if line_distance(xy[0]).min(line_distance(xy[1])) < GRID_LINE_HALF_WIDTH_M {
        gain *= 0.84;
    }
    // A faint grain along x.
    gain *= 1.0 + 0.025 * (xy[1] * 310.0 + 2.0 * (xy[0] * 9.0).sin()).sin();
    base_rgb.map(|c| f64::from(c) * gain)
}

/// Soft dark discs on the table straight below each block and the gripper, fading and widening
/// with height.
fn draw_shadows(raster: &mut Raster<'_>, camera: &CameraModel, style: &RenderStyle, scene: &Scene) {
    let ee = scene.ee_pose();
    // The middle of the finger pads, a little behind ee_gripper_link along the fingers.
    let pads = ee.transform_point(&[-0.016, 0.0, 0.0]);
    let gripper = (
        [pads[0], pads[1]],
        (pads[2] - 0.01 - TABLE_Z_M).max(0.0),
        0.028,
    );
    let casters = scene
        .blocks
        .iter()
        .map(|b| {
            let bottom = b.position_m[2] - b.size_m / 2.0 - TABLE_Z_M;
            (
                [b.position_m[0], b.position_m[1]],
                bottom.max(0.0),
                0.62 * b.size_m,
            )
        })
        .chain(std::iter::once(gripper));
    for (xy, height_m, radius_m) in casters {
        let radius = radius_m + 0.2 * height_m;
        let strength = style.shadow_strength / (1.0 + height_m / 0.06);
        shade_disc(raster, camera, xy, radius, strength);
    }
}

fn shade_disc(
    raster: &mut Raster<'_>,
    camera: &CameraModel,
    centre: [f64; 2],
    radius: f64,
    strength: f64,
) {
    let corners = [(-1.0, -1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, 1.0)].map(|(sx, sy)| {
        camera.project(&[centre[0] + sx * radius, centre[1] + sy * radius, TABLE_Z_M])
    });
    let mut bounds = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for corner in corners {
        let Some([u, v]) = corner else { return };
        bounds = [
            bounds[0].min(u),
            bounds[1].min(v),
            bounds[2].max(u),
            bounds[3].max(v),
        ];
    }
    let (width, height) = (raster.width as f64, raster.height as f64);
    let u0 = bounds[0].floor().clamp(0.0, width) as usize;
    let u1 = bounds[2].ceil().clamp(0.0, width) as usize;
    let v0 = bounds[1].floor().clamp(0.0, height) as usize;
    let v1 = bounds[3].ceil().clamp(0.0, height) as usize;
    let soft = 0.45 * radius;
    for v in v0..v1 {
        for u in u0..u1 {
            let Some((xy, _)) = table_hit(camera, u as f64 + 0.5, v as f64 + 0.5) else {
                continue;
            };
            let distance = (xy[0] - centre[0]).hypot(xy[1] - centre[1]);
            let cover = ((radius - distance) / soft).clamp(0.0, 1.0);
            if cover > 0.0 {
                raster.darken(u, v, 1.0 - strength * cover * cover * (3.0 - 2.0 * cover));
            }
        }
    }
}

/// Corners of a box by sign bits (bit 0: x, bit 1: y, bit 2: z; set = positive side), and its
/// faces as corner cycles with their outward normals in the box frame.
const FACES: [([usize; 4], [f64; 3]); 6] = [
    ([1, 3, 7, 5], [1.0, 0.0, 0.0]),
    ([0, 4, 6, 2], [-1.0, 0.0, 0.0]),
    ([2, 6, 7, 3], [0.0, 1.0, 0.0]),
    ([0, 1, 5, 4], [0.0, -1.0, 0.0]),
    ([4, 5, 7, 6], [0.0, 0.0, 1.0]),
    ([0, 2, 3, 1], [0.0, 0.0, -1.0]),
];

fn draw_box(raster: &mut Raster<'_>, camera: &CameraModel, style: &RenderStyle, body: &BoxBody) {
    let h = body.half_extents_m;
    let corners_camera: [[f64; 3]; 8] = std::array::from_fn(|bits| {
        let local = [
            if bits & 1 != 0 { h[0] } else { -h[0] },
            if bits & 2 != 0 { h[1] } else { -h[1] },
            if bits & 4 != 0 { h[2] } else { -h[2] },
        ];
        camera.to_camera(&body.pose.transform_point(&local))
    });
    let is_block = body.half_extents_m[0] == body.half_extents_m[1]
        && body.half_extents_m[1] == body.half_extents_m[2];
    let gain = if is_block { style.block_gain } else { [1.0; 3] };
    for (cycle, normal_local) in FACES {
        let normal = mat_vec(&body.pose.rotation, &normal_local);
        let normal_camera = mat_vec(&camera.rotation, &normal);
        // Back faces look away from the camera: their normal points along the view ray.
        if dot(&normal_camera, &corners_camera[cycle[0]]) >= 0.0 {
            continue;
        }
        let brightness = style.brightness(&normal);
        let rgb: [u8; 3] =
            std::array::from_fn(|c| to_byte(f64::from(body.color_rgb[c]) * gain[c] * brightness));
        let polygon = cycle.map(|i| corners_camera[i]);
        draw_polygon(raster, camera, &polygon, rgb);
    }
}

/// Clips a convex polygon (camera coordinates) at the near plane, projects and fills it.
fn draw_polygon(
    raster: &mut Raster<'_>,
    camera: &CameraModel,
    polygon: &[[f64; 3]; 4],
    rgb: [u8; 3],
) {
    let mut clipped = [[0.0f64; 3]; 8];
    let mut count = 0;
    for i in 0..polygon.len() {
        let (a, b) = (polygon[i], polygon[(i + 1) % polygon.len()]);
        let (a_in, b_in) = (a[2] >= NEAR_M, b[2] >= NEAR_M);
        if a_in {
            clipped[count] = a;
            count += 1;
        }
        if a_in != b_in {
            let t = (NEAR_M - a[2]) / (b[2] - a[2]);
            clipped[count] = std::array::from_fn(|k| a[k] + t * (b[k] - a[k]));
            count += 1;
        }
    }
    if count < 3 {
        return;
    }
    let screen: [[f32; 3]; 8] = std::array::from_fn(|i| {
        let p = clipped[i];
        if i >= count || p[2] <= 0.0 {
            return [0.0; 3];
        }
        [
            (camera.fx_px * p[0] / p[2] + camera.cx_px) as f32,
            (camera.fy_px * p[1] / p[2] + camera.cy_px) as f32,
            (1.0 / p[2]) as f32,
        ]
    });
    for i in 1..count - 1 {
        raster.fill_triangle(screen[0], screen[i], screen[i + 1], rgb);
    }
}

fn to_byte(value: f64) -> u8 {
    value.round().clamp(0.0, 255.0) as u8
}

fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn mat_vec(m: &[[f64; 3]; 3], v: &[f64; 3]) -> [f64; 3] {
    std::array::from_fn(|row| dot(&m[row], v))
}

fn unit(v: [f64; 3]) -> [f64; 3] {
    let n = dot(&v, &v).sqrt();
    v.map(|c| c / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jittered_styles_differ_by_seed_and_repeat_for_the_same_seed() {
        assert_eq!(RenderStyle::jittered(3), RenderStyle::jittered(3));
        assert_ne!(RenderStyle::jittered(3), RenderStyle::jittered(4));
        let light = RenderStyle::jittered(9).light_direction;
        assert!((dot(&light, &light) - 1.0).abs() < 1e-9 && light[2] > 0.8);
    }

    #[test]
    fn wrong_buffer_size_is_an_error() {
        let mut renderer = Renderer::new(CameraModel::c920_over_shoulder(), RenderStyle::plain());
        let scene = Scene {
            joints_rad: [0.0; 7],
            blocks: Vec::new(),
        };
        let error = renderer.render(&scene, &mut [0u8; 12]).unwrap_err();
        assert!(error.to_string().contains("640x480x3"), "{error}");
    }
}
