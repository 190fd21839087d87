//! The driver's settings: timeouts, retries and the gripper's PWM range, each with a documented
//! default.

use std::time::Duration;

use crate::error::DriverError;
use crate::link::LinkTiming;

/// Timeouts, retries and gripper settings of the driver. Every field has a documented default
/// (`DriverConfig::default()`); a config file may set any subset.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriverConfig {
    /// Longest wait for one status reply beyond its own wire time at the bus baud rate, in s.
    /// Default 0.020: a reply normally arrives within 1-2 ms with a 1 ms FTDI latency timer;
    /// 20 ms still covers the kernel's 16 ms default.
    pub reply_timeout_s: f64,
    /// Further attempts after a timeout or corrupt reply (not after a servo's error reply or a
    /// port failure). Default 2: three attempts in all.
    pub retries: u32,
    /// Further attempts of each PING while checking the configured servos. Default 3.
    pub ping_retries: u32,
    /// Pause before a retry so replies still in flight land and are discarded, in s. Default 0.001.
    pub retry_settle_s: f64,
    /// Longest wait for a rebooted servo to answer PING again, in s. Default 3.0 (a servo
    /// restarts in well under a second).
    pub reboot_timeout_s: f64,
    /// Interval between PINGs while waiting for a reboot, in s. Default 0.05.
    pub reboot_poll_interval_s: f64,
    /// Highest acceptable FTDI latency timer; above it `connect` warns. Default 1 ms.
    pub max_latency_timer_ms: u32,
    /// Root of sysfs, for the latency timer check. Default "/sys".
    pub sysfs_root: std::path::PathBuf,
    /// Fraction of each move spent accelerating (and again decelerating) in the time-based
    /// profile, at most 0.5. Default 0.5: a smooth triangular speed profile, as short moves
    /// of one 0.2 s control step have no time to cruise.
    pub profile_acceleration_fraction: f64,
    /// Gripper grip strength in 0..=1, mapped linearly onto `gripper_pwm_min..=gripper_pwm_max`
    /// (the Interbotix `gripper_pressure`). Default 0.5.
    pub gripper_pressure: f64,
    /// Goal_PWM at pressure 0. Default 150 (Interbotix lower limit).
    pub gripper_pwm_min: u16,
    /// Goal_PWM at pressure 1. Default 350 (Interbotix upper limit).
    pub gripper_pwm_max: u16,
    /// Largest disagreement between a calibrated shadow and its master, in ticks. Default 4.
    pub calibration_tolerance_ticks: i64,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            reply_timeout_s: 0.020,
            retries: 2,
            ping_retries: 3,
            retry_settle_s: 0.001,
            reboot_timeout_s: 3.0,
            reboot_poll_interval_s: 0.05,
            max_latency_timer_ms: 1,
            sysfs_root: "/sys".into(),
            profile_acceleration_fraction: 0.5,
            gripper_pressure: 0.5,
            gripper_pwm_min: 150,
            gripper_pwm_max: 350,
            calibration_tolerance_ticks: 4,
        }
    }
}

impl DriverConfig {
    /// This configuration with its reply timeout raised to at least `reply_timeout_s`: for a
    /// bus whose replies may be late by a scheduler slice, as the virtual arm's
    /// (`widowx_sim::DRIVER_REPLY_TIMEOUT_S`).
    pub fn with_reply_timeout_at_least(self, reply_timeout_s: f64) -> DriverConfig {
        DriverConfig {
            reply_timeout_s: self.reply_timeout_s.max(reply_timeout_s),
            ..self
        }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), DriverError> {
        let fail = |field, message: &str| {
            Err(DriverError::Config {
                field,
                message: message.to_string(),
            })
        };
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.reply_timeout_s) || self.reply_timeout_s > 10.0 {
            return fail("reply_timeout_s", "must be in (0, 10] s");
        }
        if !(self.retry_settle_s.is_finite() && (0.0..=1.0).contains(&self.retry_settle_s)) {
            return fail("retry_settle_s", "must be in [0, 1] s");
        }
        if !positive(self.reboot_timeout_s) || !positive(self.reboot_poll_interval_s) {
            return fail(
                "reboot_timeout_s",
                "reboot_timeout_s and reboot_poll_interval_s must be positive",
            );
        }
        if !(0.0..=0.5).contains(&self.profile_acceleration_fraction) {
            return fail(
                "profile_acceleration_fraction",
                "must be in 0..=0.5 (the servo clips longer ramps)",
            );
        }
        if !(0.0..=1.0).contains(&self.gripper_pressure) {
            return fail("gripper_pressure", "must be in 0..=1");
        }
        if self.gripper_pwm_min > self.gripper_pwm_max || self.gripper_pwm_max > 885 {
            return fail(
                "gripper_pwm_max",
                "need gripper_pwm_min <= gripper_pwm_max <= 885 (PWM_Limit)",
            );
        }
        Ok(())
    }

    pub(crate) fn link_timing(&self) -> LinkTiming {
        LinkTiming {
            reply_timeout: Duration::from_secs_f64(self.reply_timeout_s),
            retries: self.retries,
            retry_settle: Duration::from_secs_f64(self.retry_settle_s),
        }
    }

    /// Upper bound of a single-reply transaction that times out on every attempt, in s (wire
    /// times of the packets excluded): what a caller waits at most when the bus goes silent.
    pub fn worst_case_silence_s(&self) -> f64 {
        f64::from(self.retries + 1) * self.reply_timeout_s
            + f64::from(self.retries) * self.retry_settle_s
    }

    /// Goal_PWM for the configured gripper pressure.
    pub fn gripper_pwm(&self) -> u16 {
        let span = f64::from(self.gripper_pwm_max - self.gripper_pwm_min);
        self.gripper_pwm_min + (self.gripper_pressure.clamp(0.0, 1.0) * span).round() as u16
    }
}
