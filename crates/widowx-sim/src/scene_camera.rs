//! The virtual tabletop's scene camera as a [`FrameSource`]: renders the live scene of a
//! [`SceneHandle`] (the arm as its servos stand, the blocks) at a fixed frame rate, 640x480 by
//! default, each frame stamped when its scene was sampled.

use camera::{CameraError, Frame, FrameSource, Pacer};

use crate::SceneHandle;
use crate::render::{CameraModel, RenderStyle, Renderer};

/// Frame rate of the C920 at 640x480.
pub const DEFAULT_FPS: f64 = 30.0;

/// How the simulated camera runs.
#[derive(Debug, Clone)]
pub struct SimCameraConfig {
    /// Frames per second (> 0).
    pub fps: f64,
    /// Intrinsics and pose; default: the shipped `calibration/camera.toml`.
    pub camera: CameraModel,
    /// Lighting and colours; `None` = the tabletop's own (jittered from its seed if configured).
    pub style: Option<RenderStyle>,
}

impl Default for SimCameraConfig {
    fn default() -> Self {
        SimCameraConfig {
            fps: DEFAULT_FPS,
            camera: CameraModel::c920_over_shoulder(),
            style: None,
        }
    }
}

/// Renders the tabletop at a fixed rate. `next_frame` waits for the next slot of the frame
/// clock; a consumer slower than the clock gets the latest slot (earlier ones are dropped, and
/// the sequence number skips them, as a real camera's would).
#[derive(Debug)]
pub struct SimCamera {
    scene: SceneHandle,
    renderer: Renderer,
    pacer: Pacer,
    fps: f64,
}

impl SimCamera {
    /// A camera on `scene`; the frame rate must be positive and finite.
    pub fn new(scene: SceneHandle, config: SimCameraConfig) -> Result<SimCamera, CameraError> {
        let pacer = Pacer::at_rate(config.fps, "sim camera")?;
        let style = config.style.unwrap_or_else(|| scene.render_style().clone());
        Ok(SimCamera {
            renderer: Renderer::new(config.camera, style),
            scene,
            pacer,
            fps: config.fps,
        })
    }

    pub fn renderer(&self) -> &Renderer {
        &self.renderer
    }
}

impl FrameSource for SimCamera {
    fn next_frame(&mut self) -> Result<Frame, CameraError> {
        let (captured_at, sequence) = self.pacer.wait_next();
        let scene = self.scene.scene();
        let mut rgb = vec![0u8; self.renderer.frame_len()];
        self.renderer
            .render(&scene, &mut rgb)
            .map_err(|e| CameraError::Source {
                source_name: self.describe(),
                reason: e.to_string(),
            })?;
        Ok(Frame {
            rgb,
            width_px: self.renderer.width_px(),
            height_px: self.renderer.height_px(),
            captured_at,
            sequence,
        })
    }

    fn describe(&self) -> String {
        format!(
            "sim tabletop {}x{} @{}",
            self.renderer.width_px(),
            self.renderer.height_px(),
            self.fps
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{SimConfig, TabletopConfig, VirtualArm};
    use widowx::firmware::FirmwareConfig;

    use super::*;

    fn tabletop() -> VirtualArm {
        VirtualArm::spawn_tabletop(
            SimConfig::new(FirmwareConfig::wx250s()),
            TabletopConfig::new(3),
        )
        .unwrap()
    }

    #[test]
    fn frames_come_at_the_frame_rate_with_sequence_numbers() {
        let sim = tabletop();
        let config = SimCameraConfig {
            fps: 50.0,
            ..SimCameraConfig::default()
        };
        let mut camera = SimCamera::new(sim.scene_handle().unwrap(), config).unwrap();
        let frames: Vec<Frame> = (0..3).map(|_| camera.next_frame().unwrap()).collect();
        for (i, frame) in frames.iter().enumerate() {
            assert_eq!((frame.width_px, frame.height_px), (640, 480));
            assert_eq!(frame.rgb.len(), 640 * 480 * 3);
            assert_eq!(frame.sequence, i as u64);
        }
        for pair in frames.windows(2) {
            let gap = pair[1].captured_at - pair[0].captured_at;
            assert!(
                gap >= Duration::from_millis(15),
                "{gap:?} between frames at 50 fps"
            );
        }
        assert_eq!(frames[0].rgb, frames[2].rgb, "nothing moved, same picture");
        // A consumer that falls behind gets the latest slot; the sequence shows the drops.
        std::thread::sleep(Duration::from_millis(110));
        let late = camera.next_frame().unwrap();
        assert!(
            late.sequence >= 6,
            "sequence {} after a 110 ms pause",
            late.sequence
        );
        assert!(camera.describe().contains("640x480 @50"));
    }

    #[test]
    fn the_frame_shows_the_scene_reset() {
        let sim = tabletop();
        let handle = sim.scene_handle().unwrap();
        let mut camera = SimCamera::new(handle.clone(), SimCameraConfig::default()).unwrap();
        let before = camera.next_frame().unwrap();
        handle
            .set_block_positions(&[[0.2, -0.1], [0.25, 0.2], [0.4, 0.05]])
            .unwrap();
        let after = camera.next_frame().unwrap();
        assert_ne!(before.rgb, after.rgb);
    }

    #[test]
    fn a_bad_rate_is_refused() {
        let sim = tabletop();
        for fps in [0.0, -1.0, f64::NAN] {
            let config = SimCameraConfig {
                fps,
                ..SimCameraConfig::default()
            };
            let error = SimCamera::new(sim.scene_handle().unwrap(), config).unwrap_err();
            assert!(error.to_string().contains("fps"), "{error}");
        }
    }
}
