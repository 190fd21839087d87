//! The play collector's arm commands: Bridge actions carried out with the runtime's own mapper
//! ([`bridge_run::action::ActionMapper`], the one place the Bridge action conventions live), so
//! recorded play data and deployed policies share one meaning of an action. A refused step (no
//! IK solution, or an IK branch jump) holds the previous command and is recorded as a zero
//! motion. The gripper is binary (`widowx::bridge::GRIPPER_CLOSE_BELOW`).

use bridge_run::action::ActionMapper;
use bridge_run::config::{ActionConfig, WorkspaceConfig};
use widowx::bridge::{BridgeAction, CommandedPose};
use widowx::joints::ARM_JOINTS;
use widowx_driver::{Arm, DriverError};

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
    pub fn step(
        &mut self,
        arm: &mut Arm,
        action: &BridgeAction,
    ) -> Result<BridgeAction, DriverError> {
        let mut applied = [0.0; 7];
        if let Ok(step) = self.mapper.apply(&self.pose, &self.joints_rad, action) {
            arm.write_joint_goals(&step.joints_rad, self.move_time_s)?;
            applied[..6].copy_from_slice(&self.pose.delta_to(&step.pose));
            self.pose = step.pose;
            self.joints_rad = step.joints_rad;
        }
        let open = action.gripper_open();
        if self.gripper_open != Some(open) {
            if open {
                arm.gripper_open()?;
            } else {
                arm.gripper_close()?;
            }
            self.gripper_open = Some(open);
        }
        applied[6] = if open { 1.0 } else { 0.0 };
        Ok(BridgeAction::from_array(applied))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use widowx::joints::BRIDGE_NEUTRAL_POSE_RAD;

    #[test]
    fn the_recorded_delta_is_the_clipped_step_the_mapper_took() {
        let mapper = ActionMapper::new(ActionConfig::default(), WorkspaceConfig::default());
        let start = CommandedPose::from_xyz_rpy([0.3, 0.0, 0.15], [0.0, 0.0, 0.2]);
        let action = BridgeAction::from_array([0.2, -0.01, 0.0, 0.0, 0.1, 1.0, 1.0]);
        let start_joints = mapper.solve(&start, &BRIDGE_NEUTRAL_POSE_RAD).unwrap();
        let step = mapper
            .apply(&start, &start_joints, &action)
            .expect("a reachable step");
        let delta = start.delta_to(&step.pose);
        let limits = ActionConfig::default();
        let expected = [limits.max_step_m, -0.01, 0.0, 0.0, 0.1, limits.max_step_rad];
        for (got, want) in delta.iter().zip(expected) {
            assert!((got - want).abs() < 1e-9, "{delta:?} vs {expected:?}");
        }
    }
}
