//! A pinhole camera: intrinsics in pixels and a pose given as a position and a point it looks at,
//! read from `calibration/camera.toml`.

use std::path::Path;

use serde::Deserialize;

use crate::render::RenderError;

/// The shipped calibration (Logitech C920 over the arm's right shoulder, 640x480).
pub const DEFAULT_CALIBRATION_TOML: &str = include_str!("../../../../calibration/camera.toml");

/// Pinhole intrinsics and pose of the scene camera. Camera axes: x right, y down, z forward.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraModel {
    pub width_px: u32,
    pub height_px: u32,
    pub fx_px: f64,
    pub fy_px: f64,
    pub cx_px: f64,
    pub cy_px: f64,
    /// Optical centre in `base_link`, m.
    pub position_m: [f64; 3],
    /// Rows are the camera's x (right), y (down) and z (forward) axes in `base_link`:
    /// `p_camera = rotation * (p_base - position_m)`.
    pub rotation: [[f64; 3]; 3],
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CalibrationFile {
    camera: IntrinsicsSection,
    pose: PoseSection,
    /// The region the model sees; read and checked by `camera::preprocess::Crop`, not used
    /// for rendering.
    #[serde(default)]
    #[allow(dead_code)]
    crop: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntrinsicsSection {
    #[serde(default)]
    #[allow(dead_code)] // documentation in the file
    model: Option<String>,
    width_px: u32,
    height_px: u32,
    fx_px: f64,
    fy_px: f64,
    cx_px: f64,
    cy_px: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoseSection {
    position_m: [f64; 3],
    look_at_m: [f64; 3],
    #[serde(default = "default_up")]
    up: [f64; 3],
}

fn default_up() -> [f64; 3] {
    [0.0, 0.0, 1.0]
}

impl CameraModel {
    /// The shipped calibration ([`DEFAULT_CALIBRATION_TOML`]).
    pub fn c920_over_shoulder() -> CameraModel {
        // The shipped file is checked by a unit test, so this cannot fail at run time.
        CameraModel::from_toml_str(DEFAULT_CALIBRATION_TOML, "calibration/camera.toml")
            .unwrap_or_else(|e| panic!("the shipped camera calibration is invalid: {e}"))
    }

    /// Reads a calibration file.
    pub fn load(path: &Path) -> Result<CameraModel, RenderError> {
        let text = std::fs::read_to_string(path).map_err(|e| RenderError::Calibration {
            origin: path.display().to_string(),
            reason: e.to_string(),
        })?;
        CameraModel::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses calibration TOML; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<CameraModel, RenderError> {
        let fail = |reason: String| RenderError::Calibration {
            origin: origin.to_string(),
            reason,
        };
        let file: CalibrationFile = toml::from_str(text).map_err(|e| fail(e.to_string()))?;
        let c = &file.camera;
        if c.width_px == 0 || c.height_px == 0 {
            return Err(fail(format!(
                "camera.width_px x height_px = {}x{}; expected both > 0",
                c.width_px, c.height_px
            )));
        }
        for (field, value) in [("fx_px", c.fx_px), ("fy_px", c.fy_px)] {
            if !(value.is_finite() && value > 0.0) {
                return Err(fail(format!("camera.{field} = {value}; expected > 0")));
            }
        }
        let rotation = look_at_rotation(&file.pose).map_err(fail)?;
        Ok(CameraModel {
            width_px: c.width_px,
            height_px: c.height_px,
            fx_px: c.fx_px,
            fy_px: c.fy_px,
            cx_px: c.cx_px,
            cy_px: c.cy_px,
            position_m: file.pose.position_m,
            rotation,
        })
    }

    /// A base-frame point in camera coordinates.
    pub fn to_camera(&self, point_m: &[f64; 3]) -> [f64; 3] {
        let d = [
            point_m[0] - self.position_m[0],
            point_m[1] - self.position_m[1],
            point_m[2] - self.position_m[2],
        ];
        std::array::from_fn(|row| {
            self.rotation[row][0] * d[0]
                + self.rotation[row][1] * d[1]
                + self.rotation[row][2] * d[2]
        })
    }

    /// Pixel coordinates `(u, v)` of a base-frame point (`u` right, `v` down, pixel centres at
    /// `+0.5`), or `None` if it is not in front of the camera.
    pub fn project(&self, point_m: &[f64; 3]) -> Option<[f64; 2]> {
        let c = self.to_camera(point_m);
        (c[2] > 1e-6).then(|| {
            [
                self.fx_px * c[0] / c[2] + self.cx_px,
                self.fy_px * c[1] / c[2] + self.cy_px,
            ]
        })
    }

    /// The direction (not normalised, camera z = 1) through pixel `(u, v)`, in `base_link`.
    pub fn ray_direction(&self, u_px: f64, v_px: f64) -> [f64; 3] {
        let d = [
            (u_px - self.cx_px) / self.fx_px,
            (v_px - self.cy_px) / self.fy_px,
            1.0,
        ];
        std::array::from_fn(|axis| {
            self.rotation[0][axis] * d[0]
                + self.rotation[1][axis] * d[1]
                + self.rotation[2][axis] * d[2]
        })
    }
}

fn look_at_rotation(pose: &PoseSection) -> Result<[[f64; 3]; 3], String> {
    let all_finite = pose
        .position_m
        .iter()
        .chain(&pose.look_at_m)
        .chain(&pose.up)
        .all(|v| v.is_finite());
    if !all_finite {
        return Err("pose.position_m, look_at_m and up must be finite".into());
    }
    let forward = normalised(sub(&pose.look_at_m, &pose.position_m))
        .ok_or("pose.look_at_m equals pose.position_m; expected a point to look at")?;
    let right = normalised(cross(&forward, &pose.up))
        .ok_or("pose.up is parallel to the viewing direction; expected another up vector")?;
    let down = cross(&forward, &right);
    Ok([right, down, forward])
}

fn sub(a: &[f64; 3], b: &[f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn cross(a: &[f64; 3], b: &[f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn normalised(v: [f64; 3]) -> Option<[f64; 3]> {
    let n = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    (n > 1e-9).then(|| [v[0] / n, v[1] / n, v[2] / n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_calibration_parses_and_sees_the_workspace() {
        let camera = CameraModel::from_toml_str(DEFAULT_CALIBRATION_TOML, "shipped").unwrap();
        assert_eq!((camera.width_px, camera.height_px), (640, 480));
        // Bridge's evaluation workspace box, at table level and at its top.
        for x in [0.10, 0.45] {
            for y in [-0.15, 0.25] {
                for z in [0.0, 0.25] {
                    let [u, v] = camera.project(&[x, y, z]).unwrap();
                    assert!(
                        (0.0..640.0).contains(&u) && (0.0..480.0).contains(&v),
                        "({x}, {y}, {z}) projects to ({u}, {v})"
                    );
                }
            }
        }
    }

    #[test]
    fn look_at_point_projects_to_the_principal_point() {
        let text = "[camera]\nwidth_px = 640\nheight_px = 480\nfx_px = 600.0\nfy_px = 600.0\n\
                    cx_px = 320.0\ncy_px = 240.0\n[pose]\nposition_m = [0.0, 0.0, 1.0]\n\
                    look_at_m = [0.5, 0.2, 0.0]\n";
        let camera = CameraModel::from_toml_str(text, "t").unwrap();
        let [u, v] = camera.project(&[0.5, 0.2, 0.0]).unwrap();
        assert!((u - 320.0).abs() < 1e-9 && (v - 240.0).abs() < 1e-9);
        // A point to the camera's left (base +y when looking along +x) lands left of centre.
        let [u_left, _] = camera.project(&[0.5, 0.4, 0.0]).unwrap();
        assert!(u_left < 320.0);
        let d = camera.ray_direction(u, v);
        let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        let expected = normalised([0.5, 0.2, -1.0]).unwrap();
        for axis in 0..3 {
            assert!((d[axis] / n - expected[axis]).abs() < 1e-9);
        }
    }

    #[test]
    fn bad_calibration_names_the_field() {
        let text = "[camera]\nwidth_px = 640\nheight_px = 480\nfx_px = -1.0\nfy_px = 600.0\n\
                    cx_px = 320.0\ncy_px = 240.0\n[pose]\nposition_m = [0.0, 0.0, 1.0]\n\
                    look_at_m = [0.5, 0.2, 0.0]\n";
        let error = CameraModel::from_toml_str(text, "cam.toml")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cam.toml") && error.contains("fx_px"),
            "{error}"
        );
        let missing = CameraModel::from_toml_str("[camera]\n", "cam.toml").unwrap_err();
        assert!(missing.to_string().contains("cam.toml"));
    }
}
