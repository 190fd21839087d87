//! The servo map and register settings of an arm, loaded from `firmware-config/*.toml`.
//!
//! This is the one place that says which servo ID drives which joint, which servos are shadows,
//! and what every configured register should hold. The driver applies and verifies it; the virtual
//! arm builds its servos from it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::control_table::{Area, Model, OperatingMode, Register, baud_rate_raw, drive_mode, reg};
use crate::joints::{ARM_JOINT_LIMITS, ARM_JOINTS, Joint, JointLimits};
use crate::units::ticks_to_rad;

/// The shipped configuration of the WidowX 250 6DOF.
pub const WX250S_TOML: &str = include_str!("../../../firmware-config/wx250s.toml");

/// The format version this code reads.
pub const FORMAT_VERSION: u32 = 1;

/// Highest ID a servo may have (253.. are reserved; 254 is broadcast).
pub const MAX_SERVO_ID: u8 = 252;

/// Secondary_ID value meaning "no secondary ID".
pub const SECONDARY_ID_OFF: u8 = 255;

/// A configuration that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read servo configuration {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("servo configuration {source_name}: {source}")]
    Parse {
        source_name: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("servo configuration {source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
    #[error("servo configuration {source_name}: servo {id} ({joint}): field `{field}`: {message}")]
    Servo {
        source_name: String,
        id: u8,
        joint: Joint,
        field: String,
        message: String,
    },
}

/// Register values by control-table name, e.g. `Return_Delay_Time = 0`.
pub type RegisterValues = BTreeMap<String, i64>;

/// Registers applied to every servo.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommonRegisters {
    #[serde(default)]
    pub eeprom: RegisterValues,
    #[serde(default)]
    pub ram: RegisterValues,
}

/// One servo of the arm.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServoConfig {
    pub id: u8,
    pub joint: Joint,
    pub model: Model,
    /// The master this servo shadows (it answers to the master's ID as its Secondary_ID).
    #[serde(default)]
    pub shadow_of: Option<u8>,
    /// Drive_Mode bit 0: positive goal turns the other way.
    pub reverse: bool,
    pub operating_mode: OperatingMode,
    pub min_position_ticks: i64,
    pub max_position_ticks: i64,
    #[serde(default)]
    pub eeprom: RegisterValues,
    #[serde(default)]
    pub ram: RegisterValues,
}

impl ServoConfig {
    pub fn is_shadow(&self) -> bool {
        self.shadow_of.is_some()
    }
}

/// The register settings and servo map of one arm.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareConfig {
    pub format_version: u32,
    pub arm: String,
    pub baud_rate_bps: u32,
    /// Drive_Mode bit 2: Profile_Velocity/Acceleration are durations in ms.
    pub time_based_profile: bool,
    #[serde(default)]
    pub common: CommonRegisters,
    #[serde(rename = "servo")]
    pub servos: Vec<ServoConfig>,
}

impl FirmwareConfig {
    /// The shipped WidowX 250 6DOF configuration.
    pub fn wx250s() -> FirmwareConfig {
        // The embedded file is validated by a unit test, so this cannot fail at run time.
        Self::from_toml_str(WX250S_TOML, "firmware-config/wx250s.toml")
            .unwrap_or_else(|e| panic!("embedded configuration is invalid: {e}"))
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<FirmwareConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `source_name` names it in errors.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<FirmwareConfig, ConfigError> {
        let config: FirmwareConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            source_name: source_name.to_string(),
            source,
        })?;
        config.validate(source_name)?;
        Ok(config)
    }

    /// The servo with this ID.
    pub fn servo(&self, id: u8) -> Option<&ServoConfig> {
        self.servos.iter().find(|s| s.id == id)
    }

    /// The master servo driving `joint`.
    pub fn master(&self, joint: Joint) -> Option<&ServoConfig> {
        self.servos
            .iter()
            .find(|s| s.joint == joint && !s.is_shadow())
    }

    /// The tick limits that bind arm joint `joint`: the tightest of its master's and its
    /// shadows' Min/Max_Position_Limit (a shadow's limits bind too: it moves with the master).
    /// None when the configuration has no master for the joint.
    pub fn position_limits_ticks(&self, joint: Joint) -> Option<(i64, i64)> {
        let master = self.master(joint)?;
        let servos = std::iter::once(master).chain(self.shadows_of(master.id));
        Some(servos.fold((i64::MIN, i64::MAX), |(lo, hi), s| {
            (lo.max(s.min_position_ticks), hi.min(s.max_position_ticks))
        }))
    }

    /// The joint limits every part of the stack enforces: the URDF limits intersected with the
    /// servos' position limits converted to radians. The one place the two are reconciled:
    /// the driver refuses goals outside them and the runtime's supervisor clamps to them, so a
    /// setpoint the supervisor passed is never refused by the driver after tick rounding (any
    /// angle inside rounds to a tick inside). A joint without a master keeps its URDF limits.
    pub fn joint_limits(&self) -> [JointLimits; ARM_JOINTS] {
        std::array::from_fn(|i| {
            let urdf = ARM_JOINT_LIMITS[i];
            match self.position_limits_ticks(Joint::ALL[i]) {
                Some((min_ticks, max_ticks)) => JointLimits {
                    min_rad: urdf.min_rad.max(ticks_to_rad(clamp_i32(min_ticks))),
                    max_rad: urdf.max_rad.min(ticks_to_rad(clamp_i32(max_ticks))),
                },
                None => urdf,
            }
        })
    }

    /// IDs of the masters in [`Joint::ALL`] order: the six arm joints, then the gripper.
    /// These are the only IDs commanded and read in the control loop.
    pub fn master_ids(&self) -> [u8; ARM_JOINTS + 1] {
        Joint::ALL.map(|joint| self.master(joint).map_or(0, |s| s.id))
    }

    /// The shadows of master `id`.
    pub fn shadows_of(&self, id: u8) -> impl Iterator<Item = &ServoConfig> {
        self.servos.iter().filter(move |s| s.shadow_of == Some(id))
    }

    /// Every EEPROM register value `servo` should hold, in address order.
    pub fn eeprom_settings(&self, servo: &ServoConfig) -> Vec<(Register, i64)> {
        let mut drive = if servo.reverse {
            drive_mode::REVERSE
        } else {
            0
        };
        if self.time_based_profile {
            drive |= drive_mode::TIME_BASED_PROFILE;
        }
        let mut values: BTreeMap<u16, (Register, i64)> = BTreeMap::new();
        let mut put = |register: Register, value: i64| {
            values.insert(register.address, (register, value));
        };
        put(reg::DRIVE_MODE, i64::from(drive));
        put(reg::OPERATING_MODE, i64::from(servo.operating_mode.raw()));
        put(
            reg::SECONDARY_ID,
            i64::from(servo.shadow_of.unwrap_or(SECONDARY_ID_OFF)),
        );
        put(reg::MIN_POSITION_LIMIT, servo.min_position_ticks);
        put(reg::MAX_POSITION_LIMIT, servo.max_position_ticks);
        for (name, value) in self.common.eeprom.iter().chain(&servo.eeprom) {
            if let Some(register) = servo.model.register(name) {
                put(*register, *value);
            }
        }
        values.into_values().collect()
    }

    /// Every RAM register value `servo` should hold before torque-on, in address order.
    pub fn ram_settings(&self, servo: &ServoConfig) -> Vec<(Register, i64)> {
        let mut values: BTreeMap<u16, (Register, i64)> = BTreeMap::new();
        for (name, value) in self.common.ram.iter().chain(&servo.ram) {
            if let Some(register) = servo.model.register(name) {
                values.insert(register.address, (*register, *value));
            }
        }
        values.into_values().collect()
    }

    fn validate(&self, source_name: &str) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            source_name: source_name.to_string(),
            message,
        };
        if self.format_version != FORMAT_VERSION {
            return Err(invalid(format!(
                "field `format_version`: is {}, this program reads version {FORMAT_VERSION}",
                self.format_version
            )));
        }
        if baud_rate_raw(self.baud_rate_bps).is_none() {
            return Err(invalid(format!(
                "field `baud_rate_bps`: {} is not a Dynamixel X-series baud rate",
                self.baud_rate_bps
            )));
        }
        for joint in Joint::ALL {
            let masters = self
                .servos
                .iter()
                .filter(|s| s.joint == joint && !s.is_shadow())
                .count();
            if masters != 1 {
                return Err(invalid(format!(
                    "joint `{joint}` has {masters} master servos, expected exactly 1"
                )));
            }
        }
        for servo in &self.servos {
            self.validate_servo(servo, source_name)?;
        }
        Ok(())
    }

    fn validate_servo(&self, servo: &ServoConfig, source_name: &str) -> Result<(), ConfigError> {
        let fail = |field: &str, message: String| ConfigError::Servo {
            source_name: source_name.to_string(),
            id: servo.id,
            joint: servo.joint,
            field: field.to_string(),
            message,
        };
        if servo.id > MAX_SERVO_ID {
            return Err(fail("id", format!("must be at most {MAX_SERVO_ID}")));
        }
        if self.servos.iter().filter(|s| s.id == servo.id).count() > 1 {
            return Err(fail("id", "is used by more than one servo".into()));
        }
        if let Some(master_id) = servo.shadow_of {
            let master = self
                .servo(master_id)
                .ok_or_else(|| fail("shadow_of", format!("no servo has ID {master_id}")))?;
            if master.is_shadow() {
                return Err(fail(
                    "shadow_of",
                    format!("servo {master_id} is itself a shadow"),
                ));
            }
            if master.model != servo.model {
                return Err(fail(
                    "shadow_of",
                    format!(
                        "master {master_id} is a {}, this servo a {}",
                        master.model, servo.model
                    ),
                ));
            }
            if master.joint != servo.joint {
                return Err(fail(
                    "shadow_of",
                    format!(
                        "master {master_id} drives `{}`, not `{}`",
                        master.joint, servo.joint
                    ),
                ));
            }
        }
        if !servo.operating_mode.supported_by(servo.model) {
            return Err(fail(
                "operating_mode",
                format!(
                    "{:?} is not supported by the {}",
                    servo.operating_mode, servo.model
                ),
            ));
        }
        let limit_range = servo.model.range(&reg::MAX_POSITION_LIMIT);
        for (field, value) in [
            ("min_position_ticks", servo.min_position_ticks),
            ("max_position_ticks", servo.max_position_ticks),
        ] {
            if value < limit_range.0 || value > limit_range.1 {
                return Err(fail(
                    field,
                    format!(
                        "{value} is outside the {}'s range {}..={}",
                        servo.model, limit_range.0, limit_range.1
                    ),
                ));
            }
        }
        if servo.min_position_ticks >= servo.max_position_ticks {
            return Err(fail(
                "min_position_ticks",
                "must be below max_position_ticks".into(),
            ));
        }
        let sections = [
            ("common.eeprom", &self.common.eeprom, Area::Eeprom),
            ("common.ram", &self.common.ram, Area::Ram),
            ("eeprom", &servo.eeprom, Area::Eeprom),
            ("ram", &servo.ram, Area::Ram),
        ];
        for (section, values, area) in sections {
            for (name, value) in values {
                let field = format!("{section}.{name}");
                let register = servo.model.register(name).ok_or_else(|| {
                    fail(&field, format!("the {} has no such register", servo.model))
                })?;
                if !register.writable() {
                    return Err(fail(&field, "is read-only".into()));
                }
                if register.area() != area {
                    return Err(fail(
                        &field,
                        format!("is a {:?} register, not {area:?}", register.area()),
                    ));
                }
                let (lo, hi) = servo.model.range(register);
                if *value < lo || *value > hi {
                    return Err(fail(
                        &field,
                        format!("{value} is outside the valid range {lo}..={hi}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A tick value as the i32 the unit conversions take (configured limits are 0..=4095; the
/// saturation only matters for a corrupt file, which validation refuses anyway).
fn clamp_i32(ticks: i64) -> i32 {
    ticks.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(edit: impl Fn(&str) -> String) -> Result<FirmwareConfig, ConfigError> {
        FirmwareConfig::from_toml_str(&edit(WX250S_TOML), "test.toml")
    }

    #[test]
    fn shipped_config_is_valid_and_matches_the_servo_map() {
        let config = FirmwareConfig::wx250s();
        assert_eq!(config.servos.len(), 9);
        assert_eq!(config.master_ids(), [1, 2, 4, 6, 7, 8, 9]);
        let shadows: Vec<u8> = config.shadows_of(2).map(|s| s.id).collect();
        assert_eq!(shadows, vec![3]);
        assert_eq!(config.servo(8).map(|s| s.model), Some(Model::Xl430W250));
    }

    #[test]
    fn eeprom_settings_derive_registers() {
        let config = FirmwareConfig::wx250s();
        let shadow = config.servo(5).expect("servo 5");
        let settings = config.eeprom_settings(shadow);
        let get = |r: Register| {
            settings
                .iter()
                .find(|(s, _)| s.address == r.address)
                .map(|(_, v)| *v)
        };
        assert_eq!(get(reg::DRIVE_MODE), Some(5)); // reverse | time-based
        assert_eq!(get(reg::SECONDARY_ID), Some(4));
        assert_eq!(get(reg::MIN_POSITION_LIMIT), Some(648));
        assert_eq!(get(reg::BAUD_RATE), Some(3));
        assert_eq!(get(reg::RETURN_DELAY_TIME), Some(0));
        assert_eq!(get(reg::VELOCITY_LIMIT), Some(131));
        let gripper = config.servo(9).expect("servo 9");
        let settings = config.eeprom_settings(gripper);
        assert!(settings.contains(&(reg::OPERATING_MODE, 16)));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = with(|t| t.replace("reverse = false\noperating_mode = \"position\"\nmin_position_ticks = 0\nmax_position_ticks = 4095\n\n[[servo]]\nid = 2", "reverse = false\nspeed = 3\noperating_mode = \"position\"\nmin_position_ticks = 0\nmax_position_ticks = 4095\n\n[[servo]]\nid = 2")).unwrap_err();
        assert!(err.to_string().contains("speed"), "{err}");
    }

    #[test]
    fn duplicate_id_names_the_servo() {
        let err = with(|t| t.replace("id = 4\n", "id = 6\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("servo 6") && err.contains("`id`"), "{err}");
    }

    #[test]
    fn shadow_of_another_model_is_rejected() {
        let err = with(|t| {
            t.replacen(
                "model = \"XM430-W350\"\nshadow_of = 2",
                "model = \"XL430-W250\"\nshadow_of = 2",
                1,
            )
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("servo 3") && err.contains("shadow_of"),
            "{err}"
        );
    }

    #[test]
    fn limits_outside_model_range_are_rejected() {
        let err = with(|t| t.replace("max_position_ticks = 3447", "max_position_ticks = 5000"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("servo 7") && err.contains("max_position_ticks") && err.contains("5000"),
            "{err}"
        );
    }

    #[test]
    fn register_values_are_checked_by_name_area_and_range() {
        let err = with(|t| t.replace("Return_Delay_Time = 0", "Return_Delay_Tme = 0"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Return_Delay_Tme") && err.contains("no such register"),
            "{err}"
        );
        let err = with(|t| t.replace("Velocity_Limit = 131", "Velocity_Limit = 5000"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Velocity_Limit") && err.contains("range"),
            "{err}"
        );
        let err = with(|t| {
            t.replace(
                "Status_Return_Level = 2",
                "Status_Return_Level = 2\nTemperature_Limit = 70",
            )
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("Temperature_Limit") && err.contains("Eeprom"),
            "{err}"
        );
    }

    #[test]
    fn pwm_gripper_on_current_mode_xl_is_rejected() {
        let err = with(|t| t.replace("operating_mode = \"pwm\"", "operating_mode = \"current\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("servo 9") && err.contains("operating_mode"),
            "{err}"
        );
    }

    #[test]
    fn joint_limits_intersect_urdf_and_servo_limits() {
        use crate::units::rad_to_ticks;
        let firmware = FirmwareConfig::wx250s();
        let limits = firmware.joint_limits();
        // Shoulder: the URDF binds below (-1.88496 > tick 819), the servo above (tick 3345).
        assert_eq!(limits[1].min_rad, ARM_JOINT_LIMITS[1].min_rad);
        assert_eq!(limits[1].max_rad, ticks_to_rad(3345));
        assert!(limits[1].max_rad < ARM_JOINT_LIMITS[1].max_rad);
        // Every angle inside the limits rounds to a tick the servos accept.
        for (i, joint) in Joint::ALL[..ARM_JOINTS].iter().enumerate() {
            let (min_ticks, max_ticks) = firmware.position_limits_ticks(*joint).unwrap();
            for angle_rad in [limits[i].min_rad, limits[i].max_rad] {
                let ticks = i64::from(rad_to_ticks(angle_rad));
                assert!(
                    (min_ticks..=max_ticks).contains(&ticks),
                    "{joint:?} {angle_rad}"
                );
            }
        }
    }
}
