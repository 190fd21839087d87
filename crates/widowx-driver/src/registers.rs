//! Single-register access by name, with the control table's range and access checks: how set-up
//! and repair tools read and write a servo (the control loop uses the SYNC transfers instead).

use widowx::control_table::{Area, Model, Register, reg};

use crate::Arm;
use crate::error::{CorruptReply, DriverError, ServoRef};

impl Arm {
    /// The register called `name` of servo `id` (its model from the configuration, else from PING).
    pub fn register(&mut self, id: u8, name: &str) -> Result<&'static Register, DriverError> {
        let servo = self.servo_ref(id);
        let model = self.model_of(id)?;
        model
            .register(name)
            .ok_or_else(|| DriverError::UnknownRegister {
                servo,
                model,
                name: name.to_string(),
            })
    }

    pub(crate) fn model_of(&mut self, id: u8) -> Result<Model, DriverError> {
        if let Some(servo) = self.firmware.servo(id) {
            return Ok(servo.model);
        }
        let (model_number, _) = self.ping(id)?;
        Model::from_model_number(model_number).ok_or_else(|| {
            DriverError::Unsupported(format!(
                "servo {id} is a model {model_number}, which this driver does not know"
            ))
        })
    }

    /// Reads register `name` of servo `id`.
    pub fn read_register(&mut self, id: u8, name: &str) -> Result<i64, DriverError> {
        let register = self.register(id, name)?;
        self.read_raw(self.servo_ref(id), register)
    }

    /// Writes register `name` of servo `id` after checking that it is writable, that `value`
    /// is in its range, and, for EEPROM registers, that torque is off (refused before sending).
    pub fn write_register(&mut self, id: u8, name: &str, value: i64) -> Result<(), DriverError> {
        let servo = self.servo_ref(id);
        let model = self.model_of(id)?;
        let register = self.register(id, name)?;
        if !register.writable() {
            return Err(DriverError::ReadOnlyRegister {
                servo,
                register: register.name,
            });
        }
        let (min, max) = model.range(register);
        if value < min || value > max {
            return Err(DriverError::ValueOutOfRange {
                servo,
                register: register.name,
                value,
                min,
                max,
            });
        }
        if register.area() == Area::Eeprom && self.read_raw(servo, &reg::TORQUE_ENABLE)? != 0 {
            return Err(DriverError::EepromWhileTorqueOn {
                servo,
                register: register.name,
            });
        }
        self.write_raw(servo, register, value)?;
        if register.address == reg::TORQUE_ENABLE.address {
            self.torque_commanded.insert(id, value != 0);
        }
        Ok(())
    }

    /// Writes `value` to `register` of servo `id` with no check on our side: the servo decides
    /// (and its refusal is reported as [`DriverError::Motor`]). For repair and for tests.
    pub fn write_register_unchecked(
        &mut self,
        id: u8,
        register: &Register,
        value: i64,
    ) -> Result<(), DriverError> {
        self.write_raw(self.servo_ref(id), register, value)
    }

    pub(crate) fn read_raw(
        &mut self,
        servo: ServoRef,
        register: &Register,
    ) -> Result<i64, DriverError> {
        let reply = self
            .link
            .read(servo, register.address, u16::from(register.size))?;
        if reply.alert && register.address != reg::HARDWARE_ERROR_STATUS.address {
            tracing::warn!("{servo} reports a hardware error (alert bit)");
        }
        register
            .decode(reply.data())
            .ok_or_else(|| DriverError::Corrupt {
                servo,
                instruction: "READ",
                attempts: 1,
                detail: CorruptReply::WrongLength {
                    id: servo.id,
                    bytes: reply.data().len(),
                    expected: usize::from(register.size),
                },
            })
    }

    pub(crate) fn write_raw(
        &mut self,
        servo: ServoRef,
        register: &Register,
        value: i64,
    ) -> Result<(), DriverError> {
        let bytes = register.encode(value);
        let alert = self
            .link
            .write(
                servo,
                register.address,
                &bytes[..usize::from(register.size)],
            )
            .map_err(|e| match e {
                DriverError::Motor { servo, error, .. } => DriverError::Motor {
                    servo,
                    what: format!("the write of {} = {value}", register.name),
                    error,
                },
                other => other,
            })?;
        if alert {
            tracing::warn!("{servo} reports a hardware error (alert bit)");
        }
        Ok(())
    }
}
