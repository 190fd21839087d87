//! Filling flat-coloured triangles into an RGB buffer with a z-buffer of inverse depths
//! (larger = nearer; inverse depth is affine in screen space, so it interpolates exactly).

/// An RGB frame and its inverse-depth buffer, borrowed for one render.
pub(crate) struct Raster<'a> {
    rgb: &'a mut [u8],
    inv_depth: &'a mut [f32],
    pub width: usize,
    pub height: usize,
}

impl<'a> Raster<'a> {
    pub fn new(
        rgb: &'a mut [u8],
        inv_depth: &'a mut [f32],
        width: usize,
        height: usize,
    ) -> Raster<'a> {
        Raster {
            rgb,
            inv_depth,
            width,
            height,
        }
    }

    /// Multiplies pixel `(u, v)` by `gain` (shadows).
    pub fn darken(&mut self, u: usize, v: usize, gain: f64) {
        let start = (v * self.width + u) * 3;
        for value in &mut self.rgb[start..start + 3] {
            *value = (f64::from(*value) * gain).round().clamp(0.0, 255.0) as u8;
        }
    }

    /// Fills the triangle with vertices `[u, v, inverse depth]` (pixel centres at +0.5) where
    /// it is nearer than what is there.
    pub fn fill_triangle(&mut self, a: [f32; 3], b: [f32; 3], c: [f32; 3], rgb: [u8; 3]) {
        let area = edge(a, b, c[0], c[1]);
        if !area.is_finite() || area.abs() < 1e-6 {
            return;
        }
        // Counter-clockwise in pixel coordinates (v down) so that inside means all edges >= 0.
        let (b, c, area) = if area < 0.0 {
            (c, b, -area)
        } else {
            (b, c, area)
        };
        let u_min = a[0].min(b[0]).min(c[0]).floor().max(0.0) as usize;
        let v_min = a[1].min(b[1]).min(c[1]).floor().max(0.0) as usize;
        let u_max =
            (a[0].max(b[0]).max(c[0]).ceil() as isize).clamp(0, self.width as isize) as usize;
        let v_max =
            (a[1].max(b[1]).max(c[1]).ceil() as isize).clamp(0, self.height as isize) as usize;
        if u_min >= u_max || v_min >= v_max {
            return;
        }
        // Edge functions are affine: step them across the row instead of re-evaluating.
        let step_u = [b[1] - c[1], c[1] - a[1], a[1] - b[1]];
        let inv_area = 1.0 / area;
        for v in v_min..v_max {
            let py = v as f32 + 0.5;
            let px = u_min as f32 + 0.5;
            let mut w = [edge(b, c, px, py), edge(c, a, px, py), edge(a, b, px, py)];
            let row = v * self.width;
            for u in u_min..u_max {
                if w[0] >= 0.0 && w[1] >= 0.0 && w[2] >= 0.0 {
                    let depth = (w[0] * a[2] + w[1] * b[2] + w[2] * c[2]) * inv_area;
                    let pixel = row + u;
                    if depth > self.inv_depth[pixel] {
                        self.inv_depth[pixel] = depth;
                        self.rgb[pixel * 3..pixel * 3 + 3].copy_from_slice(&rgb);
                    }
                }
                w[0] += step_u[0];
                w[1] += step_u[1];
                w[2] += step_u[2];
            }
        }
    }
}

/// Twice the signed area of (a, b, p): positive when p is left of a->b in a y-up sense, which with
/// v pointing down means clockwise on screen; consistent signs are all that matter.
fn edge(a: [f32; 3], b: [f32; 3], px: f32, py: f32) -> f32 {
    (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearer_triangle_wins_whatever_the_drawing_order() {
        let (w, h) = (16, 16);
        for near_first in [false, true] {
            let mut rgb = vec![0u8; w * h * 3];
            let mut depth = vec![0.0f32; w * h];
            let mut raster = Raster::new(&mut rgb, &mut depth, w, h);
            let far = (
                [0.0, 0.0, 0.5],
                [32.0, 0.0, 0.5],
                [0.0, 32.0, 0.5],
                [10, 10, 10],
            );
            let near = (
                [16.0, 16.0, 1.0],
                [0.0, 16.0, 1.0],
                [16.0, 0.0, 1.0],
                [200, 0, 0],
            );
            let order = if near_first { [near, far] } else { [far, near] };
            for (a, b, c, color) in order {
                raster.fill_triangle(a, b, c, color);
            }
            // The far triangle covers every pixel; the near one those with u + v + 1 > 16.
            let at = |u: usize, v: usize| &rgb[(v * w + u) * 3..(v * w + u) * 3 + 3];
            assert_eq!(at(2, 2), [10, 10, 10]);
            assert_eq!(at(13, 1), [10, 10, 10]);
            assert_eq!(at(12, 12), [200, 0, 0], "near_first = {near_first}");
        }
    }
}
