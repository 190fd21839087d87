//! Checking and writing the configured register settings: [`Arm::verify`] and [`Arm::apply`],
//! including the shadow servos' homing-offset calibration.

use std::fmt;

use crate::{Arm, DriverError, ServoRef};
use widowx::control_table::{Register, reg};
use widowx::firmware::ServoConfig;

/// A register whose value differs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterDiff {
    pub servo: ServoRef,
    pub register: &'static str,
    pub expected: i64,
    pub actual: i64,
}

/// Every configured register of every servo read back and compared.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub registers_checked: usize,
    pub servos_checked: usize,
    pub diffs: Vec<RegisterDiff>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.diffs.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.diffs.is_empty() {
            return write!(
                f,
                "all {} configured registers of {} servos match",
                self.registers_checked, self.servos_checked
            );
        }
        writeln!(
            f,
            "{} of {} configured registers differ ({} servos checked):",
            self.diffs.len(),
            self.registers_checked,
            self.servos_checked
        )?;
        writeln!(
            f,
            "{:<24} {:<22} {:>10} {:>10}",
            "servo", "register", "expected", "actual"
        )?;
        for d in &self.diffs {
            writeln!(
                f,
                "{:<24} {:<22} {:>10} {:>10}",
                d.servo.to_string(),
                d.register,
                d.expected,
                d.actual
            )?;
        }
        Ok(())
    }
}

/// A register written by [`Arm::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterChange {
    pub servo: ServoRef,
    pub register: &'static str,
    pub before: i64,
    pub after: i64,
}

/// What [`Arm::apply`] changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApplyReport {
    pub changes: Vec<RegisterChange>,
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return write!(f, "nothing to change");
        }
        writeln!(f, "{} registers written:", self.changes.len())?;
        writeln!(
            f,
            "{:<24} {:<22} {:>10} {:>10}",
            "servo", "register", "before", "after"
        )?;
        for c in &self.changes {
            writeln!(
                f,
                "{:<24} {:<22} {:>10} {:>10}",
                c.servo.to_string(),
                c.register,
                c.before,
                c.after
            )?;
        }
        Ok(())
    }
}

impl Arm {
    /// Reads back every configured register (EEPROM and RAM settings) of every configured
    /// servo and lists the differences.
    pub fn verify(&mut self) -> Result<VerifyReport, DriverError> {
        let mut report = VerifyReport::default();
        for servo_config in self.firmware.servos.clone() {
            let servo = ServoRef {
                id: servo_config.id,
                joint: Some(servo_config.joint),
            };
            report.servos_checked += 1;
            for (register, expected) in self.settings(&servo_config) {
                let actual = self.read_raw(servo, &register)?;
                report.registers_checked += 1;
                if actual != expected {
                    report.diffs.push(RegisterDiff {
                        servo,
                        register: register.name,
                        expected,
                        actual,
                    });
                }
            }
        }
        Ok(report)
    }

    fn settings(&self, servo: &ServoConfig) -> Vec<(Register, i64)> {
        let mut settings = self.firmware.eeprom_settings(servo);
        settings.extend(self.firmware.ram_settings(servo));
        settings
    }

    /// Brings every servo to the configuration: torque off everywhere, EEPROM settings written
    /// to each servo by its own ID (EEPROM cannot be written through a secondary ID), shadow
    /// homing offsets calibrated against their masters, then RAM settings. Only registers that
    /// differ are written. Torque stays off.
    pub fn apply(&mut self) -> Result<ApplyReport, DriverError> {
        let mut report = ApplyReport::default();
        self.set_torque(false, None)?;
        let servos = self.firmware.servos.clone();
        for servo_config in &servos {
            let eeprom = self.firmware.eeprom_settings(servo_config);
            self.write_differing(servo_config, &eeprom, &mut report)?;
        }
        for shadow in servos.iter().filter(|s| s.is_shadow()) {
            self.calibrate_shadow(shadow, &mut report)?;
        }
        for servo_config in &servos {
            let ram = self.firmware.ram_settings(servo_config);
            self.write_differing(servo_config, &ram, &mut report)?;
        }
        Ok(report)
    }

    fn write_differing(
        &mut self,
        servo_config: &ServoConfig,
        settings: &[(Register, i64)],
        report: &mut ApplyReport,
    ) -> Result<(), DriverError> {
        let servo = ServoRef {
            id: servo_config.id,
            joint: Some(servo_config.joint),
        };
        for (register, value) in settings {
            let before = self.read_raw(servo, register)?;
            if before != *value {
                self.write_raw(servo, register, *value)?;
                report.changes.push(RegisterChange {
                    servo,
                    register: register.name,
                    before,
                    after: *value,
                });
            }
        }
        Ok(())
    }

    /// The stock driver's shadow calibration: zero the shadow's Homing_Offset, read both
    /// positions, and set the offset so the shadow reads what its master reads (master - shadow,
    /// negated when the shadow turns the other way), then check that it does.
    fn calibrate_shadow(
        &mut self,
        shadow_config: &ServoConfig,
        report: &mut ApplyReport,
    ) -> Result<(), DriverError> {
        let Some(master_id) = shadow_config.shadow_of else {
            return Ok(());
        };
        let master_reverse = self.servo_config(master_id)?.reverse;
        let shadow = ServoRef {
            id: shadow_config.id,
            joint: Some(shadow_config.joint),
        };
        let master = self.servo_ref(master_id);
        let before = self.read_raw(shadow, &reg::HOMING_OFFSET)?;
        self.write_raw(shadow, &reg::HOMING_OFFSET, 0)?;
        let master_ticks = self.read_raw(master, &reg::PRESENT_POSITION)?;
        let shadow_ticks = self.read_raw(shadow, &reg::PRESENT_POSITION)?;
        let offset = homing_offset(
            master_ticks,
            shadow_ticks,
            shadow_config.reverse != master_reverse,
        );
        self.write_raw(shadow, &reg::HOMING_OFFSET, offset)?;
        let master_ticks = self.read_raw(master, &reg::PRESENT_POSITION)?;
        let shadow_ticks = self.read_raw(shadow, &reg::PRESENT_POSITION)?;
        if (master_ticks - shadow_ticks).abs() > self.config.calibration_tolerance_ticks {
            return Err(DriverError::Calibration {
                shadow,
                master,
                shadow_ticks,
                master_ticks,
            });
        }
        if before != offset {
            report.changes.push(RegisterChange {
                servo: shadow,
                register: reg::HOMING_OFFSET.name,
                before,
                after: offset,
            });
        }
        Ok(())
    }
}

/// Homing_Offset that makes a shadow read its master's position, measured with offset 0.
/// Present_Position = position + offset in the servo's own direction; a shadow turning the
/// other way applies its offset in the mirrored frame, so the difference changes sign.
pub fn homing_offset(master_ticks: i64, shadow_ticks: i64, shadow_reversed: bool) -> i64 {
    if shadow_reversed {
        shadow_ticks - master_ticks
    } else {
        master_ticks - shadow_ticks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use widowx::joints::Joint;

    #[test]
    fn offset_sign_follows_the_stock_driver() {
        assert_eq!(homing_offset(2048, 2028, false), 20);
        assert_eq!(homing_offset(2048, 2028, true), -20);
    }

    #[test]
    fn reports_print_one_line_per_register() {
        let servo = ServoRef {
            id: 3,
            joint: Some(Joint::Shoulder),
        };
        let report = VerifyReport {
            registers_checked: 60,
            servos_checked: 9,
            diffs: vec![RegisterDiff {
                servo,
                register: "Drive_Mode",
                expected: 5,
                actual: 0,
            }],
        };
        let text = report.to_string();
        assert!(
            text.starts_with("1 of 60 configured registers differ"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.contains("servo 3 (shoulder)") && l.contains("Drive_Mode")),
            "{text}"
        );
        let clean = VerifyReport {
            registers_checked: 60,
            servos_checked: 9,
            diffs: vec![],
        };
        assert_eq!(
            clean.to_string(),
            "all 60 configured registers of 9 servos match"
        );
    }
}
