//! The BridgeData V2 conventions, in one place (docs/widowx.md, "Bridge conventions"): what an
//! action means, what the state vector holds, the start pose, the evaluation workspace box,
//! the per-step clipping and the gripper's open fraction. The runtime, the simulator's play
//! collector and the dataset readers all use these, so a recorded action and a deployed one
//! mean the same motion.
//!
//! ```
//! use widowx::bridge::{BridgeAction, CommandedPose, StepLimits, WorkspaceBox, START_XYZ_M};
//! let start = CommandedPose::from_xyz_rpy(START_XYZ_M, [0.0; 3]);
//! let action = BridgeAction::from_array([0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
//! let (next, clipped) = start.step(&action, &StepLimits::BRIDGE, &WorkspaceBox::BRIDGE_EVAL);
//! assert!(clipped.step); // 0.2 m is clipped to 0.05 m per step
//! assert!((next.xyz_m[0] - 0.35).abs() < 1e-12);
//! assert!((start.delta_to(&next)[0] - 0.05).abs() < 1e-12);
//! ```

use crate::joints::ARM_JOINTS;
use crate::kinematics::forward;
use crate::pose::{Pose, Rotation, mat3_mul, mat3_transpose, rotation_from_rpy, rpy_from_rotation};

/// Entries of an action `[dx, dy, dz, droll, dpitch, dyaw, gripper]` and of a state
/// `[x, y, z, roll, pitch, yaw, gripper]`.
pub const ACTION_DIM: usize = 7;
/// Index of the gripper in an action and in a state.
pub const GRIPPER_INDEX: usize = 6;
/// One policy step every 0.2 s (5 Hz).
pub const POLICY_PERIOD_S: f64 = 0.2;
/// Where every episode starts: the gripper at this position, pointing down, no rotation, m.
pub const START_XYZ_M: [f64; 3] = [0.3, 0.0, 0.15];
/// The start orientation (Bridge roll-pitch-yaw relative to the gripper pointing down), rad.
pub const START_RPY_RAD: [f64; 3] = [0.0; 3];
/// An action's gripper value below this closes the gripper; at or above it opens.
pub const GRIPPER_CLOSE_BELOW: f64 = 0.5;
/// Finger position (each pad from the gripper's centre plane) the state calls 0 (closed), m.
pub const FINGER_CLOSED_M: f64 = 0.010;
/// Finger position the state calls 1 (open), m.
pub const FINGER_OPEN_M: f64 = 0.035;
/// Radius of the gripper servo's horn (Interbotix `horn_radius`), m.
pub const GRIPPER_HORN_RADIUS_M: f64 = 0.014;
/// Length of the link from the horn to a finger (Interbotix `arm_length`), m.
pub const GRIPPER_ARM_LENGTH_M: f64 = 0.024;

/// The Bridge "gripper pointing down" rotation Ry(+pi/2), written out exactly: `ee_gripper_link`'s
/// x axis (the direction the fingers point) along -z of `base_link`. Bridge orientations are
/// relative to it: `R_ee = R_rpy * GRIPPER_DOWN_ROTATION` (the Bridge stack's `default_rot`).
pub const GRIPPER_DOWN_ROTATION: Rotation = [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]];

/// One Bridge action: a translation and a rotation of the commanded pose, and the gripper.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BridgeAction {
    /// dx, dy, dz in the base frame, m.
    pub translation_m: [f64; 3],
    /// droll, dpitch, dyaw about the base axes through the gripper, rad.
    pub rotation_rad: [f64; 3],
    /// Absolute, 1 = open; below [`GRIPPER_CLOSE_BELOW`] closes.
    pub gripper: f64,
}

impl BridgeAction {
    /// The action of the 7 numbers a dataset or a policy holds, in Bridge order.
    pub fn from_array(a: [f64; ACTION_DIM]) -> BridgeAction {
        BridgeAction {
            translation_m: [a[0], a[1], a[2]],
            rotation_rad: [a[3], a[4], a[5]],
            gripper: a[GRIPPER_INDEX],
        }
    }

    /// The 7 numbers in Bridge order (what `policy_out.pkl` records).
    pub fn to_array(&self) -> [f64; ACTION_DIM] {
        let [dx, dy, dz] = self.translation_m;
        let [droll, dpitch, dyaw] = self.rotation_rad;
        [dx, dy, dz, droll, dpitch, dyaw, self.gripper]
    }

    /// Whether the gripper part asks for an open gripper.
    pub fn gripper_open(&self) -> bool {
        self.gripper >= GRIPPER_CLOSE_BELOW
    }

    /// The first entry (Bridge order) that is NaN or infinite.
    pub fn first_non_finite(&self) -> Option<usize> {
        self.to_array().iter().position(|v| !v.is_finite())
    }
}

/// Per-step clipping of an action's motion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLimits {
    /// Each translation component to +-this, m.
    pub max_step_m: f64,
    /// Each rotation component to +-this, rad.
    pub max_step_rad: f64,
}

impl StepLimits {
    /// Bridge's own: 0.05 m and 0.25 rad per step.
    pub const BRIDGE: StepLimits = StepLimits {
        max_step_m: 0.05,
        max_step_rad: 0.25,
    };
}

/// The box the commanded position stays in (base frame, m).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkspaceBox {
    pub min_m: [f64; 3],
    pub max_m: [f64; 3],
}

impl WorkspaceBox {
    /// The box of Bridge's evaluation: x 0.10..0.45, y -0.15..0.25, z -0.01..0.25.
    pub const BRIDGE_EVAL: WorkspaceBox = WorkspaceBox {
        min_m: [0.10, -0.15, -0.01],
        max_m: [0.45, 0.25, 0.25],
    };

    /// `xyz_m` moved to the nearest point of the box.
    pub fn clamp(&self, xyz_m: [f64; 3]) -> [f64; 3] {
        std::array::from_fn(|i| xyz_m[i].clamp(self.min_m[i], self.max_m[i]))
    }

    /// How far `xyz_m` lies outside the box (0 inside), m.
    pub fn distance_outside_m(&self, xyz_m: [f64; 3]) -> f64 {
        let clamped = self.clamp(xyz_m);
        (0..3)
            .map(|i| (xyz_m[i] - clamped[i]).powi(2))
            .sum::<f64>()
            .sqrt()
    }
}

/// What clipping changed in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Clipped {
    /// A component exceeded the per-step limit.
    pub step: bool,
    /// The position left the workspace box.
    pub workspace: bool,
}

/// A commanded end-effector pose in Bridge terms: position in the base frame and orientation
/// relative to the gripper pointing down. Actions apply to the previously *commanded* pose,
/// not the measured one, so small tracking errors never accumulate into drift.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommandedPose {
    pub xyz_m: [f64; 3],
    /// `R_rpy`: the orientation relative to the gripper pointing down.
    pub relative_rotation: Rotation,
}

impl CommandedPose {
    /// The pose at a Bridge position and roll-pitch-yaw.
    pub fn from_xyz_rpy(xyz_m: [f64; 3], rpy_rad: [f64; 3]) -> CommandedPose {
        CommandedPose {
            xyz_m,
            relative_rotation: rotation_from_rpy(rpy_rad),
        }
    }

    /// The pose of an `ee_gripper_link` pose.
    pub fn from_ee_pose(ee: &Pose) -> CommandedPose {
        CommandedPose {
            xyz_m: ee.position_m,
            relative_rotation: mat3_mul(&ee.rotation, &mat3_transpose(&GRIPPER_DOWN_ROTATION)),
        }
    }

    /// The pose the arm has at `joints_rad`.
    pub fn from_joints(joints_rad: &[f64; ARM_JOINTS]) -> CommandedPose {
        CommandedPose::from_ee_pose(&forward(joints_rad))
    }

    /// The `ee_gripper_link` pose IK must reach.
    pub fn ee_pose(&self) -> Pose {
        Pose::new(
            self.xyz_m,
            mat3_mul(&self.relative_rotation, &GRIPPER_DOWN_ROTATION),
        )
    }

    /// Bridge roll-pitch-yaw of the orientation (R = Rz Ry Rx), rad.
    pub fn rpy_rad(&self) -> [f64; 3] {
        rpy_from_rotation(&self.relative_rotation)
    }

    /// The pose after the arm part of `action`: each component clipped to `limits`, the
    /// translation added, the rotation applied about the base axes through the gripper
    /// (`R' = R(drpy) * R`), and the position clamped to `workspace`.
    pub fn step(
        &self,
        action: &BridgeAction,
        limits: &StepLimits,
        workspace: &WorkspaceBox,
    ) -> (CommandedPose, Clipped) {
        let mut clipped = Clipped::default();
        let mut clip = |v: f64, limit: f64| {
            let c = v.clamp(-limit, limit);
            clipped.step |= c != v;
            c
        };
        let dxyz: [f64; 3] =
            std::array::from_fn(|i| clip(action.translation_m[i], limits.max_step_m));
        let drpy: [f64; 3] =
            std::array::from_fn(|i| clip(action.rotation_rad[i], limits.max_step_rad));
        let (moved, in_box) = self.translated(dxyz, workspace);
        clipped.workspace = !in_box;
        let pose = CommandedPose {
            relative_rotation: mat3_mul(&rotation_from_rpy(drpy), &self.relative_rotation),
            ..moved
        };
        (pose, clipped)
    }

    /// The pose moved by `delta_m` (clamped to `workspace`), orientation kept; and whether the
    /// move stayed inside the box.
    pub fn translated(&self, delta_m: [f64; 3], workspace: &WorkspaceBox) -> (CommandedPose, bool) {
        let moved: [f64; 3] = std::array::from_fn(|i| self.xyz_m[i] + delta_m[i]);
        let xyz_m = workspace.clamp(moved);
        let pose = CommandedPose {
            xyz_m,
            relative_rotation: self.relative_rotation,
        };
        (pose, xyz_m == moved)
    }

    /// The motion part of the action that takes this pose to `to`: the position difference and
    /// the roll-pitch-yaw of `R_to * R_from^T` (the inverse of [`CommandedPose::step`] within
    /// the limits). Recomputing actions from recorded states uses it too.
    pub fn delta_to(&self, to: &CommandedPose) -> [f64; 6] {
        let rotation = mat3_mul(
            &to.relative_rotation,
            &mat3_transpose(&self.relative_rotation),
        );
        let [droll, dpitch, dyaw] = rpy_from_rotation(&rotation);
        [
            to.xyz_m[0] - self.xyz_m[0],
            to.xyz_m[1] - self.xyz_m[1],
            to.xyz_m[2] - self.xyz_m[2],
            droll,
            dpitch,
            dyaw,
        ]
    }
}

/// The Bridge state `[x, y, z, roll, pitch, yaw, gripper]` for the given arm joints: position of
/// `ee_gripper_link` in `base_link` (m), the roll-pitch-yaw (R = Rz Ry Rx) of the orientation
/// relative to the gripper pointing down, then `gripper_open_fraction` (1 = open) as given.
/// This is what the Bridge stack records: `mat2euler(R_ee @ default_rot.T)`.
pub fn bridge_state(joints_rad: &[f64; ARM_JOINTS], gripper_open_fraction: f64) -> [f64; 7] {
    let (position_m, rpy_rad) = bridge_xyz_rpy(&forward(joints_rad));
    [
        position_m[0],
        position_m[1],
        position_m[2],
        rpy_rad[0],
        rpy_rad[1],
        rpy_rad[2],
        gripper_open_fraction,
    ]
}

/// Position and Bridge roll-pitch-yaw of an end-effector pose; the inverse of
/// [`bridge_target_pose`].
pub fn bridge_xyz_rpy(ee_pose: &Pose) -> ([f64; 3], [f64; 3]) {
    let pose = CommandedPose::from_ee_pose(ee_pose);
    (pose.xyz_m, pose.rpy_rad())
}

/// The `ee_gripper_link` pose for a Bridge position and roll-pitch-yaw (zero angles: the
/// gripper points down).
pub fn bridge_target_pose(xyz_m: [f64; 3], rpy_rad: [f64; 3]) -> Pose {
    CommandedPose::from_xyz_rpy(xyz_m, rpy_rad).ee_pose()
}

/// Distance of each finger's pad from the gripper's centre plane for a gripper servo angle:
/// the Interbotix crank linkage `r sin(theta) + sqrt(L^2 - (r cos(theta))^2)`. About 0.011 m at
/// the closed stop (-0.9 rad) and 0.033 m at the open stop (+0.9 rad).
pub fn finger_position_m(gripper_rad: f64) -> f64 {
    let (sin, cos) = gripper_rad.sin_cos();
    let across = GRIPPER_HORN_RADIUS_M * cos;
    GRIPPER_HORN_RADIUS_M * sin
        + (GRIPPER_ARM_LENGTH_M.powi(2) - across * across)
            .max(0.0)
            .sqrt()
}

/// The state's gripper entry (1 = open, 0 = closed) of a finger position, clamped to `0..=1`:
/// `(position - 0.010) / 0.025`.
pub fn open_fraction_of_finger_m(finger_position_m: f64) -> f64 {
    ((finger_position_m - FINGER_CLOSED_M) / (FINGER_OPEN_M - FINGER_CLOSED_M)).clamp(0.0, 1.0)
}

/// The state's gripper entry for the gripper servo at `gripper_rad` (fingers free).
pub fn gripper_open_fraction(gripper_rad: f64) -> f64 {
    open_fraction_of_finger_m(finger_position_m(gripper_rad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_their_array() {
        let a = [0.01, -0.02, 0.03, 0.1, -0.2, 0.3, 0.0];
        let action = BridgeAction::from_array(a);
        assert_eq!(action.to_array(), a);
        assert!(!action.gripper_open());
        let nan = BridgeAction::from_array([0.0, 0.0, 0.0, 0.0, f64::NAN, 0.0, 1.0]);
        assert_eq!(nan.first_non_finite(), Some(4));
    }

    #[test]
    fn a_step_clips_and_its_delta_is_what_was_taken() {
        let start = CommandedPose::from_xyz_rpy(START_XYZ_M, [0.0, 0.0, 0.2]);
        let action = BridgeAction::from_array([0.2, -0.01, 0.0, 0.0, 0.1, 1.0, 1.0]);
        let (next, clipped) = start.step(&action, &StepLimits::BRIDGE, &WorkspaceBox::BRIDGE_EVAL);
        assert_eq!(
            clipped,
            Clipped {
                step: true,
                workspace: false
            }
        );
        let want = [0.05, -0.01, 0.0, 0.0, 0.1, 0.25];
        for (got, want) in start.delta_to(&next).iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
    }

    #[test]
    fn the_box_clamps_and_measures() {
        let b = WorkspaceBox::BRIDGE_EVAL;
        assert_eq!(b.clamp([0.5, 0.0, -0.2]), [0.45, 0.0, -0.01]);
        assert!((b.distance_outside_m([0.5, 0.0, 0.0]) - 0.05).abs() < 1e-12);
        let (_, inside) = CommandedPose::from_xyz_rpy([0.44, 0.0, 0.1], [0.0; 3])
            .translated([0.02, 0.0, 0.0], &b);
        assert!(!inside);
    }

    #[test]
    fn the_gripper_fraction_follows_the_fingers() {
        assert_eq!(open_fraction_of_finger_m(FINGER_OPEN_M), 1.0);
        assert_eq!(open_fraction_of_finger_m(FINGER_CLOSED_M), 0.0);
        let (closed, open) = (finger_position_m(-0.9), finger_position_m(0.9));
        assert!((0.010..0.013).contains(&closed), "{closed}");
        assert!((0.032..0.035).contains(&open), "{open}");
        assert!(finger_position_m(0.0) > closed && finger_position_m(0.0) < open);
        assert_eq!(open_fraction_of_finger_m(0.0), 0.0);
        assert_eq!(open_fraction_of_finger_m(1.0), 1.0);
        assert!(gripper_open_fraction(0.9) > 0.9 && gripper_open_fraction(-0.9) < 0.1);
    }

    #[test]
    fn gripper_down_rotation_is_ry_quarter_turn() {
        let ry = crate::pose::rot_y(std::f64::consts::FRAC_PI_2);
        for row in 0..3 {
            for col in 0..3 {
                assert!((ry[row][col] - GRIPPER_DOWN_ROTATION[row][col]).abs() < 1e-15);
            }
        }
    }
}
