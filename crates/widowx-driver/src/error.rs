//! Typed driver errors. Every error about one servo names it by ID and joint ([`ServoRef`]).

use std::fmt;
use std::path::PathBuf;

use crate::faults::{HardwareErrors, StatusError};
use widowx::control_table::Model;
use widowx::joints::Joint;

/// A servo as errors and reports name it: its ID and, when the configuration knows it, its joint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServoRef {
    pub id: u8,
    pub joint: Option<Joint>,
}

impl fmt::Display for ServoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.joint {
            Some(joint) => write!(f, "servo {} ({joint})", self.id),
            None => write!(f, "servo {}", self.id),
        }
    }
}

/// Why a configured servo is not usable, found by pinging it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServoProblem {
    /// No reply to PING after every configured attempt.
    Missing { servo: ServoRef, attempts: u32 },
    /// A reply, but from another model than configured.
    WrongModel {
        servo: ServoRef,
        expected: Model,
        found_model_number: u16,
    },
}

impl fmt::Display for ServoProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServoProblem::Missing { servo, attempts } => {
                write!(f, "{servo}: missing (no reply to {attempts} pings)")
            }
            ServoProblem::WrongModel {
                servo,
                expected,
                found_model_number,
            } => {
                let found = Model::from_model_number(*found_model_number)
                    .map_or("an unknown model", |m| m.name());
                write!(
                    f,
                    "{servo}: wrong model: expected {expected} (model number {}), found {found} (model number {found_model_number})",
                    expected.model_number()
                )
            }
        }
    }
}

/// What was wrong with a reply. A plain value (no allocation): the driver records it on every
/// corrupt or stray reply, which a loaded bus produces in normal operation, and only a read that
/// exhausts its retries turns it into an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReply {
    /// The packet failed to parse (header, CRC, ID or instruction byte).
    #[error("{0}")]
    Invalid(dynamixel2::InvalidMessage),
    /// The length field claims more bytes than any reply of this driver has.
    #[error("reply claims {bytes} bytes")]
    TooLong { bytes: usize },
    /// A reply from a servo that was not asked.
    #[error("reply came from ID {id}")]
    WrongId { id: u8 },
    /// A reply of the wrong size for the instruction.
    #[error("reply from ID {id} has {bytes} parameter bytes, expected {expected}")]
    WrongLength {
        id: u8,
        bytes: usize,
        expected: usize,
    },
    /// A status packet flagged an error but carried no error number.
    #[error("status with an empty error")]
    EmptyError,
}

/// Everything that can go wrong talking to the arm.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot open serial port {port}")]
    Open {
        port: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The port failed (vanished, unplugged, closed) while in use.
    #[error("serial port {port} failed (was the adapter unplugged?)")]
    Io {
        port: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No (complete) reply within `DriverConfig::reply_timeout_s` on every attempt.
    #[error("{servo}: no reply to {instruction} within {timeout_s} s ({attempts} attempts)")]
    Timeout {
        servo: ServoRef,
        instruction: &'static str,
        timeout_s: f64,
        attempts: u32,
    },
    /// Replies arrived but were corrupt (CRC, length or ID wrong) on every attempt.
    #[error("{servo}: corrupt reply to {instruction} ({attempts} attempts): {detail}")]
    Corrupt {
        servo: ServoRef,
        instruction: &'static str,
        attempts: u32,
        detail: CorruptReply,
    },
    /// The servo answered with an error number: it refused the instruction.
    #[error("{servo} refused {what}: {error}")]
    Motor {
        servo: ServoRef,
        what: String,
        error: StatusError,
    },
    /// A status reply had the alert bit set: the servo has a hardware error (read at address 70
    /// when possible). Clear it with a reboot.
    #[error("{servo}: hardware alert: {}; reboot the servo to clear it", describe_faults(.faults))]
    Alert {
        servo: ServoRef,
        faults: Option<HardwareErrors>,
    },
    /// Configured servos that are missing or of the wrong model (all of them listed).
    #[error("{} configured servo(s) not usable: {}", .problems.len(), join(.problems))]
    Servos { problems: Vec<ServoProblem> },
    #[error("{servo}: {register} is an EEPROM register; torque must be off")]
    EepromWhileTorqueOn {
        servo: ServoRef,
        register: &'static str,
    },
    #[error("{servo}: {register} is read-only")]
    ReadOnlyRegister {
        servo: ServoRef,
        register: &'static str,
    },
    #[error("{servo}: the {model} has no register named `{name}`")]
    UnknownRegister {
        servo: ServoRef,
        model: Model,
        name: String,
    },
    #[error("{servo}: {value} is outside the valid range {min}..={max} of {register}")]
    ValueOutOfRange {
        servo: ServoRef,
        register: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error(
        "{servo}: goal {goal_rad} rad is outside the joint's limits {min_rad:.5}..={max_rad:.5} rad{detail}; nothing was sent"
    )]
    GoalOutOfRange {
        servo: ServoRef,
        goal_rad: f64,
        min_rad: f64,
        max_rad: f64,
        detail: &'static str,
    },
    #[error(
        "move time {move_time_s} s is outside 0.001..=32.767 s (the time-based profile counts ms in 15 bits)"
    )]
    InvalidMoveTime { move_time_s: f64 },
    #[error("servo {id} is not in the firmware configuration")]
    UnknownServo { id: u8 },
    #[error("{servo}: did not answer PING within {timeout_s} s after REBOOT")]
    RebootTimeout { servo: ServoRef, timeout_s: f64 },
    #[error(
        "{shadow}: calibration against master {master} failed: after setting Homing_Offset the shadow reads {shadow_ticks} ticks, the master {master_ticks}"
    )]
    Calibration {
        shadow: ServoRef,
        master: ServoRef,
        shadow_ticks: i64,
        master_ticks: i64,
    },
    #[error("invalid driver configuration: field `{field}`: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "torque off not confirmed by {}; every other servo is off",
        .servos.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    TorqueOffUnconfirmed { servos: Vec<ServoRef> },
}

fn describe_faults(faults: &Option<HardwareErrors>) -> String {
    match faults {
        Some(f) => format!("Hardware_Error_Status {:#04x} = {f}", f.raw()),
        None => "Hardware_Error_Status could not be read".to_string(),
    }
}

fn join(problems: &[ServoProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl DriverError {
    /// The servo this error is about, if it is about one.
    pub fn servo(&self) -> Option<ServoRef> {
        match self {
            DriverError::Timeout { servo, .. }
            | DriverError::Corrupt { servo, .. }
            | DriverError::Motor { servo, .. }
            | DriverError::Alert { servo, .. }
            | DriverError::EepromWhileTorqueOn { servo, .. }
            | DriverError::ReadOnlyRegister { servo, .. }
            | DriverError::UnknownRegister { servo, .. }
            | DriverError::ValueOutOfRange { servo, .. }
            | DriverError::GoalOutOfRange { servo, .. }
            | DriverError::RebootTimeout { servo, .. } => Some(*servo),
            DriverError::Calibration { shadow, .. } => Some(*shadow),
            DriverError::TorqueOffUnconfirmed { servos } => servos.first().copied(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_servo_and_joint() {
        let elbow = ServoRef {
            id: 4,
            joint: Some(Joint::Elbow),
        };
        let err = DriverError::EepromWhileTorqueOn {
            servo: elbow,
            register: "Min_Position_Limit",
        };
        assert_eq!(
            err.to_string(),
            "servo 4 (elbow): Min_Position_Limit is an EEPROM register; torque must be off"
        );
        let err = DriverError::Alert {
            servo: elbow,
            faults: Some(HardwareErrors::from_raw(0x20)),
        };
        assert_eq!(
            err.to_string(),
            "servo 4 (elbow): hardware alert: Hardware_Error_Status 0x20 = overload; reboot the servo to clear it"
        );
        assert_eq!(err.servo(), Some(elbow));
    }

    #[test]
    fn servo_problems_are_all_listed() {
        let err = DriverError::Servos {
            problems: vec![
                ServoProblem::Missing {
                    servo: ServoRef {
                        id: 10,
                        joint: Some(Joint::Shoulder),
                    },
                    attempts: 3,
                },
                ServoProblem::WrongModel {
                    servo: ServoRef {
                        id: 8,
                        joint: Some(Joint::WristRotate),
                    },
                    expected: Model::Xl430W250,
                    found_model_number: 1020,
                },
            ],
        };
        let text = err.to_string();
        assert!(
            text.starts_with("2 configured servo(s) not usable"),
            "{text}"
        );
        assert!(text.contains("servo 10 (shoulder): missing"), "{text}");
        assert!(text.contains("servo 8 (wrist_rotate): wrong model: expected XL430-W250 (model number 1060), found XM430-W350"), "{text}");
    }

    #[test]
    fn unknown_joint_is_omitted() {
        assert_eq!(
            ServoRef {
                id: 12,
                joint: None
            }
            .to_string(),
            "servo 12"
        );
    }
}
