//! One servo's control table memory and the rules a real X-series firmware applies to reads and
//! writes (access, EEPROM lock, data length, range and limit checks). No motion here: the arm
//! ([`crate::arm`]) reacts to the registers a write changed.

use widowx::control_table::{Access, Area, Model, OperatingMode, Register, reg};
use widowx::firmware::{FirmwareConfig, SECONDARY_ID_OFF, ServoConfig};

use crate::protocol::error;

/// Values at or above this in Secondary_ID mean "no secondary ID".
const SECONDARY_ID_FIRST_OFF: u8 = 253;

/// Why a write was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteRefusal {
    /// Reply with this error number (when a reply is due).
    Error(u8),
    /// Drop it without a word (EEPROM write through a secondary ID).
    Silent,
}

/// The control table of one servo.
#[derive(Debug, Clone)]
pub(crate) struct Servo {
    pub model: Model,
    memory: [u8; Model::MEMORY_BYTES],
    /// A REG_WRITE waiting for ACTION: start address and bytes.
    pub registered: Option<(u16, Vec<u8>)>,
}

impl Servo {
    /// A servo as it leaves the factory, with `id` and `baud_raw` already set.
    pub fn factory(model: Model, id: u8, baud_raw: u8) -> Servo {
        let mut servo = Servo {
            model,
            memory: [0; Model::MEMORY_BYTES],
            registered: None,
        };
        for register in model.registers() {
            servo.set(register, model.factory_default(register));
        }
        servo.set(&reg::ID, i64::from(id));
        servo.set(&reg::BAUD_RATE, i64::from(baud_raw));
        servo
    }

    /// A servo configured as `firmware` says (EEPROM only; RAM stays at power-on defaults).
    pub fn configured(firmware: &FirmwareConfig, config: &ServoConfig, baud_raw: u8) -> Servo {
        let mut servo = Servo::factory(config.model, config.id, baud_raw);
        for (register, value) in firmware.eeprom_settings(config) {
            servo.set(&register, value);
        }
        // Shadows are calibrated by the driver; a fresh arm has no offset anywhere.
        servo.set(&reg::HOMING_OFFSET, 0);
        servo
    }

    pub fn get(&self, register: &Register) -> i64 {
        let start = usize::from(register.address);
        register
            .decode(&self.memory[start..start + usize::from(register.size)])
            .unwrap_or_default()
    }

    pub fn set(&mut self, register: &Register, value: i64) {
        let start = usize::from(register.address);
        let size = usize::from(register.size);
        self.memory[start..start + size].copy_from_slice(&register.encode(value)[..size]);
    }

    pub fn id(&self) -> u8 {
        self.get(&reg::ID) as u8
    }

    pub fn secondary_id(&self) -> Option<u8> {
        let secondary = self.get(&reg::SECONDARY_ID) as u8;
        (secondary < SECONDARY_ID_FIRST_OFF && secondary != SECONDARY_ID_OFF).then_some(secondary)
    }

    pub fn torque_on(&self) -> bool {
        self.get(&reg::TORQUE_ENABLE) != 0
    }

    pub fn hardware_error(&self) -> u8 {
        self.get(&reg::HARDWARE_ERROR_STATUS) as u8
    }

    pub fn status_return_level(&self) -> u8 {
        self.get(&reg::STATUS_RETURN_LEVEL) as u8
    }

    pub fn operating_mode(&self) -> Option<OperatingMode> {
        OperatingMode::from_raw(self.get(&reg::OPERATING_MODE) as u8)
    }

    pub fn drive_mode(&self) -> u8 {
        self.get(&reg::DRIVE_MODE) as u8
    }

    pub fn baud_raw(&self) -> u8 {
        self.get(&reg::BAUD_RATE) as u8
    }

    /// The alert bit for this servo's replies.
    pub fn alert_bits(&self) -> u8 {
        if self.hardware_error() != 0 {
            error::ALERT
        } else {
            0
        }
    }

    /// `len` bytes from `address`, or the error number (7: outside the table).
    pub fn read(&self, address: u16, len: u16) -> Result<Vec<u8>, u8> {
        let start = usize::from(address);
        let end = start + usize::from(len);
        if len == 0 || end > Model::MEMORY_BYTES {
            return Err(error::ACCESS);
        }
        Ok(self.memory[start..end].to_vec())
    }

    /// Checks a write of `data` at `address` as the firmware would and returns the registers it
    /// sets with their new values; nothing is written on refusal. Bytes that fall into gaps of
    /// the table (reserved addresses) are accepted and ignored.
    pub fn check_write(
        &self,
        address: u16,
        data: &[u8],
        via_secondary: bool,
    ) -> Result<Vec<(Register, i64)>, WriteRefusal> {
        let start = usize::from(address);
        let end = start + data.len();
        if data.is_empty() || end > Model::MEMORY_BYTES {
            return Err(WriteRefusal::Error(error::ACCESS));
        }
        let touched: Vec<&Register> = self
            .model
            .registers()
            .filter(|r| {
                let (r_start, r_end) = (
                    usize::from(r.address),
                    usize::from(r.address) + usize::from(r.size),
                );
                r_start < end && start < r_end
            })
            .collect();
        if touched.iter().any(|r| r.area() == Area::Eeprom) && via_secondary {
            return Err(WriteRefusal::Silent);
        }
        let mut changes = Vec::with_capacity(touched.len());
        for register in touched {
            let offset = usize::from(register.address);
            if offset < start || offset + usize::from(register.size) > end {
                return Err(WriteRefusal::Error(error::DATA_LENGTH));
            }
            if register.access == Access::ReadOnly {
                return Err(WriteRefusal::Error(error::ACCESS));
            }
            if register.area() == Area::Eeprom && self.torque_on() {
                return Err(WriteRefusal::Error(error::ACCESS));
            }
            let value = register
                .decode(&data[offset - start..])
                .ok_or(WriteRefusal::Error(error::DATA_LENGTH))?;
            let (low, high) = self.model.range(register);
            if value < low || value > high {
                return Err(WriteRefusal::Error(error::DATA_RANGE));
            }
            if !self.within_limit(register, value) {
                return Err(WriteRefusal::Error(error::DATA_LIMIT));
            }
            changes.push((*register, value));
        }
        Ok(changes)
    }

    /// Limits that depend on other registers (Goal_Position inside the position limits in
    /// position mode; goal PWM, current and velocity inside their EEPROM limits).
    fn within_limit(&self, register: &Register, value: i64) -> bool {
        let symmetric = |limit: &Register| value.abs() <= self.get(limit);
        match register.name {
            "Goal_Position" if self.operating_mode() == Some(OperatingMode::Position) => {
                (self.get(&reg::MIN_POSITION_LIMIT)..=self.get(&reg::MAX_POSITION_LIMIT))
                    .contains(&value)
            }
            "Goal_PWM" => self.model.register("PWM_Limit").is_none_or(symmetric),
            "Goal_Current" => self.model.register("Current_Limit").is_none_or(symmetric),
            "Goal_Velocity" => symmetric(&reg::VELOCITY_LIMIT),
            _ => true,
        }
    }

    /// Writes checked changes.
    pub fn apply(&mut self, changes: &[(Register, i64)]) {
        for (register, value) in changes {
            self.set(register, *value);
        }
    }

    /// RAM back to power-on values; EEPROM kept (REBOOT).
    pub fn reset_ram(&mut self) {
        let model = self.model;
        for register in model.registers().filter(|r| r.area() == Area::Ram) {
            self.set(register, model.factory_default(register));
        }
        self.registered = None;
    }

    /// FACTORY_RESET: everything to factory defaults, keeping the ID (`keep_id`) and the baud
    /// rate (`keep_baud`) if asked.
    pub fn factory_reset(&mut self, keep_id: bool, keep_baud: bool) {
        let id = if keep_id {
            self.id()
        } else {
            reg::ID.default as u8
        };
        let baud = if keep_baud {
            self.baud_raw()
        } else {
            reg::BAUD_RATE.default as u8
        };
        *self = Servo::factory(self.model, id, baud);
    }
}
