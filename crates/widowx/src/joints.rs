//! The arm's joints, their order and their limits: the one place these live.

use std::f64::consts::PI;

/// Number of arm joints (the gripper excluded), in kinematic order.
pub const ARM_JOINTS: usize = 6;

/// A commanded degree of freedom of the WidowX 250 6DOF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Joint {
    Waist,
    Shoulder,
    Elbow,
    ForearmRoll,
    WristAngle,
    WristRotate,
    Gripper,
}

impl Joint {
    /// Every joint, arm joints in kinematic order, then the gripper.
    pub const ALL: [Joint; ARM_JOINTS + 1] = [
        Joint::Waist,
        Joint::Shoulder,
        Joint::Elbow,
        Joint::ForearmRoll,
        Joint::WristAngle,
        Joint::WristRotate,
        Joint::Gripper,
    ];

    /// The name used in configuration files and the Interbotix description.
    pub fn name(self) -> &'static str {
        match self {
            Joint::Waist => "waist",
            Joint::Shoulder => "shoulder",
            Joint::Elbow => "elbow",
            Joint::ForearmRoll => "forearm_roll",
            Joint::WristAngle => "wrist_angle",
            Joint::WristRotate => "wrist_rotate",
            Joint::Gripper => "gripper",
        }
    }

    /// Parses a name as written by [`Joint::name`].
    pub fn from_name(name: &str) -> Option<Joint> {
        Joint::ALL.into_iter().find(|j| j.name() == name)
    }

    /// Index into arrays of [`ARM_JOINTS`] values; `None` for the gripper.
    pub fn arm_index(self) -> Option<usize> {
        Joint::ALL[..ARM_JOINTS].iter().position(|&j| j == self)
    }
}

impl std::fmt::Display for Joint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Closed interval of allowed joint angles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JointLimits {
    pub min_rad: f64,
    pub max_rad: f64,
}

impl JointLimits {
    /// Whether `angle_rad` lies inside the limits.
    pub fn contains(&self, angle_rad: f64) -> bool {
        (self.min_rad..=self.max_rad).contains(&angle_rad)
    }

    /// `angle_rad` moved to the nearest point inside the limits.
    pub fn clamp(&self, angle_rad: f64) -> f64 {
        angle_rad.clamp(self.min_rad, self.max_rad)
    }
}

const CONTINUOUS: JointLimits = JointLimits {
    min_rad: -(PI - 1e-5),
    max_rad: PI - 1e-5,
};

/// URDF limits of the arm joints, waist..wrist_rotate (Interbotix wx250s description).
pub const ARM_JOINT_LIMITS: [JointLimits; ARM_JOINTS] = [
    CONTINUOUS,
    JointLimits {
        min_rad: -1.88496,
        max_rad: 1.98968,
    },
    JointLimits {
        min_rad: -2.14675,
        max_rad: 1.60570,
    },
    CONTINUOUS,
    JointLimits {
        min_rad: -1.74533,
        max_rad: 2.14675,
    },
    CONTINUOUS,
];

/// Velocity limit of every arm joint (servo Velocity_Limit 131 x 0.229 rpm).
pub const MAX_JOINT_VELOCITY_RAD_S: f64 = PI;

/// Interbotix sleep pose: the arm folded onto its rest.
pub const SLEEP_POSE_RAD: [f64; ARM_JOINTS] = [0.0, -1.80, 1.55, 0.0, 0.8, 0.0];

/// Neutral pose used by the Bridge stack when it resets or recovers.
pub const BRIDGE_NEUTRAL_POSE_RAD: [f64; ARM_JOINTS] =
    [-0.132, -0.762, 0.445, -0.020, 1.756, -0.160];

impl<'de> serde::Deserialize<'de> for Joint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Joint::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown joint `{name}`, expected one of: waist, shoulder, elbow, forearm_roll, wrist_angle, wrist_rotate, gripper"
            ))
        })
    }
}

impl serde::Serialize for Joint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}
