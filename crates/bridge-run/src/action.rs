//! Bridge actions to joint targets for the control thread. What an action means (a delta on the
//! previously commanded pose, clipped per step and to the workspace box, rotations about the
//! base axes through the gripper) is `widowx::bridge`; this module adds the station's settings
//! (`[action]` and `[workspace]` of the runtime configuration) and IK:
//!
//! - IK is seeded with the last commanded joints; a solution that moves any joint further than
//!   `max_ik_jump_rad` (a jump to another IK branch) or no solution at all holds instead;
//! - the gripper is binary with a sticky threshold ([`StickyGripper`]).
//!
//! Pure and allocation-free: the control thread calls it at policy rate and for keyboard jogs.

use widowx::bridge::{BridgeAction, WorkspaceBox};
pub use widowx::bridge::{Clipped, CommandedPose};
use widowx::joints::ARM_JOINTS;
use widowx::kinematics::{IkConfig, inverse};

use crate::config::{ActionConfig, WorkspaceConfig};

/// Why a step was not taken (the arm holds its last target).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepRefused {
    /// Component `index` of the action is NaN or infinite.
    NonFinite { index: usize },
    /// IK found no joints for the target.
    IkFailed {
        xyz_m: [f64; 3],
        position_error_m: f64,
    },
    /// IK's answer moves `joint` (arm index) by `jump_rad`, more than allowed.
    IkJump { joint: usize, jump_rad: f64 },
}

impl std::fmt::Display for StepRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepRefused::NonFinite { index } => {
                write!(
                    f,
                    "action component {index} is not finite (NaN or infinity)"
                )
            }
            StepRefused::IkFailed {
                xyz_m,
                position_error_m,
            } => write!(
                f,
                "no IK solution for target x {:.3} y {:.3} z {:.3} m (best {:.1} mm away)",
                xyz_m[0],
                xyz_m[1],
                xyz_m[2],
                position_error_m * 1e3
            ),
            StepRefused::IkJump { joint, jump_rad } => write!(
                f,
                "IK solution jumps {} by {jump_rad:.2} rad",
                widowx::joints::Joint::ALL[*joint]
            ),
        }
    }
}

/// A step that was taken: the new commanded pose and the joints that reach it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub pose: CommandedPose,
    pub joints_rad: [f64; ARM_JOINTS],
    pub clipped: Clipped,
}

/// Turns Bridge actions and jogs into joint targets.
#[derive(Debug, Clone)]
pub struct ActionMapper {
    action: ActionConfig,
    workspace: WorkspaceConfig,
    ik: IkConfig,
}

impl ActionMapper {
    pub fn new(action: ActionConfig, workspace: WorkspaceConfig) -> ActionMapper {
        ActionMapper {
            action,
            workspace,
            ik: IkConfig::default(),
        }
    }

    /// Applies the arm part of a Bridge action to the commanded pose (`commanded_joints_rad`
    /// reach it and seed IK). The gripper component is not looked at here ([`StickyGripper`]).
    pub fn apply(
        &self,
        commanded: &CommandedPose,
        commanded_joints_rad: &[f64; ARM_JOINTS],
        action: &BridgeAction,
    ) -> Result<Step, StepRefused> {
        if let Some(index) = action.first_non_finite() {
            return Err(StepRefused::NonFinite { index });
        }
        let (pose, clipped) =
            commanded.step(action, &self.action.step_limits(), &self.workspace_box());
        self.reach(pose, commanded_joints_rad, clipped)
    }

    /// A keyboard jog: the commanded position moved by `delta_m` in the base frame (clipped to
    /// the box), orientation kept.
    pub fn jog(
        &self,
        commanded: &CommandedPose,
        commanded_joints_rad: &[f64; ARM_JOINTS],
        delta_m: [f64; 3],
    ) -> Result<Step, StepRefused> {
        let (pose, in_box) = commanded.translated(delta_m, &self.workspace_box());
        let clipped = Clipped {
            step: false,
            workspace: !in_box,
        };
        self.reach(pose, commanded_joints_rad, clipped)
    }

    fn workspace_box(&self) -> WorkspaceBox {
        self.workspace.workspace_box()
    }

    /// Joints for `pose` near `seed_rad`, without the jump check (for the reset to the start
    /// pose, a planned joint-space move).
    pub fn solve(
        &self,
        pose: &CommandedPose,
        seed_rad: &[f64; ARM_JOINTS],
    ) -> Result<[f64; ARM_JOINTS], StepRefused> {
        inverse(&pose.ee_pose(), seed_rad, &self.ik).map_err(|e| StepRefused::IkFailed {
            xyz_m: pose.xyz_m,
            position_error_m: match e {
                widowx::kinematics::IkError::NotReached {
                    position_error_m, ..
                } => position_error_m,
                _ => f64::INFINITY,
            },
        })
    }

    fn reach(
        &self,
        pose: CommandedPose,
        seed_rad: &[f64; ARM_JOINTS],
        clipped: Clipped,
    ) -> Result<Step, StepRefused> {
        let joints_rad = self.solve(&pose, seed_rad)?;
        let (joint, jump_rad) = largest_change(seed_rad, &joints_rad);
        if jump_rad > self.action.max_ik_jump_rad {
            return Err(StepRefused::IkJump { joint, jump_rad });
        }
        Ok(Step {
            pose,
            joints_rad,
            clipped,
        })
    }

    /// The jog step of the keyboard, m.
    pub fn jog_step_m(&self) -> f64 {
        self.action.jog_step_m
    }
}

/// The arm joint that differs most between `a` and `b`, and by how much, rad.
pub fn largest_change(a: &[f64; ARM_JOINTS], b: &[f64; ARM_JOINTS]) -> (usize, f64) {
    (0..ARM_JOINTS)
        .map(|i| (i, (a[i] - b[i]).abs()))
        .fold((0, 0.0), |best, c| if c.1 > best.1 { c } else { best })
}

/// The binary gripper of Bridge evaluation: closed below the threshold, open at or above it,
/// switching only after `sticky_steps` consecutive steps ask for the other state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StickyGripper {
    threshold: f64,
    sticky_steps: u32,
    closed: bool,
    pending_steps: u32,
}

impl StickyGripper {
    /// Starts open.
    pub fn new(threshold: f64, sticky_steps: u32) -> StickyGripper {
        StickyGripper {
            threshold,
            sticky_steps: sticky_steps.max(1),
            closed: false,
            pending_steps: 0,
        }
    }

    /// Feeds one step's gripper value; returns whether the gripper is now closed.
    /// A non-finite value changes nothing.
    pub fn update(&mut self, value: f64) -> bool {
        if !value.is_finite() {
            return self.closed;
        }
        let wants_closed = value < self.threshold;
        if wants_closed == self.closed {
            self.pending_steps = 0;
        } else {
            self.pending_steps += 1;
            if self.pending_steps >= self.sticky_steps {
                self.closed = wants_closed;
                self.pending_steps = 0;
            }
        }
        self.closed
    }

    /// Sets the state directly (keyboard toggle, reset), forgetting pending steps.
    pub fn set_closed(&mut self, closed: bool) {
        self.closed = closed;
        self.pending_steps = 0;
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// What the Bridge action records for this state: exactly 0 (closed) or 1 (open).
    pub fn as_action_value(&self) -> f64 {
        if self.closed { 0.0 } else { 1.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use widowx::kinematics::forward;
    use widowx::pose::{mat3_mul, rotation_angle_between, rotation_from_rpy};

    fn act(a: [f64; 7]) -> BridgeAction {
        BridgeAction::from_array(a)
    }

    fn mapper() -> ActionMapper {
        ActionMapper::new(ActionConfig::default(), WorkspaceConfig::default())
    }

    fn start() -> (CommandedPose, [f64; ARM_JOINTS]) {
        let m = mapper();
        let pose = CommandedPose::from_xyz_rpy([0.3, 0.0, 0.15], [0.0; 3]);
        let joints = m
            .solve(&pose, &widowx::joints::BRIDGE_NEUTRAL_POSE_RAD)
            .unwrap();
        (pose, joints)
    }

    fn close(a: [f64; 3], b: [f64; 3], tol: f64) -> bool {
        (0..3).all(|i| (a[i] - b[i]).abs() < tol)
    }

    #[test]
    fn delta_applies_to_the_commanded_pose_and_ik_reaches_it() {
        let (pose, joints) = start();
        let step = mapper()
            .apply(
                &pose,
                &joints,
                &act([0.02, -0.01, 0.01, 0.0, 0.0, 0.0, 1.0]),
            )
            .unwrap();
        assert!(close(step.pose.xyz_m, [0.32, -0.01, 0.16], 1e-12));
        let reached = forward(&step.joints_rad).position_m;
        assert!(close(reached, step.pose.xyz_m, 1.5e-3), "{reached:?}");
        assert_eq!(step.clipped, Clipped::default());
        // Two steps from the commanded pose add up exactly, whatever the arm measured.
        let again = mapper()
            .apply(
                &step.pose,
                &step.joints_rad,
                &act([0.02, -0.01, 0.01, 0.0, 0.0, 0.0, 1.0]),
            )
            .unwrap();
        assert!(close(again.pose.xyz_m, [0.34, -0.02, 0.17], 1e-12));
    }

    #[test]
    fn steps_are_clipped_per_component_then_to_the_box() {
        let (pose, joints) = start();
        let step = mapper()
            .apply(&pose, &joints, &act([0.2, 0.0, -0.03, 0.0, 0.0, 0.0, 1.0]))
            .unwrap();
        assert!(close(step.pose.xyz_m, [0.35, 0.0, 0.12], 1e-12));
        assert!(step.clipped.step && !step.clipped.workspace);
        let low = CommandedPose::from_xyz_rpy([0.3, 0.0, 0.0], [0.0; 3]);
        let low_joints = mapper().solve(&low, &joints).unwrap();
        let step = mapper()
            .apply(
                &low,
                &low_joints,
                &act([0.0, 0.0, -0.04, 0.0, 0.0, 0.0, 1.0]),
            )
            .unwrap();
        assert!(close(step.pose.xyz_m, [0.3, 0.0, -0.01], 1e-12));
        assert!(step.clipped.workspace && !step.clipped.step);
    }

    #[test]
    fn rotations_are_about_base_axes_and_clipped() {
        let (pose, joints) = start();
        let step = mapper()
            .apply(&pose, &joints, &act([0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 1.0]))
            .unwrap();
        let rpy = step.pose.rpy_rad();
        assert!(close(rpy, [0.0, 0.0, 0.1], 1e-9), "{rpy:?}");
        // Yaw then roll: base-frame roll left-multiplies, so it is Rx(roll) * Rz(yaw).
        let step2 = mapper()
            .apply(
                &step.pose,
                &step.joints_rad,
                &act([0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 1.0]),
            )
            .unwrap();
        let expected = mat3_mul(
            &rotation_from_rpy([0.1, 0.0, 0.0]),
            &rotation_from_rpy([0.0, 0.0, 0.1]),
        );
        assert!(rotation_angle_between(&step2.pose.relative_rotation, &expected) < 1e-9);
        let reached = CommandedPose::from_joints(&step2.joints_rad);
        assert!(rotation_angle_between(&reached.relative_rotation, &expected) < 0.011);
        let big = mapper()
            .apply(&pose, &joints, &act([0.0, 0.0, 0.0, 0.0, 0.0, 0.9, 1.0]))
            .unwrap();
        assert!((big.pose.rpy_rad()[2] - 0.25).abs() < 1e-9);
        assert!(big.clipped.step);
    }

    #[test]
    fn non_finite_actions_are_refused() {
        let (pose, joints) = start();
        for (index, bad) in [(0, f64::NAN), (4, f64::INFINITY), (6, f64::NEG_INFINITY)] {
            let mut action = [0.0; 7];
            action[index] = bad;
            assert_eq!(
                mapper().apply(&pose, &joints, &act(action)),
                Err(StepRefused::NonFinite { index })
            );
        }
    }

    #[test]
    fn ik_jumps_beyond_the_limit_hold() {
        let (pose, joints) = start();
        let strict = ActionMapper::new(
            ActionConfig {
                max_ik_jump_rad: 0.01,
                ..ActionConfig::default()
            },
            WorkspaceConfig::default(),
        );
        let refused = strict
            .apply(&pose, &joints, &act([0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]))
            .unwrap_err();
        assert!(matches!(refused, StepRefused::IkJump { jump_rad, .. } if jump_rad > 0.01));
        // A seed far from the pose makes IK land far from it: refused, not followed.
        let mut far_seed = joints;
        far_seed[0] += 1.5;
        let refused = mapper()
            .apply(&pose, &far_seed, &act([0.0; 7]))
            .unwrap_err();
        assert!(
            matches!(refused, StepRefused::IkJump { joint: 0, .. }),
            "{refused:?}"
        );
    }

    #[test]
    fn unreachable_targets_are_refused() {
        let far = ActionMapper::new(
            ActionConfig::default(),
            WorkspaceConfig {
                max_m: [2.0, 2.0, 2.0],
                ..WorkspaceConfig::default()
            },
        );
        let pose = CommandedPose::from_xyz_rpy([1.5, 0.0, 0.15], [0.0; 3]);
        let (_, joints) = start();
        let refused = far.jog(&pose, &joints, [0.0; 3]).unwrap_err();
        assert!(matches!(refused, StepRefused::IkFailed { .. }));
        assert!(refused.to_string().contains("no IK solution"));
    }

    #[test]
    fn jog_moves_in_the_base_frame_within_the_box() {
        let (pose, joints) = start();
        let step = mapper().jog(&pose, &joints, [0.0, 0.01, 0.0]).unwrap();
        assert!(close(step.pose.xyz_m, [0.3, 0.01, 0.15], 1e-12));
        let step = mapper().jog(&pose, &joints, [0.0, 0.0, 0.5]).unwrap();
        assert!(close(step.pose.xyz_m, [0.3, 0.0, 0.25], 1e-12));
        assert!(step.clipped.workspace);
    }

    #[test]
    fn from_joints_inverts_ee_pose() {
        let (_, joints) = start();
        let pose = CommandedPose::from_joints(&joints);
        let ee = forward(&joints);
        assert!(close(pose.ee_pose().position_m, ee.position_m, 1e-12));
        assert!(rotation_angle_between(&pose.ee_pose().rotation, &ee.rotation) < 1e-9);
    }

    #[test]
    fn gripper_threshold_is_sticky() {
        let mut g = StickyGripper::new(0.5, 1);
        assert!(!g.is_closed());
        assert!(g.update(0.49));
        assert!(!g.update(0.5));
        assert!(!g.update(f64::NAN));
        let mut g = StickyGripper::new(0.5, 3);
        assert!(!g.update(0.1));
        assert!(!g.update(0.1));
        assert!(!g.update(0.9)); // the streak restarts
        assert!(!g.update(0.1));
        assert!(!g.update(0.1));
        assert!(g.update(0.1));
        assert_eq!(g.as_action_value(), 0.0);
        g.set_closed(false);
        assert_eq!(g.as_action_value(), 1.0);
    }
}
