//! The virtual rig behind `--sim`: a virtual WidowX on a tabletop (protocol-accurate servos on a
//! pseudo-terminal, driven through the real driver) and the rendered over-the-shoulder camera.

use widowx::firmware::FirmwareConfig;
use widowx_driver::{Arm, DriverConfig};
use widowx_sim::{SceneHandle, SimConfig, TabletopConfig, VirtualArm};
use widowx_sim::{SimCamera, SimCameraConfig};

use crate::error::RunError;

/// A virtual arm on a table with blocks; dropping it stops the arm.
#[derive(Debug)]
pub struct SimRig {
    arm: VirtualArm,
    scene: SceneHandle,
}

impl SimRig {
    /// The default blocks at positions drawn from `seed`, the arm in its sleep pose.
    pub fn spawn(seed: u64) -> Result<SimRig, RunError> {
        SimRig::spawn_with(TabletopConfig::new(seed))
    }

    /// A rig with the given tabletop.
    pub fn spawn_with(tabletop: TabletopConfig) -> Result<SimRig, RunError> {
        let arm = VirtualArm::spawn_tabletop(SimConfig::new(FirmwareConfig::wx250s()), tabletop)?;
        let scene = arm.scene_handle().ok_or_else(|| {
            RunError::Sim(widowx_sim::SimError::Config(
                "the tabletop arm has no scene handle".into(),
            ))
        })?;
        Ok(SimRig { arm, scene })
    }

    /// The virtual arm (fault injection, oracle reads).
    pub fn virtual_arm(&self) -> &VirtualArm {
        &self.arm
    }

    /// The live scene (blocks, joints).
    pub fn scene(&self) -> &SceneHandle {
        &self.scene
    }

    /// The real driver connected over the pseudo-terminal, with the virtual arm's reply timeout.
    pub fn connect(&self) -> Result<Arm, RunError> {
        let driver =
            DriverConfig::default().with_reply_timeout_at_least(widowx_sim::DRIVER_REPLY_TIMEOUT_S);
        Ok(Arm::connect(
            self.arm.port_path(),
            FirmwareConfig::wx250s(),
            driver,
        )?)
    }

    /// The rendered camera at `fps`.
    pub fn camera(&self, fps: f64) -> Result<SimCamera, RunError> {
        Ok(SimCamera::new(
            self.scene.clone(),
            SimCameraConfig {
                fps,
                ..SimCameraConfig::default()
            },
        )?)
    }
}
