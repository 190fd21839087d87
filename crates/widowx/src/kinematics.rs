//! Forward and inverse kinematics of the WidowX 250 6DOF, and the Bridge end-effector state
//! convention.
//!
//! Forward kinematics is the product of exponentials in the space frame (`base_link`) with the
//! home pose [`HOME_POSE`] and screw axes [`SCREW_AXES`] from the Interbotix description. Inverse
//! kinematics is damped least squares (Levenberg-Marquardt) on the Jacobian at the end-effector
//! point, with every iterate kept inside [`ARM_JOINT_LIMITS`], seeded by the caller's joints and,
//! when that fails, restarted from the eight closed-form solutions of the arm (its last three axes
//! meet in a point, a spherical wrist) and then from seeded random draws. The closed form alone is
//! not the answer because it ignores the joint limits and jumps between branches; the damped least
//! squares stays on the caller's branch and inside the limits. Nothing allocates.
//!
//! ```
//! use widowx::kinematics::{forward, inverse, IkConfig};
//! use widowx::joints::BRIDGE_NEUTRAL_POSE_RAD;
//!
//! let target = forward(&[0.1, -0.5, 0.6, 0.0, 1.2, 0.0]);
//! let joints_rad = inverse(&target, &BRIDGE_NEUTRAL_POSE_RAD, &IkConfig::default()).unwrap();
//! let reached = forward(&joints_rad);
//! let dx: f64 = (0..3).map(|i| (reached.position_m[i] - target.position_m[i]).powi(2)).sum();
//! assert!(dx.sqrt() < 1e-3);
//! ```

use std::f64::consts::PI;

use crate::joints::{ARM_JOINT_LIMITS, ARM_JOINTS};
use crate::pose::{
    IDENTITY_ROTATION, Pose, Rotation, Twist, cross, mat3_mul, mat3_transpose, norm3, rot_y, rot_z,
    se3_exp, so3_log,
};

/// Pose of `ee_gripper_link` in `base_link` with every joint at zero.
pub const HOME_POSE: Pose = Pose::new([0.458325, 0.0, 0.36065], IDENTITY_ROTATION);

/// Space-frame screw axes `[omega | v]`, waist..wrist_rotate, at the home pose.
pub const SCREW_AXES: [Twist; ARM_JOINTS] = [
    [0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
    [0.0, 1.0, 0.0, -0.11065, 0.0, 0.0],
    [0.0, 1.0, 0.0, -0.36065, 0.0, 0.04975],
    [1.0, 0.0, 0.0, 0.0, 0.36065, 0.0],
    [0.0, 1.0, 0.0, -0.36065, 0.0, 0.29975],
    [1.0, 0.0, 0.0, 0.0, 0.36065, 0.0],
];

/// Forward kinematics: the pose of `ee_gripper_link` in `base_link`.
pub fn forward(joints_rad: &[f64; ARM_JOINTS]) -> Pose {
    let mut pose = Pose::IDENTITY;
    for (axis, &angle_rad) in SCREW_AXES.iter().zip(joints_rad) {
        pose = pose.compose(&screw_motion(axis, angle_rad));
    }
    pose.compose(&HOME_POSE)
}

/// Forward kinematics and the space Jacobian (one twist `[omega | v]` per joint: the
/// end-effector's spatial velocity per unit joint velocity, in the space frame).
pub fn forward_with_space_jacobian(joints_rad: &[f64; ARM_JOINTS]) -> (Pose, [Twist; ARM_JOINTS]) {
    let mut pose = Pose::IDENTITY;
    let mut jacobian = [[0.0; 6]; ARM_JOINTS];
    for (joint, (axis, &angle_rad)) in SCREW_AXES.iter().zip(joints_rad).enumerate() {
        jacobian[joint] = pose.adjoint_twist(axis);
        pose = pose.compose(&screw_motion(axis, angle_rad));
    }
    (pose.compose(&HOME_POSE), jacobian)
}

fn screw_motion(axis: &Twist, angle_rad: f64) -> Pose {
    se3_exp(&axis.map(|component| component * angle_rad))
}

/// Settings of [`inverse`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IkConfig {
    /// Iterations per attempt (accepted plus rejected steps).
    pub max_iterations: usize,
    /// Success needs the position within this distance of the target.
    pub position_tolerance_m: f64,
    /// Success needs the orientation within this angle of the target.
    pub rotation_tolerance_rad: f64,
    /// Smallest damping factor lambda, in radians of weighted error (position errors are weighted
    /// by `rotation_tolerance_rad / position_tolerance_m`, so both tolerances count alike).
    /// The solver raises it when a step fails to reduce the error and lowers it back when one does.
    pub damping: f64,
    /// Largest change of any joint in one step; keeps linearisation errors in check.
    pub max_step_rad: f64,
    /// Attempts from other seeds after the caller's seed fails: the first eight from the closed-form
    /// solutions (limits ignored; see `closed_form_candidates`), the rest from random seeds.
    pub restarts: usize,
    /// Seed of the generator of restart configurations, so solves are reproducible.
    pub restart_rng_seed: u64,
}

impl Default for IkConfig {
    fn default() -> Self {
        IkConfig {
            max_iterations: 60,
            position_tolerance_m: 1e-3,
            rotation_tolerance_rad: 0.01,
            damping: 0.01,
            max_step_rad: 0.5,
            restarts: 12,
            restart_rng_seed: 0x5eed_1c0d_e0f5_a11d,
        }
    }
}

/// Joint angles to the milliradian, for messages.
fn fmt_rad(joints_rad: &[f64]) -> String {
    let parts: Vec<String> = joints_rad.iter().map(|q| format!("{q:.3}")).collect();
    format!("[{}]", parts.join(", "))
}

/// Why [`inverse`] found no joints.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum IkError {
    #[error(
        "IK did not reach the target: best attempt is {position_error_m:.4} m and \
         {rotation_error_rad:.4} rad away (joints {} rad)",
        fmt_rad(best_joints_rad)
    )]
    NotReached {
        position_error_m: f64,
        rotation_error_rad: f64,
        /// The in-limits joints of the best attempt; callers may keep the current joints instead.
        best_joints_rad: [f64; ARM_JOINTS],
    },
    #[error("IK input is not finite: {what} contains NaN or infinity")]
    NonFinite { what: &'static str },
    #[error("IkConfig.{field} is {value}, expected a finite value above 0")]
    InvalidConfig { field: &'static str, value: f64 },
}

impl IkConfig {
    /// Checks that every tolerance, the damping and the step bound are finite and positive.
    pub fn validate(&self) -> Result<(), IkError> {
        for (field, value) in [
            ("position_tolerance_m", self.position_tolerance_m),
            ("rotation_tolerance_rad", self.rotation_tolerance_rad),
            ("damping", self.damping),
            ("max_step_rad", self.max_step_rad),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return Err(IkError::InvalidConfig { field, value });
            }
        }
        Ok(())
    }
}

/// Inverse kinematics: joints within [`ARM_JOINT_LIMITS`] that put `ee_gripper_link` at `target`
/// to within the configured tolerances. The first attempt starts from `seed_rad` (usually the
/// current joints, so the answer is the nearby solution); if it fails, up to `config.restarts`
/// attempts start from the closed-form solutions and then from random draws within the limits
/// (from a fixed generator seed). Deterministic for a given input.
pub fn inverse(
    target: &Pose,
    seed_rad: &[f64; ARM_JOINTS],
    config: &IkConfig,
) -> Result<[f64; ARM_JOINTS], IkError> {
    config.validate()?;
    check_finite(target, seed_rad)?;
    let mut best = solve_from(target, seed_rad, config);
    if best.reached(config) {
        return Ok(best.joints_rad);
    }
    let closed_form = closed_form_candidates(target);
    let mut rng = SplitMix64(config.restart_rng_seed);
    for attempt in 0..config.restarts {
        let seed = closed_form
            .get(attempt)
            .copied()
            .unwrap_or_else(|| random_seed(attempt, target, &mut rng));
        let candidate = solve_from(target, &seed, config);
        if candidate.cost(config) < best.cost(config) {
            best = candidate;
        }
        if best.reached(config) {
            break;
        }
    }
    if best.reached(config) {
        Ok(best.joints_rad)
    } else {
        Err(IkError::NotReached {
            position_error_m: best.position_error_m,
            rotation_error_rad: best.rotation_error_rad,
            best_joints_rad: best.joints_rad,
        })
    }
}

fn check_finite(target: &Pose, seed_rad: &[f64; ARM_JOINTS]) -> Result<(), IkError> {
    let target_finite = target.position_m.iter().all(|v| v.is_finite())
        && target.rotation.iter().flatten().all(|v| v.is_finite());
    if !target_finite {
        return Err(IkError::NonFinite {
            what: "target pose",
        });
    }
    if !seed_rad.iter().all(|v| v.is_finite()) {
        return Err(IkError::NonFinite {
            what: "seed joints",
        });
    }
    Ok(())
}

/// A uniform draw within the limits, its waist turned toward the target on even attempts and
/// away from it (reaching back over the base) on odd ones: the one joint whose value is plain
/// from the target.
fn random_seed(attempt: usize, target: &Pose, rng: &mut SplitMix64) -> [f64; ARM_JOINTS] {
    let mut seed = ARM_JOINT_LIMITS
        .map(|limits| limits.min_rad + rng.next_unit() * (limits.max_rad - limits.min_rad));
    let [x_m, y_m, _] = target.position_m;
    if x_m.hypot(y_m) > 1e-6 {
        let toward_rad = y_m.atan2(x_m);
        let waist_rad = if attempt.is_multiple_of(2) {
            toward_rad
        } else {
            toward_rad + PI
        };
        seed[0] = into_limits(0, waist_rad);
    }
    seed
}

// The arm's geometry as the closed form needs it, read off `HOME_POSE` and `SCREW_AXES`: the
// forearm-roll, wrist-angle and wrist-rotate axes meet in one point, the wrist centre, at
// (0.29975, 0, 0.36065) at home, so the wrist centre's position depends on waist, shoulder and
// elbow only. In the arm's vertical plane, (reach, height) coordinates:
/// Height of the shoulder axis above `base_link`.
const SHOULDER_HEIGHT_M: f64 = 0.11065;
/// Shoulder axis to elbow axis at home, (reach, height).
const UPPER_ARM_M: [f64; 2] = [0.04975, 0.36065 - SHOULDER_HEIGHT_M];
/// Elbow axis to wrist centre at home, along the reach.
const FOREARM_M: f64 = 0.29975 - 0.04975;
/// Wrist centre to `ee_gripper_link`, along the gripper's x axis.
const WRIST_TO_GRIPPER_M: f64 = 0.458325 - 0.29975;

/// Closed-form joint sets for `target`, limits ignored: waist toward or away from the target,
/// times two elbow branches, times two wrist branches. They seed the restarts; the damped least
/// squares then enforces the limits. For a target out of reach the arm is stretched toward it.
///
/// The rotation part of the product of exponentials is
/// `R = Rz(waist) * Ry(shoulder + elbow) * Rx(forearm_roll) * Ry(wrist_angle) * Rx(wrist_rotate)`.
fn closed_form_candidates(target: &Pose) -> [[f64; ARM_JOINTS]; 8] {
    let p = &target.position_m;
    let r = &target.rotation;
    let wrist_m: [f64; 3] = std::array::from_fn(|i| p[i] - WRIST_TO_GRIPPER_M * r[i][0]);
    let horizontal_m = wrist_m[0].hypot(wrist_m[1]);
    let toward_rad = if horizontal_m > 1e-9 {
        wrist_m[1].atan2(wrist_m[0])
    } else {
        0.0
    };
    let height_m = wrist_m[2] - SHOULDER_HEIGHT_M;
    let mut candidates = [[0.0; ARM_JOINTS]; 8];
    let mut next = 0;
    for (waist_rad, reach_m) in [(toward_rad, horizontal_m), (toward_rad + PI, -horizontal_m)] {
        for elbow_branch in [1.0, -1.0] {
            let (shoulder_rad, elbow_rad) = planar_arm(reach_m, height_m, elbow_branch);
            let arm = mat3_mul(&rot_z(waist_rad), &rot_y(shoulder_rad + elbow_rad));
            let wrist_rotation = mat3_mul(&mat3_transpose(&arm), r);
            for wrist_branch in [1.0, -1.0] {
                let [roll, angle, rotate] = xyx_angles(&wrist_rotation, wrist_branch);
                candidates[next] =
                    [waist_rad, shoulder_rad, elbow_rad, roll, angle, rotate].map(wrap_to_pi);
                next += 1;
            }
        }
    }
    candidates
}

/// Shoulder and elbow angles putting the wrist centre at (reach, height) from the shoulder axis;
/// `elbow_branch` (+1 or -1) picks one of the two solutions. A joint angle rotates the rest of the
/// arm about +y, i.e. (r, z) -> (r cos + z sin, -r sin + z cos) in the vertical plane.
fn planar_arm(reach_m: f64, height_m: f64, elbow_branch: f64) -> (f64, f64) {
    let [upper_reach_m, upper_height_m] = UPPER_ARM_M;
    let upper_m = upper_reach_m.hypot(upper_height_m);
    let distance_sq = reach_m * reach_m + height_m * height_m;
    let cos_bend = ((distance_sq - upper_m * upper_m - FOREARM_M * FOREARM_M)
        / (2.0 * upper_m * FOREARM_M))
        .clamp(-1.0, 1.0);
    // upper . Rot(elbow) forearm = |upper| |forearm| cos(elbow + offset).
    let offset_rad = upper_height_m.atan2(upper_reach_m);
    let elbow_rad = elbow_branch * cos_bend.acos() - offset_rad;
    let (sin_elbow, cos_elbow) = elbow_rad.sin_cos();
    let arm_reach_m = upper_reach_m + FOREARM_M * cos_elbow;
    let arm_height_m = upper_height_m - FOREARM_M * sin_elbow;
    let shoulder_rad = arm_height_m.atan2(arm_reach_m) - height_m.atan2(reach_m);
    (shoulder_rad, elbow_rad)
}

/// `[a, b, c]` with `R = Rx(a) * Ry(b) * Rx(c)`; `branch` (+1 or -1) is the sign of b. When b is 0
/// or pi only a +- c is defined, and a is set to 0.
fn xyx_angles(r: &Rotation, branch: f64) -> [f64; 3] {
    let b = branch * r[0][0].clamp(-1.0, 1.0).acos();
    if b.sin().abs() < 1e-9 {
        return [0.0, b, (-r[1][2]).atan2(r[1][1])];
    }
    let a = (branch * r[1][0]).atan2(-branch * r[2][0]);
    let c = (branch * r[0][1]).atan2(branch * r[0][2]);
    [a, b, c]
}

/// The same angle in (-pi, pi].
fn wrap_to_pi(angle_rad: f64) -> f64 {
    let wrapped = (angle_rad + PI).rem_euclid(2.0 * PI) - PI;
    if wrapped == -PI { PI } else { wrapped }
}

/// Result of one damped-least-squares run.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    joints_rad: [f64; ARM_JOINTS],
    position_error_m: f64,
    rotation_error_rad: f64,
}

impl Attempt {
    fn reached(&self, config: &IkConfig) -> bool {
        self.position_error_m <= config.position_tolerance_m
            && self.rotation_error_rad <= config.rotation_tolerance_rad
    }

    /// Errors in units of their tolerances, so attempts can be ranked.
    fn cost(&self, config: &IkConfig) -> f64 {
        (self.position_error_m / config.position_tolerance_m)
            .max(self.rotation_error_rad / config.rotation_tolerance_rad)
    }
}

/// Largest damping before an attempt is declared stuck in a local minimum.
const MAX_DAMPING: f64 = 1e3;

/// Levenberg-Marquardt from `start`: a step that lowers the error is taken and the damping
/// relaxed; one that does not is undone and the damping raised.
fn solve_from(target: &Pose, start: &[f64; ARM_JOINTS], config: &IkConfig) -> Attempt {
    let weight_per_m = config.rotation_tolerance_rad / config.position_tolerance_m;
    let joints_rad = std::array::from_fn(|joint| into_limits(joint, start[joint]));
    let mut state = IterationState::at(target, &joints_rad, weight_per_m);
    let mut damping = config.damping;
    for _ in 0..config.max_iterations {
        if state.attempt.reached(config) || damping > MAX_DAMPING {
            break;
        }
        let step = dls_step(&state, damping, config.max_step_rad);
        let mut next_joints = state.attempt.joints_rad;
        for (joint, value) in next_joints.iter_mut().enumerate() {
            *value = into_limits(joint, *value + step[joint]);
        }
        let next = IterationState::at(target, &next_joints, weight_per_m);
        if next.weighted_cost < state.weighted_cost {
            state = next;
            damping = (damping * 0.3).max(config.damping);
        } else {
            damping *= 4.0;
        }
    }
    state.attempt
}

/// Joints, their errors and the weighted linear system at one iterate.
struct IterationState {
    attempt: Attempt,
    /// `[rotation error (rad) | position error (m) * weight]`, space frame.
    weighted_error: [f64; 6],
    weighted_cost: f64,
    /// Jacobian of the end-effector point, one column per joint, rows weighted like the error.
    weighted_jacobian: [[f64; 6]; ARM_JOINTS],
}

impl IterationState {
    fn at(target: &Pose, joints_rad: &[f64; ARM_JOINTS], weight_per_m: f64) -> Self {
        let (pose, space_jacobian) = forward_with_space_jacobian(joints_rad);
        let rotation_error = so3_log(&mat3_mul(&target.rotation, &mat3_transpose(&pose.rotation)));
        let position_error = [
            target.position_m[0] - pose.position_m[0],
            target.position_m[1] - pose.position_m[1],
            target.position_m[2] - pose.position_m[2],
        ];
        let mut weighted_error = [0.0; 6];
        weighted_error[..3].copy_from_slice(&rotation_error);
        for axis in 0..3 {
            weighted_error[3 + axis] = position_error[axis] * weight_per_m;
        }
        let weighted_jacobian = space_jacobian
            .map(|column| point_velocity_column(&column, &pose.position_m, weight_per_m));
        IterationState {
            attempt: Attempt {
                joints_rad: *joints_rad,
                position_error_m: norm3(&position_error),
                rotation_error_rad: norm3(&rotation_error),
            },
            weighted_cost: weighted_error.iter().map(|e| e * e).sum(),
            weighted_error,
            weighted_jacobian,
        }
    }
}

/// A space-Jacobian column turned into `[omega | velocity of the point p]`: a spatial twist moves
/// the point at `v + omega x p`.
fn point_velocity_column(column: &Twist, point_m: &[f64; 3], weight_per_m: f64) -> Twist {
    let omega = [column[0], column[1], column[2]];
    let omega_cross_p = cross(&omega, point_m);
    [
        omega[0],
        omega[1],
        omega[2],
        (column[3] + omega_cross_p[0]) * weight_per_m,
        (column[4] + omega_cross_p[1]) * weight_per_m,
        (column[5] + omega_cross_p[2]) * weight_per_m,
    ]
}

/// Damped least-squares step `J^T (J J^T + lambda^2 I)^-1 e`, with joints at a limit that the
/// step would push further out dropped from `J` (so the others make up for them), scaled down
/// so no joint moves more than `max_step_rad`.
fn dls_step(state: &IterationState, damping: f64, max_step_rad: f64) -> [f64; ARM_JOINTS] {
    let mut active = [true; ARM_JOINTS];
    let mut step = [0.0; ARM_JOINTS];
    // Each pass can only drop joints, so ARM_JOINTS + 1 passes always suffice.
    for _ in 0..=ARM_JOINTS {
        step = damped_solve(
            &state.weighted_jacobian,
            &active,
            &state.weighted_error,
            damping,
        );
        let mut dropped_any = false;
        for joint in 0..ARM_JOINTS {
            if active[joint]
                && pushes_past_limit(joint, state.attempt.joints_rad[joint], step[joint])
            {
                active[joint] = false;
                dropped_any = true;
            }
        }
        if !dropped_any {
            break;
        }
    }
    let largest_rad = step.iter().fold(0.0_f64, |acc, s| acc.max(s.abs()));
    if largest_rad > max_step_rad {
        let scale = max_step_rad / largest_rad;
        step = step.map(|s| s * scale);
    }
    step
}

/// Whether a joint already at a bound is asked to move beyond it. Continuous joints (limits about
/// a full turn) never are, because [`into_limits`] wraps them instead.
fn pushes_past_limit(joint: usize, angle_rad: f64, step_rad: f64) -> bool {
    const AT_LIMIT_RAD: f64 = 1e-9;
    let limits = ARM_JOINT_LIMITS[joint];
    if is_continuous(joint) {
        return false;
    }
    (angle_rad >= limits.max_rad - AT_LIMIT_RAD && step_rad > 0.0)
        || (angle_rad <= limits.min_rad + AT_LIMIT_RAD && step_rad < 0.0)
}

fn is_continuous(joint: usize) -> bool {
    let limits = ARM_JOINT_LIMITS[joint];
    limits.max_rad - limits.min_rad >= 2.0 * PI - 1e-3
}

/// An angle moved into the joint's limits: continuous joints are wrapped by whole turns (same
/// pose, and the wrapped angle lands inside unless it is within 1e-5 rad of +-pi), every other
/// joint is clamped to the nearer bound.
fn into_limits(joint: usize, angle_rad: f64) -> f64 {
    let limits = ARM_JOINT_LIMITS[joint];
    if limits.contains(angle_rad) || !is_continuous(joint) {
        return limits.clamp(angle_rad);
    }
    let middle_rad = 0.5 * (limits.min_rad + limits.max_rad);
    let turns = ((angle_rad - middle_rad) / (2.0 * PI)).round();
    let wrapped_rad = angle_rad - turns * 2.0 * PI;
    if limits.contains(wrapped_rad) {
        wrapped_rad
    } else {
        limits.clamp(angle_rad)
    }
}

/// `J_a^T (J_a J_a^T + lambda^2 I)^-1 e`, where `J_a` keeps only the active columns.
fn damped_solve(
    jacobian: &[[f64; 6]; ARM_JOINTS],
    active: &[bool; ARM_JOINTS],
    error: &[f64; 6],
    damping: f64,
) -> [f64; ARM_JOINTS] {
    let mut normal = [[0.0; 6]; 6];
    for (column, _) in jacobian.iter().zip(active).filter(|(_, on)| **on) {
        for row in 0..6 {
            for col in 0..6 {
                normal[row][col] += column[row] * column[col];
            }
        }
    }
    for (row, normal_row) in normal.iter_mut().enumerate() {
        normal_row[row] += damping * damping;
    }
    let y = cholesky_solve(&normal, error);
    let mut step = [0.0; ARM_JOINTS];
    for joint in 0..ARM_JOINTS {
        if active[joint] {
            step[joint] = (0..6).map(|row| jacobian[joint][row] * y[row]).sum();
        }
    }
    step
}

/// Solves `a x = b` for symmetric positive definite `a` (the damping guarantees that here).
fn cholesky_solve(a: &[[f64; 6]; 6], b: &[f64; 6]) -> [f64; 6] {
    let mut lower = [[0.0; 6]; 6];
    for row in 0..6 {
        for col in 0..=row {
            let partial: f64 = (0..col).map(|k| lower[row][k] * lower[col][k]).sum();
            let value = a[row][col] - partial;
            lower[row][col] = if row == col {
                value.max(f64::MIN_POSITIVE).sqrt()
            } else {
                value / lower[col][col]
            };
        }
    }
    let mut forward_sub = [0.0; 6];
    for row in 0..6 {
        let partial: f64 = (0..row).map(|k| lower[row][k] * forward_sub[k]).sum();
        forward_sub[row] = (b[row] - partial) / lower[row][row];
    }
    let mut x = [0.0; 6];
    for row in (0..6).rev() {
        let partial: f64 = (row + 1..6).map(|k| lower[k][row] * x[k]).sum();
        x[row] = (forward_sub[row] - partial) / lower[row][row];
    }
    x
}

/// Small deterministic generator (SplitMix64) for restart seeds: reproducible, no dependency.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    /// Next value, uniform in [0, 1).
    fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn into_limits_wraps_continuous_joints_and_clamps_others() {
        let waist = into_limits(0, PI + 0.1);
        assert!((waist - (-PI + 0.1)).abs() < 1e-12);
        assert_eq!(into_limits(1, 5.0), ARM_JOINT_LIMITS[1].max_rad);
        assert_eq!(into_limits(2, -5.0), ARM_JOINT_LIMITS[2].min_rad);
        assert_eq!(into_limits(4, 0.3), 0.3);
    }

    #[test]
    fn closed_form_candidates_contain_the_generating_joints() {
        let mut rng = SplitMix64(42);
        for _ in 0..500 {
            let joints =
                ARM_JOINT_LIMITS.map(|l| l.min_rad + rng.next_unit() * (l.max_rad - l.min_rad));
            let target = forward(&joints);
            let closest = closed_form_candidates(&target)
                .iter()
                .map(|candidate| {
                    (0..ARM_JOINTS)
                        .map(|i| wrap_to_pi(candidate[i] - joints[i]).abs())
                        .fold(0.0, f64::max)
                })
                .fold(f64::INFINITY, f64::min);
            assert!(
                closest < 1e-6,
                "{joints:?}: closest candidate {closest} rad away"
            );
            for candidate in closed_form_candidates(&target) {
                let reached = forward(&candidate);
                let dx: f64 = (0..3)
                    .map(|i| (reached.position_m[i] - target.position_m[i]).powi(2))
                    .sum();
                assert!(dx.sqrt() < 1e-9, "{candidate:?}");
            }
        }
    }

    #[test]
    fn cholesky_solves_spd_system() {
        let mut a = [[0.0; 6]; 6];
        for (i, row) in a.iter_mut().enumerate() {
            for (j, value) in row.iter_mut().enumerate() {
                *value = 1.0 / (1.0 + i as f64 + j as f64) + if i == j { 1.0 } else { 0.0 };
            }
        }
        let x_true = [1.0, -2.0, 0.5, 3.0, 0.0, -1.0];
        let b: [f64; 6] = std::array::from_fn(|i| (0..6).map(|j| a[i][j] * x_true[j]).sum());
        let x = cholesky_solve(&a, &b);
        for i in 0..6 {
            assert!((x[i] - x_true[i]).abs() < 1e-12);
        }
    }

    #[test]
    fn space_jacobian_matches_finite_differences_of_forward() {
        let joints = [0.3, -0.4, 0.5, 0.2, 0.9, -0.6];
        let (pose, jacobian) = forward_with_space_jacobian(&joints);
        let step = 1e-7;
        for joint in 0..ARM_JOINTS {
            let mut moved = joints;
            moved[joint] += step;
            let moved_pose = forward(&moved);
            // Point velocity from the Jacobian versus the finite difference of the position.
            let column = point_velocity_column(&jacobian[joint], &pose.position_m, 1.0);
            for axis in 0..3 {
                let numeric = (moved_pose.position_m[axis] - pose.position_m[axis]) / step;
                assert!(
                    (numeric - column[3 + axis]).abs() < 1e-5,
                    "joint {joint} axis {axis}"
                );
            }
            let omega = so3_log(&mat3_mul(
                &moved_pose.rotation,
                &mat3_transpose(&pose.rotation),
            ));
            for axis in 0..3 {
                assert!((omega[axis] / step - column[axis]).abs() < 1e-5);
            }
        }
    }
}
