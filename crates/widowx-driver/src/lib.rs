//! The Dynamixel Protocol 2.0 driver of the arm: connect, check, configure and command the
//! servos described by a [`FirmwareConfig`] over a serial port (a U2D2 or a pseudo-terminal of
//! the virtual arm).
//!
//! The control loop uses two calls per cycle, each one bus transaction: [`Arm::read_joint_state`]
//! (one SYNC_READ of 12 bytes at address 126 over the seven masters, decoded into a buffer the
//! arm owns, no allocation) and [`Arm::write_joint_goals`] (one SYNC_WRITE of 12 bytes at address
//! 108 to the six arm masters: time-based profile and goal). Set-up and repair: [`Arm::verify`],
//! [`Arm::apply`], [`Arm::reboot`], [`Arm::read_register`], [`Arm::write_register`].
//!
//! Every wait and retry is explicit in [`DriverConfig`]. Errors ([`DriverError`]) name the servo
//! by ID and joint. A status reply with the alert bit set is an [`DriverError::Alert`] in the
//! control calls (joint state, gripper, torque on); diagnostic calls (ping, register reads and
//! writes, hardware errors, reboot, torque off) carry on and log a warning, since they are how
//! a faulted servo is inspected and repaired.
//!
//! Not for: kinematics ([`widowx::kinematics`]), scheduling the control loop, or the virtual arm.
//!
//! ```no_run
//! use widowx_driver::{Arm, DriverConfig};
//! use widowx::firmware::FirmwareConfig;
//! # fn main() -> Result<(), widowx_driver::DriverError> {
//! let mut arm = Arm::connect("/dev/ttyDXL".as_ref(), FirmwareConfig::wx250s(), DriverConfig::default())?;
//! arm.set_torque(true, None)?;
//! let state = *arm.read_joint_state()?;
//! let mut goal = state.arm_positions_rad();
//! goal[0] += 0.05;
//! arm.write_joint_goals(&goal, 0.25)?;
//! # Ok(()) }
//! ```

mod config;
mod error;
pub mod faults;
mod link;
pub mod ports;
mod registers;
mod scan;
mod setup;
mod state;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use dynamixel2::instructions::SyncWriteData;

pub use config::DriverConfig;
pub use error::{CorruptReply, DriverError, ServoProblem, ServoRef};
pub use faults::{HardwareErrors, HardwareFault, StatusError};
pub use link::{INSTRUCTION_OVERHEAD_BYTES, STATUS_OVERHEAD_BYTES, wire_time};
pub use scan::{FoundServo, PingReport, ScanHit, scan};
pub use setup::{ApplyReport, RegisterChange, RegisterDiff, VerifyReport};
pub use state::{
    Effort, GOAL_ADDRESS, GOAL_BYTES, GoalLimits, JOINT_STATE_ADDRESS, JOINT_STATE_BYTES,
    JointState, MoveProfile,
};

use link::Link;
use widowx::control_table::{Model, OperatingMode, reg};
use widowx::firmware::{FirmwareConfig, ServoConfig};
use widowx::joints::{ARM_JOINTS, Joint, JointLimits};

/// One master as the control loop needs it.
#[derive(Debug, Clone, Copy)]
struct Master {
    servo: ServoRef,
    model: Model,
}

/// A connected arm.
pub struct Arm {
    link: Link,
    firmware: FirmwareConfig,
    config: DriverConfig,
    masters: [Master; ARM_JOINTS + 1],
    master_ids: [u8; ARM_JOINTS + 1],
    goal_limits: [GoalLimits; ARM_JOINTS],
    state: JointState,
    /// Torque state last commanded per servo ID, restored after a reboot.
    torque_commanded: BTreeMap<u8, bool>,
}

impl std::fmt::Debug for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arm")
            .field("port", &self.link.port())
            .field("arm", &self.firmware.arm)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.firmware.arm, self.link.port().display())
    }
}

impl Arm {
    /// Opens `port` at the configured baud rate, warns about a slow FTDI latency timer, and
    /// pings every configured servo: an error lists every missing or wrong-model servo.
    pub fn connect(
        port: &Path,
        firmware: FirmwareConfig,
        config: DriverConfig,
    ) -> Result<Arm, DriverError> {
        let mut arm = Arm::open(port, firmware, config)?;
        arm.ping_all().into_result()?;
        Ok(arm)
    }

    /// Opens `port` without pinging (for repair tools that work on a partly answering arm).
    pub fn open(
        port: &Path,
        firmware: FirmwareConfig,
        config: DriverConfig,
    ) -> Result<Arm, DriverError> {
        config.validate()?;
        let latency =
            ports::check_latency_timer(&config.sysfs_root, port, config.max_latency_timer_ms);
        if let Some(warning) = latency.warning() {
            tracing::warn!("{warning}");
        }
        let masters = masters_of(&firmware)?;
        let goal_limits = goal_limits_of(&firmware, &masters);
        let link = Link::open(port, firmware.baud_rate_bps, config.link_timing())?;
        Ok(Arm {
            link,
            master_ids: masters.map(|m| m.servo.id),
            masters,
            goal_limits,
            firmware,
            config,
            state: JointState::default(),
            torque_commanded: BTreeMap::new(),
        })
    }

    /// The joint limits this arm enforces on every goal (URDF and servo limits reconciled,
    /// [`FirmwareConfig::joint_limits`]): clamp setpoints to these and no goal is refused.
    pub fn joint_limits(&self) -> [JointLimits; ARM_JOINTS] {
        self.goal_limits.map(|g| JointLimits {
            min_rad: g.min_rad,
            max_rad: g.max_rad,
        })
    }

    pub fn firmware(&self) -> &FirmwareConfig {
        &self.firmware
    }

    pub fn config(&self) -> &DriverConfig {
        &self.config
    }

    /// Sets the gripper pressure used by [`Arm::gripper_open`] and [`Arm::gripper_close`].
    pub fn set_gripper_pressure(&mut self, pressure: f64) -> Result<(), DriverError> {
        if !(0.0..=1.0).contains(&pressure) {
            return Err(DriverError::Config {
                field: "gripper_pressure",
                message: format!("{pressure} is not in 0..=1"),
            });
        }
        self.config.gripper_pressure = pressure;
        Ok(())
    }

    /// The servo `id` named by the configuration (joint unknown when it is not configured).
    pub fn servo_ref(&self, id: u8) -> ServoRef {
        ServoRef {
            id,
            joint: self.firmware.servo(id).map(|s| s.joint),
        }
    }

    fn servo_config(&self, id: u8) -> Result<&ServoConfig, DriverError> {
        self.firmware
            .servo(id)
            .ok_or(DriverError::UnknownServo { id })
    }

    /// Pings every configured servo (with `ping_retries`) and checks its model.
    pub fn ping_all(&mut self) -> PingReport {
        let mut report = PingReport::default();
        let servos: Vec<(ServoRef, Model)> = self
            .firmware
            .servos
            .iter()
            .map(|s| {
                (
                    ServoRef {
                        id: s.id,
                        joint: Some(s.joint),
                    },
                    s.model,
                )
            })
            .collect();
        for (servo, expected) in servos {
            match self.link.ping(servo, self.config.ping_retries) {
                Ok((model_number, firmware_version, alert)) => {
                    if alert {
                        tracing::warn!("{servo} reports a hardware error (alert bit)");
                    }
                    if model_number != expected.model_number() {
                        report.problems.push(ServoProblem::WrongModel {
                            servo,
                            expected,
                            found_model_number: model_number,
                        });
                    }
                    report.found.push(FoundServo {
                        servo,
                        model_number,
                        firmware_version,
                        alert,
                    });
                }
                Err(error) => {
                    tracing::debug!("ping of {servo} failed: {error}");
                    let attempts = self.config.ping_retries + 1;
                    report
                        .problems
                        .push(ServoProblem::Missing { servo, attempts });
                }
            }
        }
        report
    }

    /// Pings one servo: (model number, firmware version).
    pub fn ping(&mut self, id: u8) -> Result<(u16, u8), DriverError> {
        let servo = self.servo_ref(id);
        let (model, firmware, _) = self.link.ping(servo, self.config.ping_retries)?;
        Ok((model, firmware))
    }

    /// Reads the joint state of the seven masters with one SYNC_READ (lost or corrupt replies
    /// are asked for again, only those servos, up to `retries` times). Allocation-free; the
    /// returned state lives in the arm until the next call.
    pub fn read_joint_state(&mut self) -> Result<&JointState, DriverError> {
        let mut received = [false; ARM_JOINTS + 1];
        let mut alert_index = None;
        let Arm {
            link,
            masters,
            master_ids,
            state,
            ..
        } = self;
        link.sync_read(
            master_ids,
            JOINT_STATE_ADDRESS,
            JOINT_STATE_BYTES,
            &mut received,
            |id| {
                masters
                    .iter()
                    .find(|m| m.servo.id == id)
                    .map_or(ServoRef { id, joint: None }, |m| m.servo)
            },
            |index, block, alert| {
                state.decode_into(index, masters[index].model, block);
                if alert && alert_index.is_none() {
                    alert_index = Some(index);
                }
            },
        )?;
        if let Some(index) = alert_index {
            return Err(self.alert_error(self.masters[index].servo));
        }
        Ok(&self.state)
    }

    /// The last joint state read.
    pub fn joint_state(&self) -> &JointState {
        &self.state
    }

    /// Commands the six arm joints with one SYNC_WRITE to their masters (shadows follow by
    /// secondary ID): each joint reaches `joints_rad` after `move_time_s`, accelerating over
    /// `profile_acceleration_fraction` of it. A goal outside a joint's URDF limits or the
    /// servo's position limits is refused, naming the joint, and nothing is sent.
    pub fn write_joint_goals(
        &mut self,
        joints_rad: &[f64; ARM_JOINTS],
        move_time_s: f64,
    ) -> Result<(), DriverError> {
        if !self.firmware.time_based_profile {
            return Err(DriverError::Unsupported(
                "write_joint_goals needs the time-based profile (time_based_profile = true in the firmware config)"
                    .into(),
            ));
        }
        let profile = MoveProfile::new(move_time_s, self.config.profile_acceleration_fraction)?;
        let mut packets = [const {
            SyncWriteData {
                motor_id: 0,
                data: [0u8; GOAL_BYTES],
            }
        }; ARM_JOINTS];
        for (i, packet) in packets.iter_mut().enumerate() {
            let ticks = self.goal_limits[i].goal_ticks(joints_rad[i])?;
            *packet = SyncWriteData {
                motor_id: self.master_ids[i],
                data: profile.goal_block(ticks),
            };
        }
        self.link.sync_write(GOAL_ADDRESS, &packets)
    }

    /// Opens the gripper at the configured pressure (positive PWM, as Interbotix).
    pub fn gripper_open(&mut self) -> Result<(), DriverError> {
        let pwm = self.config.gripper_pwm() as i16;
        self.set_gripper_pwm(pwm)
    }

    /// Closes the gripper at the configured pressure (negative PWM).
    pub fn gripper_close(&mut self) -> Result<(), DriverError> {
        let pwm = self.config.gripper_pwm() as i16;
        self.set_gripper_pwm(-pwm)
    }

    /// Stops driving the gripper (Goal_PWM 0).
    pub fn gripper_stop(&mut self) -> Result<(), DriverError> {
        self.set_gripper_pwm(0)
    }

    fn set_gripper_pwm(&mut self, pwm: i16) -> Result<(), DriverError> {
        let gripper = self.masters[ARM_JOINTS].servo;
        let mode = self.servo_config(gripper.id)?.operating_mode;
        if mode != OperatingMode::Pwm {
            return Err(DriverError::Unsupported(format!(
                "{gripper} runs in {mode:?} mode; the gripper commands need PWM mode"
            )));
        }
        let alert = self
            .link
            .write(gripper, reg::GOAL_PWM.address, &pwm.to_le_bytes())?;
        if alert {
            return Err(self.alert_error(gripper));
        }
        Ok(())
    }

    /// Turns torque on or off for servo `id`, or for every configured servo (each by its own
    /// ID). Before torque-on each position-mode servo's goal is set to where it is, so it holds
    /// still instead of jumping to a stale goal.
    ///
    /// Torque off for every servo goes out as one SYNC_WRITE, so that a servo that does not
    /// answer cannot leave the ones after it powered; each servo is then read back and, if it
    /// did not confirm, written once more on its own. The error names every servo that still
    /// did not confirm; all the others are off.
    pub fn set_torque(&mut self, enabled: bool, id: Option<u8>) -> Result<(), DriverError> {
        if !enabled && id.is_none() {
            return self.torque_off_everywhere();
        }
        let ids: Vec<u8> = match id {
            Some(id) => vec![self.servo_config(id)?.id],
            None => self.firmware.servos.iter().map(|s| s.id).collect(),
        };
        for id in ids {
            self.set_servo_torque(id, enabled)?;
        }
        Ok(())
    }

    fn torque_off_everywhere(&mut self) -> Result<(), DriverError> {
        let ids: Vec<u8> = self.firmware.servos.iter().map(|s| s.id).collect();
        let off: Vec<SyncWriteData<[u8; 1]>> = ids
            .iter()
            .map(|&motor_id| SyncWriteData {
                motor_id,
                data: [0],
            })
            .collect();
        if let Err(e) = self.link.sync_write(reg::TORQUE_ENABLE.address, &off) {
            // The read-back below finds out which servos took it; each is retried on its own.
            tracing::warn!("torque off by SYNC_WRITE failed ({e}); writing each servo");
        }
        let mut unconfirmed = Vec::new();
        for id in ids {
            let servo = self.servo_ref(id);
            let confirmed = self.torque_reads_off(servo)
                || (self.set_servo_torque(id, false).is_ok() && self.torque_reads_off(servo));
            if confirmed {
                self.torque_commanded.insert(id, false);
            } else {
                unconfirmed.push(servo);
            }
        }
        if unconfirmed.is_empty() {
            Ok(())
        } else {
            Err(DriverError::TorqueOffUnconfirmed {
                servos: unconfirmed,
            })
        }
    }

    fn torque_reads_off(&mut self, servo: ServoRef) -> bool {
        self.read_raw(servo, &reg::TORQUE_ENABLE)
            .is_ok_and(|value| value == 0)
    }

    fn set_servo_torque(&mut self, id: u8, enabled: bool) -> Result<(), DriverError> {
        let servo = self.servo_ref(id);
        let position_mode = self.servo_config(id)?.operating_mode != OperatingMode::Pwm;
        if enabled && position_mode {
            let present = self.read_raw(servo, &reg::PRESENT_POSITION)?;
            self.write_raw(servo, &reg::GOAL_POSITION, present)?;
        }
        let alert = self
            .link
            .write(servo, reg::TORQUE_ENABLE.address, &[u8::from(enabled)])?;
        self.torque_commanded.insert(id, enabled);
        if alert && enabled {
            return Err(self.alert_error(servo));
        }
        if alert {
            tracing::warn!("{servo} reports a hardware error (alert bit) while turning torque off");
        }
        Ok(())
    }

    /// Hardware_Error_Status of every configured servo.
    pub fn hardware_errors(&mut self) -> Result<Vec<(ServoRef, HardwareErrors)>, DriverError> {
        let ids: Vec<u8> = self.firmware.servos.iter().map(|s| s.id).collect();
        ids.into_iter()
            .map(|id| {
                let servo = self.servo_ref(id);
                let raw = self.read_raw(servo, &reg::HARDWARE_ERROR_STATUS)?;
                Ok((servo, HardwareErrors::from_raw(raw as u8)))
            })
            .collect()
    }

    /// Reboots servo `id` (clearing its hardware error), waits until it answers PING again
    /// (`reboot_timeout_s`), then restores its RAM settings, its configured operating mode, and
    /// the torque state last commanded (or the one it had before the reboot).
    pub fn reboot(&mut self, id: u8) -> Result<(), DriverError> {
        let servo = self.servo_ref(id);
        let servo_config = self.servo_config(id)?.clone();
        let torque_before = match self.torque_commanded.get(&id) {
            Some(&on) => on,
            None => self.read_raw(servo, &reg::TORQUE_ENABLE)? != 0,
        };
        self.link.reboot(servo)?;
        self.wait_for_ping(servo)?;
        let mode = i64::from(servo_config.operating_mode.raw());
        if self.read_raw(servo, &reg::OPERATING_MODE)? != mode {
            self.write_raw(servo, &reg::OPERATING_MODE, mode)?;
        }
        for (register, value) in self.firmware.ram_settings(&servo_config) {
            self.write_raw(servo, &register, value)?;
        }
        if torque_before {
            self.set_servo_torque(id, true)?;
        }
        Ok(())
    }

    fn wait_for_ping(&mut self, servo: ServoRef) -> Result<(), DriverError> {
        let started = Instant::now();
        let timeout = Duration::from_secs_f64(self.config.reboot_timeout_s);
        loop {
            std::thread::sleep(Duration::from_secs_f64(self.config.reboot_poll_interval_s));
            match self.link.ping(servo, 0) {
                Ok(_) => return Ok(()),
                Err(e @ (DriverError::Io { .. } | DriverError::Open { .. })) => return Err(e),
                Err(_) if started.elapsed() < timeout => {}
                Err(_) => {
                    return Err(DriverError::RebootTimeout {
                        servo,
                        timeout_s: self.config.reboot_timeout_s,
                    });
                }
            }
        }
    }

    /// The alert error for `servo`, with its Hardware_Error_Status when it can be read.
    fn alert_error(&mut self, servo: ServoRef) -> DriverError {
        let faults = self
            .read_raw(servo, &reg::HARDWARE_ERROR_STATUS)
            .ok()
            .map(|raw| HardwareErrors::from_raw(raw as u8));
        DriverError::Alert { servo, faults }
    }
}

fn masters_of(firmware: &FirmwareConfig) -> Result<[Master; ARM_JOINTS + 1], DriverError> {
    let mut masters = [Master {
        servo: ServoRef { id: 0, joint: None },
        model: Model::Xm430W350,
    }; ARM_JOINTS + 1];
    for (slot, joint) in masters.iter_mut().zip(Joint::ALL) {
        let servo = firmware.master(joint).ok_or_else(|| {
            DriverError::Unsupported(format!("the firmware config has no master for `{joint}`"))
        })?;
        *slot = Master {
            servo: ServoRef {
                id: servo.id,
                joint: Some(joint),
            },
            model: servo.model,
        };
    }
    Ok(masters)
}

fn goal_limits_of(
    firmware: &FirmwareConfig,
    masters: &[Master; ARM_JOINTS + 1],
) -> [GoalLimits; ARM_JOINTS] {
    let limits = firmware.joint_limits();
    std::array::from_fn(|i| {
        let servo = masters[i].servo;
        let (min_ticks, max_ticks) = firmware
            .position_limits_ticks(Joint::ALL[i])
            .unwrap_or((i64::MIN, i64::MAX));
        GoalLimits::new(servo, limits[i], min_ticks, max_ticks)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid_and_documented_values_hold() {
        let config = DriverConfig::default();
        config.validate().unwrap();
        assert_eq!(config.gripper_pwm(), 250);
        assert!((config.worst_case_silence_s() - (3.0 * 0.020 + 2.0 * 0.001)).abs() < 1e-12);
    }

    #[test]
    fn config_fields_are_range_checked() {
        let bad = DriverConfig {
            profile_acceleration_fraction: 0.7,
            ..DriverConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("profile_acceleration_fraction")
        );
        let bad = DriverConfig {
            gripper_pwm_max: 900,
            ..DriverConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("gripper_pwm_max")
        );
        let bad = DriverConfig {
            reply_timeout_s: 0.0,
            ..DriverConfig::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn config_deserializes_a_subset() {
        let config: DriverConfig = toml::from_str("reply_timeout_s = 0.005\nretries = 4").unwrap();
        assert_eq!(config.retries, 4);
        assert_eq!(config.ping_retries, DriverConfig::default().ping_retries);
        assert!(toml::from_str::<DriverConfig>("retry = 4").is_err());
    }

    #[test]
    fn gripper_pressure_maps_linearly() {
        let at = |p| {
            DriverConfig {
                gripper_pressure: p,
                ..DriverConfig::default()
            }
            .gripper_pwm()
        };
        assert_eq!((at(0.0), at(1.0), at(0.25)), (150, 350, 200));
    }

    #[test]
    fn goal_limits_take_the_masters_servo_limits() {
        let firmware = FirmwareConfig::wx250s();
        let masters = masters_of(&firmware).unwrap();
        let limits = goal_limits_of(&firmware, &masters);
        assert_eq!((limits[1].min_ticks, limits[1].max_ticks), (819, 3345));
        assert_eq!(
            limits[4].servo,
            ServoRef {
                id: 7,
                joint: Some(Joint::WristAngle)
            }
        );
        assert_eq!(masters.map(|m| m.servo.id), firmware.master_ids());
        assert_eq!(masters[5].model, Model::Xl430W250);
    }
}
