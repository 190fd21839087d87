//! The joint state read every control cycle and the goal packets written every control step:
//! pure encoding and decoding, no I/O.

use crate::error::{DriverError, ServoRef};
use widowx::control_table::Model;
use widowx::joints::{ARM_JOINTS, JointLimits};
use widowx::units::{
    current_raw_to_ma, load_raw_to_percent, rad_to_ticks, ticks_to_rad, velocity_raw_to_rad_s,
};

/// First address of the joint-state block: Present_Current/Present_Load (2), Present_Velocity (4),
/// Present_Position (4), all contiguous up to 138.
pub const JOINT_STATE_ADDRESS: u16 = 126;
/// Bytes of the joint-state block read from each master: the 10 decoded bytes (126..136) and the
/// low half of Velocity_Trajectory, which the 12-byte read of the Bridge setup includes and which
/// is ignored.
pub const JOINT_STATE_BYTES: u16 = 12;
/// First address of the goal block: Profile_Acceleration (4), Profile_Velocity (4), Goal_Position (4).
pub const GOAL_ADDRESS: u16 = 108;
/// Bytes of the goal block written to each arm master.
pub const GOAL_BYTES: usize = 12;

/// What a servo reports as effort: XM430s measure current, XL430s only estimate load.
/// Distinct variants so nobody mistakes an XL430 load for milliamps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effort {
    /// Present_Current of an XM430, in mA.
    CurrentMa(f64),
    /// Present_Load of an XL430, in percent of its maximum torque (sign = direction).
    LoadPercent(f64),
}

impl Effort {
    /// Decodes address 126 for `model`.
    pub fn decode(model: Model, raw: i16) -> Effort {
        match model {
            Model::Xm430W350 => Effort::CurrentMa(current_raw_to_ma(raw)),
            Model::Xl430W250 => Effort::LoadPercent(load_raw_to_percent(raw)),
        }
    }
}

impl Default for Effort {
    fn default() -> Self {
        Effort::CurrentMa(0.0)
    }
}

impl std::fmt::Display for Effort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Effort::CurrentMa(ma) => write!(f, "{ma:.0} mA"),
            Effort::LoadPercent(p) => write!(f, "{p:.1} %"),
        }
    }
}

/// The state of the seven masters in [`widowx::joints::Joint::ALL`] order (six arm joints, then the gripper).
/// The gripper's position is its motor angle in rad.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct JointState {
    pub positions_rad: [f64; ARM_JOINTS + 1],
    pub velocities_rad_s: [f64; ARM_JOINTS + 1],
    pub effort: [Effort; ARM_JOINTS + 1],
}

impl JointState {
    /// The six arm joint angles (gripper excluded).
    pub fn arm_positions_rad(&self) -> [f64; ARM_JOINTS] {
        let mut arm = [0.0; ARM_JOINTS];
        arm.copy_from_slice(&self.positions_rad[..ARM_JOINTS]);
        arm
    }

    /// Decodes one master's 12-byte block (address 126..138) into slot `index`.
    pub fn decode_into(&mut self, index: usize, model: Model, block: &[u8]) {
        let effort_raw = i16::from_le_bytes([block[0], block[1]]);
        let velocity_raw = i32::from_le_bytes([block[2], block[3], block[4], block[5]]);
        let position_ticks = i32::from_le_bytes([block[6], block[7], block[8], block[9]]);
        self.effort[index] = Effort::decode(model, effort_raw);
        self.velocities_rad_s[index] = velocity_raw_to_rad_s(velocity_raw);
        self.positions_rad[index] = ticks_to_rad(position_ticks);
    }
}

/// Limits a goal of one arm joint must satisfy: the reconciled joint limits of
/// [`widowx::firmware::FirmwareConfig::joint_limits`], and, as a last check after rounding, the
/// servos' Min/Max_Position_Limit in ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoalLimits {
    pub servo: ServoRef,
    pub min_rad: f64,
    pub max_rad: f64,
    pub min_ticks: i64,
    pub max_ticks: i64,
}

impl GoalLimits {
    /// Limits of the arm joint driven by `servo`: `limits` in radians, `min_ticks..=max_ticks`.
    pub fn new(servo: ServoRef, limits: JointLimits, min_ticks: i64, max_ticks: i64) -> GoalLimits {
        GoalLimits {
            servo,
            min_rad: limits.min_rad,
            max_rad: limits.max_rad,
            min_ticks,
            max_ticks,
        }
    }

    /// The goal in ticks, or an error naming the joint when it breaks a limit.
    pub fn goal_ticks(&self, goal_rad: f64) -> Result<i32, DriverError> {
        let out_of_range = |min_rad, max_rad, detail| DriverError::GoalOutOfRange {
            servo: self.servo,
            goal_rad,
            min_rad,
            max_rad,
            detail,
        };
        if !goal_rad.is_finite() || goal_rad < self.min_rad || goal_rad > self.max_rad {
            return Err(out_of_range(
                self.min_rad,
                self.max_rad,
                " (joint limits: URDF and servo position limits)",
            ));
        }
        let ticks = rad_to_ticks(goal_rad);
        if i64::from(ticks) < self.min_ticks || i64::from(ticks) > self.max_ticks {
            let min_rad = ticks_to_rad(self.min_ticks as i32).max(self.min_rad);
            let max_rad = ticks_to_rad(self.max_ticks as i32).min(self.max_rad);
            return Err(out_of_range(
                min_rad,
                max_rad,
                " (servo Min/Max_Position_Limit)",
            ));
        }
        Ok(ticks)
    }
}

/// Time-based profile of one move: Profile_Velocity is the whole move's duration in ms,
/// Profile_Acceleration the ramp time in ms (at most half the move, or the servo clips it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveProfile {
    pub acceleration_ms: u32,
    pub velocity_ms: u32,
}

/// Longest move the 15-bit Profile_Velocity register holds, in s.
pub const MAX_MOVE_TIME_S: f64 = 32.767;

impl MoveProfile {
    /// The profile of a move lasting `move_time_s` whose ramps take `acceleration_fraction`
    /// (at most 0.5) of it.
    pub fn new(move_time_s: f64, acceleration_fraction: f64) -> Result<MoveProfile, DriverError> {
        if !(0.001..=MAX_MOVE_TIME_S).contains(&move_time_s) {
            return Err(DriverError::InvalidMoveTime { move_time_s });
        }
        let velocity_ms = (move_time_s * 1000.0).round() as u32;
        let acceleration_ms =
            (f64::from(velocity_ms) * acceleration_fraction.clamp(0.0, 0.5)).floor() as u32;
        Ok(MoveProfile {
            acceleration_ms,
            velocity_ms,
        })
    }

    /// The 12-byte goal block: Profile_Acceleration, Profile_Velocity, Goal_Position.
    pub fn goal_block(&self, goal_ticks: i32) -> [u8; GOAL_BYTES] {
        let mut block = [0u8; GOAL_BYTES];
        block[0..4].copy_from_slice(&self.acceleration_ms.to_le_bytes());
        block[4..8].copy_from_slice(&self.velocity_ms.to_le_bytes());
        block[8..12].copy_from_slice(&goal_ticks.to_le_bytes());
        block
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use widowx::joints::Joint;

    #[test]
    fn decodes_a_block_by_model() {
        let mut state = JointState::default();
        let mut block = [0u8; 12];
        block[0..2].copy_from_slice(&(-100i16).to_le_bytes());
        block[2..6].copy_from_slice(&131i32.to_le_bytes());
        block[6..10].copy_from_slice(&3072i32.to_le_bytes());
        state.decode_into(1, Model::Xm430W350, &block);
        state.decode_into(5, Model::Xl430W250, &block);
        assert_eq!(state.effort[1], Effort::CurrentMa(-269.0));
        assert_eq!(state.effort[5], Effort::LoadPercent(-10.0));
        assert!((state.positions_rad[1] - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
        assert!((state.velocities_rad_s[5] - std::f64::consts::PI).abs() < 0.01);
    }

    #[test]
    fn goal_limits_check_radians_then_ticks() {
        use widowx::joints::ARM_JOINT_LIMITS;
        let shoulder = ServoRef {
            id: 2,
            joint: Some(Joint::Shoulder),
        };
        let limits = GoalLimits::new(shoulder, ARM_JOINT_LIMITS[1], 819, 3345);
        assert_eq!(limits.goal_ticks(0.0).ok(), Some(2048));
        let err = limits.goal_ticks(2.5).unwrap_err().to_string();
        assert!(
            err.starts_with("servo 2 (shoulder): goal 2.5 rad") && err.contains("joint limits"),
            "{err}"
        );
        // Given the URDF limits alone (not the reconciled ones the driver uses), 1.6055 rad is
        // inside the elbow's (1.60570) but rounds to tick 3095 > 3094: the tick check still
        // refuses it.
        let elbow = GoalLimits::new(
            ServoRef {
                id: 4,
                joint: Some(Joint::Elbow),
            },
            ARM_JOINT_LIMITS[2],
            648,
            3094,
        );
        let err = elbow.goal_ticks(1.6055).unwrap_err().to_string();
        assert!(
            err.contains("servo 4 (elbow)") && err.contains("Min/Max_Position_Limit"),
            "{err}"
        );
        assert_eq!(elbow.goal_ticks(1.6040).ok(), Some(3094));
        assert!(limits.goal_ticks(f64::NAN).is_err());
    }

    #[test]
    fn profile_ramps_are_at_most_half_the_move() {
        let p = MoveProfile::new(0.25, 0.5).unwrap();
        assert_eq!(
            p,
            MoveProfile {
                acceleration_ms: 125,
                velocity_ms: 250
            }
        );
        let p = MoveProfile::new(0.25, 0.9).unwrap();
        assert_eq!(p.acceleration_ms, 125);
        assert!(MoveProfile::new(0.0, 0.5).is_err());
        assert!(MoveProfile::new(40.0, 0.5).is_err());
        let block = p.goal_block(-5);
        assert_eq!(&block[0..4], &125u32.to_le_bytes());
        assert_eq!(&block[4..8], &250u32.to_le_bytes());
        assert_eq!(&block[8..12], &(-5i32).to_le_bytes());
    }
}
