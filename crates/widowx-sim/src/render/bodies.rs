//! What the camera sees of the arm and the blocks, as coloured boxes: the arm's links follow
//! the product-of-exponentials chain (each link is placed at the home pose and carried by the
//! screw motions of the joints before it), the fingers stand where [`Scene::finger_position_m`]
//! says, and each block is its cube.
//!
//! The link shapes are rough (a WidowX 250 seen from a metre away): what matters is that every
//! joint's motion shows in the image.

use widowx::joints::ARM_JOINTS;
use widowx::kinematics::{HOME_POSE, SCREW_AXES};
use widowx::pose::{IDENTITY_ROTATION, Pose, Rotation, se3_exp};

use crate::world::{PAD_HALF_WIDTH_M, PAD_X_RANGE_M, Scene};

/// A solid box: `pose` maps the box's own frame (centred, axis-aligned) into `base_link`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxBody {
    pub pose: Pose,
    pub half_extents_m: [f64; 3],
    pub color_rgb: [u8; 3],
}

const ARM_RGB: [u8; 3] = [52, 52, 58];
const SERVO_RGB: [u8; 3] = [78, 78, 86];
const FINGER_RGB: [u8; 3] = [168, 168, 176];
const BASE_RGB: [u8; 3] = [40, 40, 44];
/// Thickness of a finger across the closing direction, m.
const FINGER_THICKNESS_M: f64 = 0.007;

/// A link part at the home pose: a box between two points (or around one), carried by the
/// frame after joint `after_joint` (0 = fixed to the base).
struct LinkPart {
    after_joint: usize,
    from_m: [f64; 3],
    to_m: [f64; 3],
    /// Half the thickness across the segment: (in the arm's vertical plane, sideways).
    half_thickness_m: [f64; 2],
    color_rgb: [u8; 3],
}

/// Joint axes at the home pose (from the screw axes: `v = -omega x q`).
const SHOULDER_Z_M: f64 = 0.11065;
const ELBOW_M: [f64; 3] = [0.04975, 0.0, 0.36065];
const FOREARM_ROLL_X_M: f64 = 0.22;
const WRIST_M: [f64; 3] = [0.29975, 0.0, 0.36065];

const LINK_PARTS: [LinkPart; 8] = [
    LinkPart {
        after_joint: 0,
        from_m: [0.0, 0.0, 0.0],
        to_m: [0.0, 0.0, 0.055],
        half_thickness_m: [0.055, 0.055],
        color_rgb: BASE_RGB,
    },
    LinkPart {
        after_joint: 1,
        from_m: [0.0, 0.0, 0.055],
        to_m: [0.0, 0.0, SHOULDER_Z_M + 0.02],
        half_thickness_m: [0.03, 0.038],
        color_rgb: SERVO_RGB,
    },
    LinkPart {
        after_joint: 2,
        from_m: [0.0, 0.0, SHOULDER_Z_M],
        to_m: ELBOW_M,
        half_thickness_m: [0.017, 0.021],
        color_rgb: ARM_RGB,
    },
    LinkPart {
        after_joint: 3,
        from_m: [ELBOW_M[0] - 0.02, 0.0, ELBOW_M[2]],
        to_m: [FOREARM_ROLL_X_M, 0.0, ELBOW_M[2]],
        half_thickness_m: [0.017, 0.02],
        color_rgb: ARM_RGB,
    },
    LinkPart {
        after_joint: 4,
        from_m: [FOREARM_ROLL_X_M, 0.0, ELBOW_M[2]],
        to_m: [WRIST_M[0] + 0.015, 0.0, WRIST_M[2]],
        half_thickness_m: [0.015, 0.018],
        color_rgb: SERVO_RGB,
    },
    LinkPart {
        after_joint: 5,
        from_m: [WRIST_M[0] - 0.015, 0.0, WRIST_M[2]],
        to_m: [0.375, 0.0, WRIST_M[2]],
        half_thickness_m: [0.016, 0.018],
        color_rgb: ARM_RGB,
    },
    // The gripper body (servo and bar), ending where the fingers start.
    LinkPart {
        after_joint: 6,
        from_m: [0.375, 0.0, WRIST_M[2]],
        to_m: [HOME_POSE.position_m[0] + PAD_X_RANGE_M.0, 0.0, WRIST_M[2]],
        half_thickness_m: [0.018, 0.04],
        color_rgb: SERVO_RGB,
    },
    // A stub of the elbow bracket, so the elbow reads as a joint.
    LinkPart {
        after_joint: 3,
        from_m: [ELBOW_M[0] - 0.02, 0.0, ELBOW_M[2]],
        to_m: [ELBOW_M[0] + 0.02, 0.0, ELBOW_M[2]],
        half_thickness_m: [0.024, 0.026],
        color_rgb: SERVO_RGB,
    },
];

/// The pose of the frame after each joint: index 0 is the base (identity), index `k` the
/// product of the first `k` screw motions, so a point given at the home pose and attached after
/// joint `k` is at `frames[k] * point`.
pub fn link_frames(arm_joints_rad: &[f64; ARM_JOINTS]) -> [Pose; ARM_JOINTS + 1] {
    let mut frames = [Pose::IDENTITY; ARM_JOINTS + 1];
    for joint in 0..ARM_JOINTS {
        let motion = se3_exp(&SCREW_AXES[joint].map(|c| c * arm_joints_rad[joint]));
        frames[joint + 1] = frames[joint].compose(&motion);
    }
    frames
}

/// Appends every box the scene shows (links, fingers, blocks) to `out`.
pub fn scene_boxes(scene: &Scene, out: &mut Vec<BoxBody>) {
    let frames = link_frames(&scene.arm_joints_rad());
    for part in &LINK_PARTS {
        out.push(segment_box(&frames[part.after_joint], part));
    }
    let ee = frames[ARM_JOINTS].compose(&HOME_POSE);
    let pad_m = scene.finger_position_m();
    let half_length_m = (PAD_X_RANGE_M.1 - PAD_X_RANGE_M.0) / 2.0;
    let centre_x_m = (PAD_X_RANGE_M.1 + PAD_X_RANGE_M.0) / 2.0;
    for side in [-1.0, 1.0] {
        let centre = [centre_x_m, side * (pad_m + FINGER_THICKNESS_M / 2.0), 0.0];
        out.push(BoxBody {
            pose: ee.compose(&Pose::new(centre, IDENTITY_ROTATION)),
            half_extents_m: [half_length_m, FINGER_THICKNESS_M / 2.0, PAD_HALF_WIDTH_M],
            color_rgb: FINGER_RGB,
        });
    }
    for block in &scene.blocks {
        let half = block.size_m / 2.0;
        out.push(BoxBody {
            pose: Pose::new(block.position_m, block.rotation),
            half_extents_m: [half; 3],
            color_rgb: block.color_rgb,
        });
    }
}

/// The box of a link part, placed by `frame`.
fn segment_box(frame: &Pose, part: &LinkPart) -> BoxBody {
    let axis = [
        part.to_m[0] - part.from_m[0],
        part.to_m[1] - part.from_m[1],
        part.to_m[2] - part.from_m[2],
    ];
    let length = (axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]).sqrt();
    let centre = [
        (part.to_m[0] + part.from_m[0]) / 2.0,
        (part.to_m[1] + part.from_m[1]) / 2.0,
        (part.to_m[2] + part.from_m[2]) / 2.0,
    ];
    let home = Pose::new(centre, segment_rotation(axis, length));
    BoxBody {
        pose: frame.compose(&home),
        half_extents_m: [
            length / 2.0,
            part.half_thickness_m[1],
            part.half_thickness_m[0],
        ],
        color_rgb: part.color_rgb,
    }
}

/// A rotation whose x axis points along `axis` (in the x-z plane at the home pose) and whose y
/// axis is the base's y.
fn segment_rotation(axis: [f64; 3], length: f64) -> Rotation {
    if length < 1e-12 {
        return IDENTITY_ROTATION;
    }
    let x = [axis[0] / length, 0.0, axis[2] / length];
    let y = [0.0, 1.0, 0.0];
    // z = x cross y
    let z = [-x[2], 0.0, x[0]];
    [[x[0], y[0], z[0]], [x[1], y[1], z[1]], [x[2], y[2], z[2]]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use widowx::kinematics::forward;

    #[test]
    fn last_frame_times_home_is_forward_kinematics() {
        let joints = [0.3, -0.4, 0.5, 0.2, 0.9, -0.6];
        let ee = link_frames(&joints)[ARM_JOINTS].compose(&HOME_POSE);
        let expected = forward(&joints);
        for i in 0..3 {
            assert!((ee.position_m[i] - expected.position_m[i]).abs() < 1e-12);
        }
    }

    #[test]
    fn segment_rotation_is_proper() {
        let r = segment_rotation([0.04975, 0.0, 0.25], (0.04975f64.hypot(0.25)).abs());
        let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
            - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
            + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
        assert!((det - 1.0).abs() < 1e-12);
    }
}
