//! Bridge action semantics for the play collector (widowx.md, "Bridge conventions"): each action
//! is a delta on the previously COMMANDED pose, translations clipped to 0.05 m and rotations to
//! 0.25 rad per step, rotations about the base axes through the end-effector
//! (`R_new = Rz * Ry * Rx * R_commanded`, orientations relative to the gripper pointing down), the
//! position clipped to the workspace box, IK seeded with the last commanded joints; no solution,
//! or one that jumps a joint by more than [`MAX_IK_JUMP_RAD`], holds the previous command. The
//! gripper is binary: below 0.5 closes.
//!
//! The same rules as `bridge_run::action` (the runtime's mapper); kept here so the collector does
//! not depend on the runtime crate.

use widowx::driver::{Arm, DriverError};
use widowx::joints::ARM_JOINTS;
use widowx::kinematics::{IkConfig, bridge_target_pose, inverse};
use widowx::pose::{Rotation, mat3_mul, rotation_from_rpy, rpy_from_rotation};

/// Largest translation per step, m, and rotation per step, rad.
pub const MAX_STEP_M: f64 = 0.05;
pub const MAX_STEP_RAD: f64 = 0.25;
/// Bridge's evaluation workspace box, m.
pub const WORKSPACE_MIN_M: [f64; 3] = [0.10, -0.15, -0.01];
pub const WORKSPACE_MAX_M: [f64; 3] = [0.45, 0.25, 0.25];
/// An IK answer moving a joint further than this from the last command is another branch: hold.
pub const MAX_IK_JUMP_RAD: f64 = 1.0;

/// The commanded pose and what was last sent to the arm.
#[derive(Debug, Clone)]
pub struct Commander {
    xyz_m: [f64; 3],
    rotation: Rotation,
    joints_rad: [f64; ARM_JOINTS],
    gripper_open: Option<bool>,
    move_time_s: f64,
    ik: IkConfig,
}

/// The pose an action asks for, before IK.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Requested {
    pub xyz_m: [f64; 3],
    pub rotation: Rotation,
    /// The clipped rotation delta.
    pub rotation_delta_rad: [f64; 3],
}

impl Commander {
    /// Starts from a commanded pose the arm holds at `joints_rad`; each move lasts
    /// `move_time_s`.
    pub fn new(
        xyz_m: [f64; 3],
        rpy_rad: [f64; 3],
        joints_rad: [f64; ARM_JOINTS],
        move_time_s: f64,
    ) -> Commander {
        Commander {
            xyz_m,
            rotation: rotation_from_rpy(rpy_rad),
            joints_rad,
            gripper_open: None,
            move_time_s,
            ik: IkConfig::default(),
        }
    }

    pub fn xyz_m(&self) -> [f64; 3] {
        self.xyz_m
    }

    pub fn rpy_rad(&self) -> [f64; 3] {
        rpy_from_rotation(&self.rotation)
    }

    /// The pose `action` asks for: clipped deltas applied to the commanded pose, the position
    /// clipped to the workspace box.
    pub fn requested(&self, action: &[f64; 7]) -> Requested {
        let xyz_m = std::array::from_fn(|axis| {
            let delta = clip(action[axis], MAX_STEP_M);
            (self.xyz_m[axis] + delta).clamp(WORKSPACE_MIN_M[axis], WORKSPACE_MAX_M[axis])
        });
        let rotation_delta_rad = std::array::from_fn(|axis| clip(action[3 + axis], MAX_STEP_RAD));
        Requested {
            xyz_m,
            rotation: mat3_mul(&rotation_from_rpy(rotation_delta_rad), &self.rotation),
            rotation_delta_rad,
        }
    }

    /// Applies `action` to the arm; returns the action as carried out (the deltas actually
    /// commanded after clipping, zero when IK held; the gripper as 0 or 1).
    pub fn step(&mut self, arm: &mut Arm, action: &[f64; 7]) -> Result<[f64; 7], DriverError> {
        let requested = self.requested(action);
        let mut applied = [0.0; 7];
        if let Some(joints_rad) = self.solve(&requested) {
            arm.write_joint_goals(&joints_rad, self.move_time_s)?;
            for axis in 0..3 {
                applied[axis] = requested.xyz_m[axis] - self.xyz_m[axis];
                applied[3 + axis] = requested.rotation_delta_rad[axis];
            }
            self.xyz_m = requested.xyz_m;
            self.rotation = requested.rotation;
            self.joints_rad = joints_rad;
        }
        let open = action[6] >= 0.5;
        if self.gripper_open != Some(open) {
            if open {
                arm.gripper_open()?;
            } else {
                arm.gripper_close()?;
            }
            self.gripper_open = Some(open);
        }
        applied[6] = if open { 1.0 } else { 0.0 };
        Ok(applied)
    }

    /// Joints for the requested pose near the last command, if any.
    fn solve(&self, requested: &Requested) -> Option<[f64; ARM_JOINTS]> {
        let target = bridge_target_pose(requested.xyz_m, rpy_from_rotation(&requested.rotation));
        let joints_rad = inverse(&target, &self.joints_rad, &self.ik).ok()?;
        let jump_rad = joints_rad
            .iter()
            .zip(&self.joints_rad)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        (jump_rad <= MAX_IK_JUMP_RAD).then_some(joints_rad)
    }
}

fn clip(value: f64, limit: f64) -> f64 {
    if value.is_finite() {
        value.clamp(-limit, limit)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_clipped_and_the_position_kept_in_the_box() {
        let commander = Commander::new([0.3, 0.0, 0.15], [0.0; 3], [0.0; ARM_JOINTS], 0.25);
        let requested = commander.requested(&[0.2, -0.01, 0.0, 0.0, 0.0, 1.0, 1.0]);
        assert!(
            (requested.xyz_m[0] - 0.35).abs() < 1e-12,
            "dx clipped to 5 cm"
        );
        assert!((requested.xyz_m[1] + 0.01).abs() < 1e-12);
        assert_eq!(requested.rotation_delta_rad, [0.0, 0.0, MAX_STEP_RAD]);
        let near_edge = Commander::new([0.44, 0.24, 0.0], [0.0; 3], [0.0; ARM_JOINTS], 0.25);
        let clipped = near_edge.requested(&[0.05, 0.05, -0.05, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(clipped.xyz_m, [0.45, 0.25, -0.01]);
    }

    #[test]
    fn rotation_deltas_compose_about_base_axes() {
        let commander = Commander::new([0.3, 0.0, 0.15], [0.0, 0.0, 0.2], [0.0; ARM_JOINTS], 0.25);
        let requested = commander.requested(&[0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 1.0]);
        let rpy = rpy_from_rotation(&requested.rotation);
        assert!((rpy[2] - 0.3).abs() < 1e-12, "{rpy:?}");
    }
}
