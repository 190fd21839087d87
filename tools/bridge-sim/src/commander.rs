//! The play collector's arm commands: Bridge actions carried out with the runtime's own mapper
//! ([`bridge_run::action::ActionMapper`], the one place the Bridge action conventions live), so
//! recorded play data and deployed policies share one meaning of an action. A refused step (no
//! IK solution, or an IK branch jump) holds the previous command and is recorded as a zero
//! motion. The gripper is binary: below 0.5 closes.

use bridge_run::action::{ActionMapper, CommandedPose};
use bridge_run::config::{ActionConfig, WorkspaceConfig};
use widowx::driver::{Arm, DriverError};
use widowx::joints::ARM_JOINTS;
use widowx::pose::{mat3_mul, mat3_transpose, rpy_from_rotation};

/// The commanded pose and what was last sent to the arm.
#[derive(Debug, Clone)]
pub struct Commander {
    mapper: ActionMapper,
    pose: CommandedPose,
    joints_rad: [f64; ARM_JOINTS],
    gripper_open: Option<bool>,
    move_time_s: f64,
}

impl Commander {
    /// Starts from a commanded pose the arm holds at `joints_rad`; each move lasts
    /// `move_time_s`. Step limits and the workspace box are the runtime's defaults.
    pub fn new(
        xyz_m: [f64; 3],
        rpy_rad: [f64; 3],
        joints_rad: [f64; ARM_JOINTS],
        move_time_s: f64,
    ) -> Commander {
        Commander {
            mapper: ActionMapper::new(ActionConfig::default(), WorkspaceConfig::default()),
            pose: CommandedPose::from_xyz_rpy(xyz_m, rpy_rad),
            joints_rad,
            gripper_open: None,
            move_time_s,
        }
    }

    pub fn xyz_m(&self) -> [f64; 3] {
        self.pose.xyz_m
    }

    pub fn rpy_rad(&self) -> [f64; 3] {
        self.pose.rpy_rad()
    }

    /// Applies `action` to the arm; returns the action as carried out (the deltas actually
    /// commanded after clipping, zero when the step was refused; the gripper as 0 or 1).
    pub fn step(&mut self, arm: &mut Arm, action: &[f64; 7]) -> Result<[f64; 7], DriverError> {
        let mut applied = [0.0; 7];
        if let Ok(step) = self.mapper.apply(&self.pose, &self.joints_rad, action) {
            arm.write_joint_goals(&step.joints_rad, self.move_time_s)?;
            applied[..6].copy_from_slice(&applied_delta(&self.pose, &step.pose));
            self.pose = step.pose;
            self.joints_rad = step.joints_rad;
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
}

/// The Bridge delta taking `from` to `to`: position difference, and the roll-pitch-yaw of the
/// base-frame rotation `R_to * R_from^T` (the clipped rotation delta of the step).
fn applied_delta(from: &CommandedPose, to: &CommandedPose) -> [f64; 6] {
    let rotation = mat3_mul(
        &to.relative_rotation,
        &mat3_transpose(&from.relative_rotation),
    );
    let rpy = rpy_from_rotation(&rotation);
    [
        to.xyz_m[0] - from.xyz_m[0],
        to.xyz_m[1] - from.xyz_m[1],
        to.xyz_m[2] - from.xyz_m[2],
        rpy[0],
        rpy[1],
        rpy[2],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use widowx::joints::BRIDGE_NEUTRAL_POSE_RAD;

    #[test]
    fn the_recorded_delta_is_the_clipped_step_the_mapper_took() {
        let mapper = ActionMapper::new(ActionConfig::default(), WorkspaceConfig::default());
        let start = CommandedPose::from_xyz_rpy([0.3, 0.0, 0.15], [0.0, 0.0, 0.2]);
        let action = [0.2, -0.01, 0.0, 0.0, 0.1, 1.0, 1.0];
        let start_joints = mapper.solve(&start, &BRIDGE_NEUTRAL_POSE_RAD).unwrap();
        let step = mapper
            .apply(&start, &start_joints, &action)
            .expect("a reachable step");
        let delta = applied_delta(&start, &step.pose);
        let limits = ActionConfig::default();
        let expected = [limits.max_step_m, -0.01, 0.0, 0.0, 0.1, limits.max_step_rad];
        for (got, want) in delta.iter().zip(expected) {
            assert!((got - want).abs() < 1e-9, "{delta:?} vs {expected:?}");
        }
    }
}
