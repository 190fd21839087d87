//! The virtual arm's servos on one bus: executes instruction packets against their control
//! tables, keeps the joints moving ([`crate::dynamics`]) and builds the status replies. No I/O:
//! the server feeds it packets and writes out what it returns.

use std::f64::consts::TAU;
use std::time::Instant;

use widowx::control_table::{OperatingMode, Register, baud_rate_bps, drive_mode, reg};
use widowx::joints::Joint;
use widowx::units::{CENTER_TICKS, TICKS_PER_REV};

use crate::dynamics::{
    Drive, FULL_PWM, GRIPPER_FULL_PWM_VELOCITY_UNITS, GRIPPER_STOPS_RAD, SHADOW_SHAFT_OFFSET_TICKS,
    Sample, TICKS_PER_S_PER_VELOCITY_UNIT, Trapezoid, reported_ticks, shaft_for_goal,
};
use crate::protocol::{
    BROADCAST_ID, FastSyncBlock, Packet, encode_fast_sync_status, encode_status, error, instruction,
};
use crate::servo::{Servo, WriteRefusal};
use crate::{InitialEeprom, SimConfig, SimError};

mod instructions;

/// Hardware_Error_Status bit of an overload.
pub const OVERLOAD_BIT: u8 = 1 << 5;
/// Plausible constant readings.
const INPUT_VOLTAGE_DECIVOLTS: i64 = 120;
const TEMPERATURE_C: i64 = 35;
/// Present_Current units per tick/s^2 of shaft acceleration, plus a small friction term.
const CURRENT_PER_ACCEL: f64 = 0.002;
const FRICTION_CURRENT: f64 = 8.0;
/// Extra current per tick of disagreement between a shadow's goal and where its shaft is held.
const FIGHT_CURRENT_PER_TICK: f64 = 2.0;
const MAX_LOAD_PERMILLE: f64 = 1000.0;

/// One status packet to send, with the servo's Return_Delay_Time (for bus timing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub bytes: Vec<u8>,
    pub return_delay_us: u32,
}

/// A servo and its place in the arm.
#[derive(Debug, Clone)]
struct Unit {
    servo: Servo,
    /// Index into `Arm::joints` (Joint::ALL order).
    joint: usize,
    /// Mounted so that the design configuration reverses it (`reverse` in the firmware config).
    mount_reversed: bool,
    shadow: bool,
}

/// One joint: its master servo drives the shaft; shadows are bolted to it.
#[derive(Debug, Clone)]
struct JointPlant {
    master: usize,
    /// Master shaft motion, in the master's shaft frame.
    drive: Drive,
    /// Mechanical stops in master shaft ticks, if the joint has them (the gripper).
    stops: Option<(f64, f64)>,
}

/// How an addressed servo was addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addressing {
    Primary,
    Broadcast,
    Secondary,
}

/// Which actuation-relevant registers a write touched.
#[derive(Debug, Clone, Copy, Default)]
struct Touched {
    goal_position: bool,
    goal_velocity: bool,
    goal_pwm: bool,
}

impl Touched {
    fn of(changes: &[(Register, i64)]) -> Touched {
        let has = |r: &Register| changes.iter().any(|(c, _)| c.address == r.address);
        Touched {
            goal_position: has(&reg::GOAL_POSITION),
            goal_velocity: has(&reg::GOAL_VELOCITY),
            goal_pwm: has(&reg::GOAL_PWM),
        }
    }

    fn any_goal(self) -> bool {
        self.goal_position || self.goal_velocity || self.goal_pwm
    }
}

/// Every servo of the arm and the joints they move.
#[derive(Debug)]
pub(crate) struct Arm {
    units: Vec<Unit>,
    joints: Vec<JointPlant>,
    epoch: Instant,
    /// IDs cut off the bus (a loose daisy-chain cable): they hear nothing and answer nothing.
    disconnected: Vec<u8>,
}

impl Arm {
    pub fn new(config: &SimConfig, epoch: Instant) -> Result<Arm, SimError> {
        let firmware = &config.firmware;
        let baud_raw =
            widowx::control_table::baud_rate_raw(firmware.baud_rate_bps).ok_or_else(|| {
                SimError::Config(format!(
                    "baud_rate_bps {} is not a Dynamixel baud rate",
                    firmware.baud_rate_bps
                ))
            })?;
        let units = firmware
            .servos
            .iter()
            .map(|servo_config| {
                let joint = Joint::ALL
                    .iter()
                    .position(|&j| j == servo_config.joint)
                    .ok_or_else(|| {
                        SimError::Config(format!("servo {}: unknown joint", servo_config.id))
                    })?;
                let servo = match config.initial_eeprom {
                    InitialEeprom::Configured => {
                        Servo::configured(firmware, servo_config, baud_raw)
                    }
                    InitialEeprom::Factory => {
                        Servo::factory(servo_config.model, servo_config.id, baud_raw)
                    }
                };
                Ok(Unit {
                    servo,
                    joint,
                    mount_reversed: servo_config.reverse,
                    shadow: servo_config.is_shadow(),
                })
            })
            .collect::<Result<Vec<_>, SimError>>()?;
        let joints = Self::build_joints(&units, &config.initial_joints_rad)?;
        let mut arm = Arm {
            units,
            joints,
            epoch,
            disconnected: Vec::new(),
        };
        arm.refresh(epoch);
        for index in 0..arm.units.len() {
            arm.hold_goal_at_present(index);
        }
        Ok(arm)
    }

    fn build_joints(units: &[Unit], initial_rad: &[f64; 7]) -> Result<Vec<JointPlant>, SimError> {
        Joint::ALL
            .iter()
            .enumerate()
            .map(|(index, &joint)| {
                let master = units
                    .iter()
                    .position(|u| u.joint == index && !u.shadow)
                    .ok_or_else(|| {
                        SimError::Config(format!("joint {joint} has no master servo"))
                    })?;
                let reversed = units[master].mount_reversed;
                let shaft = |angle_rad: f64| shaft_for_goal(design_ticks(angle_rad), 0, reversed);
                let stops = (joint == Joint::Gripper).then(|| {
                    let (a, b) = (shaft(GRIPPER_STOPS_RAD.0), shaft(GRIPPER_STOPS_RAD.1));
                    (a.min(b), a.max(b))
                });
                let mut at_ticks = shaft(initial_rad[index]);
                if let Some((low, high)) = stops {
                    at_ticks = at_ticks.clamp(low, high);
                }
                Ok(JointPlant {
                    master,
                    drive: Drive::Hold { at_ticks },
                    stops,
                })
            })
            .collect()
    }

    fn now_s(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.epoch).as_secs_f64()
    }

    /// Shaft state of `index` at `now_s`: the master's drive, mirrored and offset for shadows.
    fn shaft(&self, index: usize, now_s: f64) -> Sample {
        let unit = &self.units[index];
        let plant = &self.joints[unit.joint];
        let master_sample = plant.drive.sample(now_s);
        if !unit.shadow {
            return master_sample;
        }
        let mirrored = unit.mount_reversed != self.units[plant.master].mount_reversed;
        let sign = if mirrored { -1.0 } else { 1.0 };
        let base = if mirrored {
            2.0 * CENTER_TICKS as f64 - master_sample.position_ticks
        } else {
            master_sample.position_ticks
        };
        Sample {
            position_ticks: base + SHADOW_SHAFT_OFFSET_TICKS,
            velocity_ticks_s: sign * master_sample.velocity_ticks_s,
            acceleration_ticks_s2: sign * master_sample.acceleration_ticks_s2,
            ..master_sample
        }
    }

    /// Writes the present-state registers of every servo for time `now`.
    pub fn refresh(&mut self, now: Instant) {
        let now_s = self.now_s(now);
        for index in 0..self.units.len() {
            let sample = self.shaft(index, now_s);
            let fight = self.shadow_fight_ticks(index, sample.position_ticks);
            let servo = &mut self.units[index].servo;
            let reverse = servo.drive_mode() & drive_mode::REVERSE != 0;
            let direction = if reverse { -1.0 } else { 1.0 };
            let position = reported_ticks(
                sample.position_ticks,
                servo.get(&reg::HOMING_OFFSET),
                reverse,
            );
            let velocity_raw = direction * sample.velocity_ticks_s / TICKS_PER_S_PER_VELOCITY_UNIT;
            let effort = effort_raw(servo, &sample, direction, fight);
            servo.set(&reg::PRESENT_POSITION, position.round() as i64);
            servo.set(&reg::PRESENT_VELOCITY, velocity_raw.round() as i64);
            servo.set(&reg::MOVING, i64::from(sample.moving && servo.torque_on()));
            servo.set(&reg::PRESENT_CURRENT, effort.round() as i64); // Present_Load on the XL430: same address
            servo.set(&reg::PRESENT_PWM, present_pwm(servo, effort));
            servo.set(&reg::PRESENT_INPUT_VOLTAGE, INPUT_VOLTAGE_DECIVOLTS);
            servo.set(&reg::PRESENT_TEMPERATURE, TEMPERATURE_C);
            if let Some(tick) = servo.model.register("Realtime_Tick") {
                servo.set(tick, (now_s * 1000.0) as i64 % 32768);
            }
        }
    }

    /// Ticks between where a torqued shadow is told to be and where the master holds it.
    fn shadow_fight_ticks(&self, index: usize, shaft_ticks: f64) -> f64 {
        let unit = &self.units[index];
        let master = &self.units[self.joints[unit.joint].master].servo;
        if !unit.shadow || !unit.servo.torque_on() || !master.torque_on() {
            return 0.0;
        }
        let servo = &unit.servo;
        let reverse = servo.drive_mode() & drive_mode::REVERSE != 0;
        let goal_shaft = shaft_for_goal(
            servo.get(&reg::GOAL_POSITION) as f64,
            servo.get(&reg::HOMING_OFFSET),
            reverse,
        );
        goal_shaft - shaft_ticks
    }

    /// Cuts servo `id` off the bus (or reconnects it): it keeps its state and motion but hears
    /// no instruction and sends no reply.
    pub fn set_disconnected(&mut self, id: u8, disconnected: bool) {
        self.disconnected.retain(|&d| d != id);
        if disconnected {
            self.disconnected.push(id);
        }
    }

    /// Executes one instruction packet; returns the status packets to send, in order.
    /// Servos whose Baud_Rate differs from `line_bps` (when known) hear only noise.
    pub fn handle(&mut self, packet: &Packet, now: Instant, line_bps: Option<u32>) -> Vec<Reply> {
        self.refresh(now);
        let listening: Vec<usize> = (0..self.units.len())
            .filter(|&i| {
                line_bps
                    .is_none_or(|bps| baud_rate_bps(self.units[i].servo.baud_raw()) == Some(bps))
                    && !self.disconnected.contains(&self.units[i].servo.id())
            })
            .collect();
        let mut replies = Vec::new();
        match packet.instruction {
            instruction::SYNC_READ | instruction::BULK_READ | instruction::FAST_SYNC_READ
                if packet.id == BROADCAST_ID =>
            {
                self.group_read(packet, &listening, &mut replies)
            }
            instruction::SYNC_WRITE | instruction::BULK_WRITE if packet.id == BROADCAST_ID => {
                self.group_write(packet, &listening, now)
            }
            instruction::SYNC_READ
            | instruction::BULK_READ
            | instruction::FAST_SYNC_READ
            | instruction::SYNC_WRITE
            | instruction::BULK_WRITE => {} // group instructions are only valid on the broadcast ID
            _ => {
                for index in listening {
                    if let Some(addressing) = self.addressing(index, packet.id) {
                        self.single(index, addressing, packet, now, &mut replies);
                    }
                }
            }
        }
        replies
    }

    /// REBOOT: RAM to power-on values (torque off, hardware error cleared), EEPROM kept.
    pub fn reboot(&mut self, index: usize, now: Instant) {
        self.stop_if_master(index, now);
        self.units[index].servo.reset_ram();
        self.refresh(now);
        self.hold_goal_at_present(index);
    }

    /// Overload: Hardware_Error_Status bit 5, torque cut until REBOOT.
    pub fn inject_overload(&mut self, id: u8, now: Instant) {
        for index in 0..self.units.len() {
            if self.units[index].servo.id() == id {
                self.stop_if_master(index, now);
                let servo = &mut self.units[index].servo;
                let status = servo.hardware_error() | OVERLOAD_BIT;
                servo.set(&reg::HARDWARE_ERROR_STATUS, i64::from(status));
                servo.set(&reg::TORQUE_ENABLE, 0);
            }
        }
        self.refresh(now);
    }

    fn hold_goal_at_present(&mut self, index: usize) {
        let servo = &mut self.units[index].servo;
        let present = servo.get(&reg::PRESENT_POSITION);
        servo.set(&reg::GOAL_POSITION, present);
    }

    /// Freezes the joint where it is now if `index` is its master.
    fn stop_if_master(&mut self, index: usize, now: Instant) {
        let unit = &self.units[index];
        if unit.shadow {
            return;
        }
        let now_s = self.now_s(now);
        let plant = &mut self.joints[unit.joint];
        plant.drive = Drive::Hold {
            at_ticks: plant.drive.sample(now_s).position_ticks,
        };
    }

    /// Writes checked `changes` into servo `index` and makes the joint react.
    fn apply_changes(&mut self, index: usize, changes: &[(Register, i64)], now: Instant) {
        let touched = Touched::of(changes);
        let was_on = self.units[index].servo.torque_on();
        self.units[index].servo.apply(changes);
        let servo = &mut self.units[index].servo;
        if touched.any_goal()
            && !servo.torque_on()
            && servo.drive_mode() & drive_mode::TORQUE_ON_BY_GOAL_UPDATE != 0
        {
            servo.set(&reg::TORQUE_ENABLE, 1);
        }
        if servo.torque_on() && servo.hardware_error() & servo.get(&reg::SHUTDOWN) as u8 != 0 {
            servo.set(&reg::TORQUE_ENABLE, 0); // a shut-down servo keeps its torque off until REBOOT
        }
        let is_on = servo.torque_on();
        if was_on && !is_on {
            self.stop_if_master(index, now);
            return;
        }
        if !was_on && is_on && !touched.any_goal() {
            // Torque-on holds where the joint is; motion starts with the next goal.
            self.hold_goal_at_present(index);
            self.stop_if_master(index, now);
        }
        if is_on && touched.any_goal() {
            self.actuate(index, now);
        }
    }

    /// Re-plans the joint of master `index` from its goal registers and operating mode.
    fn actuate(&mut self, index: usize, now: Instant) {
        let unit = &self.units[index];
        if unit.shadow {
            return; // the master moves the joint; the shadow's goal only shows up as current
        }
        let now_s = self.now_s(now);
        let servo = &unit.servo;
        let plant = &self.joints[unit.joint];
        let from = plant.drive.sample(now_s).position_ticks;
        let reverse = servo.drive_mode() & drive_mode::REVERSE != 0;
        let direction = if reverse { -1.0 } else { 1.0 };
        let velocity_limit = servo.get(&reg::VELOCITY_LIMIT) as f64 * TICKS_PER_S_PER_VELOCITY_UNIT;
        let (min_ticks, max_ticks) = plant.stops.unwrap_or((f64::NEG_INFINITY, f64::INFINITY));
        let constant = |velocity_ticks_s: f64| Drive::Constant {
            start_s: now_s,
            from_ticks: from,
            velocity_ticks_s,
            min_ticks,
            max_ticks,
        };
        let drive = match servo.operating_mode() {
            Some(
                OperatingMode::Position
                | OperatingMode::ExtendedPosition
                | OperatingMode::CurrentBasedPosition,
            ) => {
                let mut goal = servo.get(&reg::GOAL_POSITION);
                if servo.operating_mode() == Some(OperatingMode::Position) {
                    goal = goal.clamp(
                        servo.get(&reg::MIN_POSITION_LIMIT),
                        servo.get(&reg::MAX_POSITION_LIMIT),
                    );
                }
                let to = shaft_for_goal(goal as f64, servo.get(&reg::HOMING_OFFSET), reverse)
                    .clamp(min_ticks, max_ticks);
                let (profile_velocity, profile_acceleration) = (
                    servo.get(&reg::PROFILE_VELOCITY),
                    servo.get(&reg::PROFILE_ACCELERATION),
                );
                let plan = if servo.drive_mode() & drive_mode::TIME_BASED_PROFILE != 0 {
                    Trapezoid::time_based(
                        now_s,
                        from,
                        to,
                        profile_velocity,
                        profile_acceleration,
                        velocity_limit,
                    )
                } else {
                    Trapezoid::velocity_based(
                        now_s,
                        from,
                        to,
                        profile_velocity,
                        profile_acceleration,
                        velocity_limit,
                    )
                };
                Drive::Profile(plan)
            }
            Some(OperatingMode::Pwm) => {
                let fraction = servo.get(&reg::GOAL_PWM) as f64 / FULL_PWM;
                constant(
                    direction
                        * fraction
                        * GRIPPER_FULL_PWM_VELOCITY_UNITS
                        * TICKS_PER_S_PER_VELOCITY_UNIT,
                )
            }
            Some(OperatingMode::Velocity) => constant(
                direction * servo.get(&reg::GOAL_VELOCITY) as f64 * TICKS_PER_S_PER_VELOCITY_UNIT,
            ),
            Some(OperatingMode::Current) | None => Drive::Hold { at_ticks: from },
        };
        self.joints[unit.joint].drive = drive;
    }

    /// The value of `register` in servo `id` as of `now`, if there is such a servo and register.
    pub fn register(&mut self, id: u8, register: &Register, now: Instant) -> Option<i64> {
        self.refresh(now);
        let unit = self.units.iter().find(|u| u.servo.id() == id)?;
        unit.servo
            .model
            .has(register)
            .then(|| unit.servo.get(register))
    }

    /// Physical joint angles (Joint::ALL order): the master's shaft read through the design
    /// mounting (its configured reverse bit, no homing offset).
    pub fn joint_positions_rad(&self, now: Instant) -> [f64; 7] {
        let now_s = self.now_s(now);
        std::array::from_fn(|index| {
            let plant = &self.joints[index];
            let reversed = self.units[plant.master].mount_reversed;
            let ticks = reported_ticks(plant.drive.sample(now_s).position_ticks, 0, reversed);
            (ticks - CENTER_TICKS as f64) * TAU / TICKS_PER_REV
        })
    }

    /// The Baud_Rate (bps) of the first servo, used to time replies when the line speed is unknown.
    pub fn servo_bps(&self) -> u32 {
        self.units
            .first()
            .and_then(|u| baud_rate_bps(u.servo.baud_raw()))
            .unwrap_or(1_000_000)
    }
}

/// Ticks the design mounting reports for a joint angle (no homing offset).
fn design_ticks(angle_rad: f64) -> f64 {
    angle_rad * TICKS_PER_REV / TAU + CENTER_TICKS as f64
}

fn return_delay_us(servo: &Servo) -> u32 {
    servo.get(&reg::RETURN_DELAY_TIME) as u32 * 2
}

/// Present_Current (XM, 2.69 mA units) or Present_Load (XL, 0.1 %) for a shaft sample, in the
/// servo's reported direction.
fn effort_raw(servo: &Servo, sample: &Sample, direction: f64, fight_ticks: f64) -> f64 {
    if !servo.torque_on() {
        return 0.0;
    }
    if servo.operating_mode() == Some(OperatingMode::Pwm) {
        let pwm_permille = servo.get(&reg::GOAL_PWM) as f64 / FULL_PWM * MAX_LOAD_PERMILLE;
        return if sample.stalled {
            pwm_permille
        } else {
            0.1 * pwm_permille
        };
    }
    let friction = FRICTION_CURRENT * sample.velocity_ticks_s.signum();
    let raw = direction
        * (CURRENT_PER_ACCEL * sample.acceleration_ticks_s2
            + friction
            + FIGHT_CURRENT_PER_TICK * fight_ticks);
    let limit = servo
        .model
        .register("Current_Limit")
        .map_or(MAX_LOAD_PERMILLE, |r| servo.get(r) as f64);
    raw.clamp(-limit, limit)
}

fn present_pwm(servo: &Servo, effort: f64) -> i64 {
    if !servo.torque_on() {
        return 0;
    }
    if servo.operating_mode() == Some(OperatingMode::Pwm) {
        return servo.get(&reg::GOAL_PWM);
    }
    (effort * 2.0).round().clamp(-FULL_PWM, FULL_PWM) as i64
}
