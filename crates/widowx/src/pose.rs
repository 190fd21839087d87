//! Rigid-body poses and rotations in fixed-size `f64` arrays: composition, inverse, roll-pitch-yaw
//! angles (R = Rz(yaw) * Ry(pitch) * Rx(roll), the Bridge convention), and the exponential and
//! logarithm maps of SO(3) and SE(3) used by the product-of-exponentials kinematics.
//!
//! Twists and screw axes are ordered `[omega_x, omega_y, omega_z, v_x, v_y, v_z]` (angular part
//! first), as in Lynch & Park, *Modern Robotics*, and in `docs/widowx.md`.

/// 3x3 rotation matrix, row-major: `rotation[row][col]`.
pub type Rotation = [[f64; 3]; 3];

/// Twist or screw axis, `[omega | v]`: angular part first, then linear.
pub type Twist = [f64; 6];

/// The identity rotation.
pub const IDENTITY_ROTATION: Rotation = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// Below this angle (rad) the exponential and log maps switch to their small-angle forms, where
/// the closed forms divide by the angle and lose precision.
const SMALL_ANGLE_RAD: f64 = 1e-9;

/// A rigid transform: rotate by `rotation`, then translate by `position_m`.
/// As a frame pose, `rotation`'s columns are the frame's axes expressed in the parent frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    pub position_m: [f64; 3],
    pub rotation: Rotation,
}

impl Default for Pose {
    fn default() -> Self {
        Self::IDENTITY
    }
}

impl Pose {
    /// No rotation, no translation.
    pub const IDENTITY: Pose = Pose {
        position_m: [0.0; 3],
        rotation: IDENTITY_ROTATION,
    };

    /// A pose from a position and a rotation.
    pub const fn new(position_m: [f64; 3], rotation: Rotation) -> Self {
        Pose {
            position_m,
            rotation,
        }
    }

    /// A pose from a position and roll-pitch-yaw angles (R = Rz(yaw) * Ry(pitch) * Rx(roll)).
    pub fn from_xyz_rpy(position_m: [f64; 3], rpy_rad: [f64; 3]) -> Self {
        Pose::new(position_m, rotation_from_rpy(rpy_rad))
    }

    /// `self * other` as homogeneous matrices: `other` expressed in `self`'s frame.
    pub fn compose(&self, other: &Pose) -> Pose {
        let rotated = mat3_vec(&self.rotation, &other.position_m);
        Pose {
            position_m: vec3_add(&rotated, &self.position_m),
            rotation: mat3_mul(&self.rotation, &other.rotation),
        }
    }

    /// The inverse transform: `self.compose(&self.inverse())` is the identity.
    pub fn inverse(&self) -> Pose {
        let rotation_t = mat3_transpose(&self.rotation);
        let back = mat3_vec(&rotation_t, &self.position_m);
        Pose {
            position_m: [-back[0], -back[1], -back[2]],
            rotation: rotation_t,
        }
    }

    /// Maps a point from this pose's frame into the parent frame.
    pub fn transform_point(&self, point_m: &[f64; 3]) -> [f64; 3] {
        vec3_add(&mat3_vec(&self.rotation, point_m), &self.position_m)
    }

    /// The 4x4 homogeneous matrix, row-major.
    pub fn to_matrix(&self) -> [[f64; 4]; 4] {
        let r = &self.rotation;
        let p = &self.position_m;
        [
            [r[0][0], r[0][1], r[0][2], p[0]],
            [r[1][0], r[1][1], r[1][2], p[1]],
            [r[2][0], r[2][1], r[2][2], p[2]],
            [0.0, 0.0, 0.0, 1.0],
        ]
    }

    /// Roll-pitch-yaw angles of the rotation, see [`rpy_from_rotation`].
    pub fn rpy_rad(&self) -> [f64; 3] {
        rpy_from_rotation(&self.rotation)
    }

    /// The 6x6 adjoint `[[R, 0], [[p] R, R]]`, mapping twists `[omega | v]` from this pose's frame
    /// into the parent frame.
    pub fn adjoint(&self) -> [[f64; 6]; 6] {
        let r = &self.rotation;
        let p_hat_r = mat3_mul(&skew(&self.position_m), r);
        let mut adjoint = [[0.0; 6]; 6];
        for row in 0..3 {
            for col in 0..3 {
                adjoint[row][col] = r[row][col];
                adjoint[row + 3][col + 3] = r[row][col];
                adjoint[row + 3][col] = p_hat_r[row][col];
            }
        }
        adjoint
    }

    /// Applies the adjoint to one twist without building the 6x6 matrix.
    pub fn adjoint_twist(&self, twist: &Twist) -> Twist {
        let omega = mat3_vec(&self.rotation, &[twist[0], twist[1], twist[2]]);
        let v = mat3_vec(&self.rotation, &[twist[3], twist[4], twist[5]]);
        let p_cross_omega = cross(&self.position_m, &omega);
        [
            omega[0],
            omega[1],
            omega[2],
            v[0] + p_cross_omega[0],
            v[1] + p_cross_omega[1],
            v[2] + p_cross_omega[2],
        ]
    }
}

/// Rotation about the x axis.
pub fn rot_x(angle_rad: f64) -> Rotation {
    let (s, c) = angle_rad.sin_cos();
    [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]
}

/// Rotation about the y axis.
pub fn rot_y(angle_rad: f64) -> Rotation {
    let (s, c) = angle_rad.sin_cos();
    [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
}

/// Rotation about the z axis.
pub fn rot_z(angle_rad: f64) -> Rotation {
    let (s, c) = angle_rad.sin_cos();
    [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
}

/// R = Rz(yaw) * Ry(pitch) * Rx(roll) from `[roll, pitch, yaw]` (fixed axes x, then y, then z;
/// `transforms3d`'s `sxyz`, the convention of the Bridge data).
pub fn rotation_from_rpy(rpy_rad: [f64; 3]) -> Rotation {
    let [roll, pitch, yaw] = rpy_rad;
    mat3_mul(&rot_z(yaw), &mat3_mul(&rot_y(pitch), &rot_x(roll)))
}

/// `[roll, pitch, yaw]` with R = Rz(yaw) * Ry(pitch) * Rx(roll); pitch in [-pi/2, pi/2], roll and
/// yaw in (-pi, pi]. At pitch = +-pi/2 (gimbal lock) only roll -+ yaw is defined: yaw is set to 0.
pub fn rpy_from_rotation(rotation: &Rotation) -> [f64; 3] {
    let r = rotation;
    let cos_pitch = r[0][0].hypot(r[1][0]);
    let pitch = (-r[2][0]).atan2(cos_pitch);
    if cos_pitch > 1e-9 {
        let roll = r[2][1].atan2(r[2][2]);
        let yaw = r[1][0].atan2(r[0][0]);
        [roll, pitch, yaw]
    } else {
        // Gimbal lock: R = Ry(+-pi/2) * Rx(roll -+ yaw); put it all in roll.
        let roll = (-r[1][2]).atan2(r[1][1]);
        [roll, pitch, 0.0]
    }
}

/// Matrix exponential of `[omega_theta]`: the rotation by `|omega_theta|` about its direction
/// (Rodrigues' formula).
pub fn so3_exp(omega_theta: &[f64; 3]) -> Rotation {
    let theta_sq = dot(omega_theta, omega_theta);
    let theta = theta_sq.sqrt();
    // sin(t)/t and (1-cos(t))/t^2, with their Taylor series near 0.
    let (a, b) = if theta < 1e-6 {
        (1.0 - theta_sq / 6.0, 0.5 - theta_sq / 24.0)
    } else {
        (theta.sin() / theta, (1.0 - theta.cos()) / theta_sq)
    };
    let k = skew(omega_theta);
    let k2 = mat3_mul(&k, &k);
    let mut rotation = IDENTITY_ROTATION;
    for row in 0..3 {
        for col in 0..3 {
            rotation[row][col] += a * k[row][col] + b * k2[row][col];
        }
    }
    rotation
}

/// Matrix logarithm of a rotation: the axis-angle vector `omega * theta` with theta in [0, pi].
pub fn so3_log(rotation: &Rotation) -> [f64; 3] {
    let r = rotation;
    let trace = r[0][0] + r[1][1] + r[2][2];
    let cos_theta = ((trace - 1.0) / 2.0).clamp(-1.0, 1.0);
    // The antisymmetric part is 2 sin(theta) * omega; exact away from theta = pi.
    let antisym = [r[2][1] - r[1][2], r[0][2] - r[2][0], r[1][0] - r[0][1]];
    let sin_theta = 0.5 * norm3(&antisym);
    let theta = sin_theta.atan2(cos_theta);
    if theta < SMALL_ANGLE_RAD {
        return [antisym[0] * 0.5, antisym[1] * 0.5, antisym[2] * 0.5];
    }
    if theta < 3.0 {
        let scale = theta / (2.0 * sin_theta);
        return [antisym[0] * scale, antisym[1] * scale, antisym[2] * scale];
    }
    log_near_pi(r, theta, &antisym)
}

/// Near theta = pi, sin(theta) vanishes: take the axis from the symmetric part
/// R + R^T = 2 cos(theta) I + 2 (1 - cos(theta)) omega omega^T, and its sign from the antisymmetric part.
fn log_near_pi(r: &Rotation, theta: f64, antisym: &[f64; 3]) -> [f64; 3] {
    let one_minus_cos = 1.0 - theta.cos();
    let diag = [r[0][0], r[1][1], r[2][2]];
    // The largest diagonal entry gives the best-conditioned component of the axis.
    let k = (0..3)
        .max_by(|&i, &j| diag[i].total_cmp(&diag[j]))
        .unwrap_or(0);
    let mut axis = [0.0; 3];
    axis[k] = ((diag[k] - theta.cos()) / one_minus_cos).max(0.0).sqrt();
    for i in 0..3 {
        if i != k {
            axis[i] = (r[i][k] + r[k][i]) / (2.0 * one_minus_cos * axis[k]);
        }
    }
    if dot(&axis, antisym) < 0.0 {
        axis = [-axis[0], -axis[1], -axis[2]];
    }
    let norm = norm3(&axis);
    [
        axis[0] / norm * theta,
        axis[1] / norm * theta,
        axis[2] / norm * theta,
    ]
}

/// Matrix exponential of a twist times its magnitude, `[omega theta | v theta]`: the pose reached by
/// moving along the screw for unit time.
pub fn se3_exp(twist: &Twist) -> Pose {
    let omega_theta = [twist[0], twist[1], twist[2]];
    let v_theta = [twist[3], twist[4], twist[5]];
    let rotation = so3_exp(&omega_theta);
    let g = left_jacobian_so3(&omega_theta);
    Pose {
        position_m: mat3_vec(&g, &v_theta),
        rotation,
    }
}

/// Matrix logarithm of a pose: the twist `[omega theta | v theta]` whose exponential is `pose`.
pub fn se3_log(pose: &Pose) -> Twist {
    let omega_theta = so3_log(&pose.rotation);
    let v_theta = mat3_vec(&left_jacobian_so3_inverse(&omega_theta), &pose.position_m);
    [
        omega_theta[0],
        omega_theta[1],
        omega_theta[2],
        v_theta[0],
        v_theta[1],
        v_theta[2],
    ]
}

/// G(theta) = I theta + (1 - cos) [w] + (theta - sin) [w]^2, written in `omega_theta` directly:
/// I + (1 - cos t)/t^2 K + (t - sin t)/t^3 K^2 with K = [omega_theta].
fn left_jacobian_so3(omega_theta: &[f64; 3]) -> Rotation {
    let theta_sq = dot(omega_theta, omega_theta);
    let theta = theta_sq.sqrt();
    let (b, c) = if theta < 1e-5 {
        (0.5 - theta_sq / 24.0, 1.0 / 6.0 - theta_sq / 120.0)
    } else {
        (
            (1.0 - theta.cos()) / theta_sq,
            (theta - theta.sin()) / (theta_sq * theta),
        )
    };
    identity_plus(omega_theta, b, c)
}

/// Inverse of [`left_jacobian_so3`]: I - K/2 + (1/t^2 - (1 + cos t)/(2 t sin t)) K^2.
fn left_jacobian_so3_inverse(omega_theta: &[f64; 3]) -> Rotation {
    let theta_sq = dot(omega_theta, omega_theta);
    let theta = theta_sq.sqrt();
    let c = if theta < 1e-5 {
        1.0 / 12.0 + theta_sq / 720.0
    } else {
        1.0 / theta_sq - (1.0 + theta.cos()) / (2.0 * theta * theta.sin())
    };
    identity_plus(omega_theta, -0.5, c)
}

/// I + b K + c K^2 with K = [omega].
fn identity_plus(omega: &[f64; 3], b: f64, c: f64) -> Rotation {
    let k = skew(omega);
    let k2 = mat3_mul(&k, &k);
    let mut out = IDENTITY_ROTATION;
    for row in 0..3 {
        for col in 0..3 {
            out[row][col] += b * k[row][col] + c * k2[row][col];
        }
    }
    out
}

/// Angle (rad, in [0, pi]) of the rotation taking `a` to `b`.
pub fn rotation_angle_between(a: &Rotation, b: &Rotation) -> f64 {
    norm3(&so3_log(&mat3_mul(&mat3_transpose(a), b)))
}

/// The skew-symmetric matrix `[v]` with `[v] x = v cross x`.
pub fn skew(v: &[f64; 3]) -> Rotation {
    [[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]]
}

/// 3x3 matrix product `a * b`.
pub fn mat3_mul(a: &Rotation, b: &Rotation) -> Rotation {
    let mut out = [[0.0; 3]; 3];
    for (row, out_row) in out.iter_mut().enumerate() {
        for (col, value) in out_row.iter_mut().enumerate() {
            *value = a[row][0] * b[0][col] + a[row][1] * b[1][col] + a[row][2] * b[2][col];
        }
    }
    out
}

/// Transpose of a 3x3 matrix (the inverse, for a rotation).
pub fn mat3_transpose(a: &Rotation) -> Rotation {
    [
        [a[0][0], a[1][0], a[2][0]],
        [a[0][1], a[1][1], a[2][1]],
        [a[0][2], a[1][2], a[2][2]],
    ]
}

/// Matrix-vector product `a * v`.
pub fn mat3_vec(a: &Rotation, v: &[f64; 3]) -> [f64; 3] {
    [
        a[0][0] * v[0] + a[0][1] * v[1] + a[0][2] * v[2],
        a[1][0] * v[0] + a[1][1] * v[1] + a[1][2] * v[2],
        a[2][0] * v[0] + a[2][1] * v[1] + a[2][2] * v[2],
    ]
}

/// Cross product `a x b`.
pub fn cross(a: &[f64; 3], b: &[f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// Dot product.
pub fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Euclidean norm.
pub fn norm3(v: &[f64; 3]) -> f64 {
    dot(v, v).sqrt()
}

fn vec3_add(a: &[f64; 3], b: &[f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_rotation_close(a: &Rotation, b: &Rotation, tol: f64) {
        for row in 0..3 {
            for col in 0..3 {
                assert!(
                    (a[row][col] - b[row][col]).abs() < tol,
                    "entry ({row},{col}): {a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn rpy_round_trip_and_convention() {
        let rpy = [0.3, -0.7, 2.1];
        let r = rotation_from_rpy(rpy);
        let back = rpy_from_rotation(&r);
        for i in 0..3 {
            assert!((back[i] - rpy[i]).abs() < 1e-12, "{back:?} vs {rpy:?}");
        }
        // Pure yaw turns x into y: R = Rz(yaw) with the other angles zero.
        let yaw_only = rotation_from_rpy([0.0, 0.0, std::f64::consts::FRAC_PI_2]);
        assert_rotation_close(&yaw_only, &rot_z(std::f64::consts::FRAC_PI_2), 1e-15);
        let expected = mat3_mul(&rot_z(2.1), &mat3_mul(&rot_y(-0.7), &rot_x(0.3)));
        assert_rotation_close(&r, &expected, 1e-15);
    }

    #[test]
    fn rpy_at_gimbal_lock_reproduces_rotation() {
        let r = rotation_from_rpy([0.4, std::f64::consts::FRAC_PI_2, -0.2]);
        let rpy = rpy_from_rotation(&r);
        assert_rotation_close(&rotation_from_rpy(rpy), &r, 1e-9);
    }

    #[test]
    fn so3_log_inverts_exp_including_near_pi() {
        for omega in [
            [0.0, 0.0, 0.0],
            [1e-8, -2e-8, 0.0],
            [0.3, -0.2, 0.9],
            [0.0, std::f64::consts::PI - 1e-7, 0.0],
            [2.0, -1.5, 1.0],
        ] {
            let log = so3_log(&so3_exp(&omega));
            for i in 0..3 {
                assert!((log[i] - omega[i]).abs() < 1e-6, "{log:?} vs {omega:?}");
            }
        }
    }

    #[test]
    fn se3_log_inverts_exp_and_inverse_composes_to_identity() {
        let twist = [0.2, -0.4, 0.7, 0.1, 0.3, -0.2];
        let pose = se3_exp(&twist);
        let log = se3_log(&pose);
        for i in 0..6 {
            assert!((log[i] - twist[i]).abs() < 1e-12, "{log:?} vs {twist:?}");
        }
        let identity = pose.compose(&pose.inverse());
        assert_rotation_close(&identity.rotation, &IDENTITY_ROTATION, 1e-12);
        assert!(norm3(&identity.position_m) < 1e-12);
    }

    #[test]
    fn pure_translation_twist_moves_without_rotating() {
        let pose = se3_exp(&[0.0, 0.0, 0.0, 0.1, -0.2, 0.3]);
        assert_eq!(pose.rotation, IDENTITY_ROTATION);
        assert_eq!(pose.position_m, [0.1, -0.2, 0.3]);
    }

    #[test]
    fn adjoint_twist_matches_adjoint_matrix() {
        let pose = Pose::from_xyz_rpy([0.1, -0.2, 0.3], [0.5, 0.1, -1.0]);
        let twist = [0.3, 0.1, -0.2, 0.5, 0.0, 0.4];
        let ad = pose.adjoint();
        let fast = pose.adjoint_twist(&twist);
        for row in 0..6 {
            let slow: f64 = (0..6).map(|col| ad[row][col] * twist[col]).sum();
            assert!((slow - fast[row]).abs() < 1e-15);
        }
    }
}
