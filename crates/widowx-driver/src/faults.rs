//! What a servo says is wrong: the error field of a status packet ([`StatusError`]) and the
//! Hardware_Error_Status register, address 70 ([`HardwareErrors`]).

use std::fmt;

/// The error number of a status packet (its error byte without the alert bit): why the servo
/// refused an instruction. Numbers from the ROBOTIS Protocol 2.0 e-manual.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusError {
    /// 1: the servo failed to process the instruction.
    ResultFail,
    /// 2: undefined instruction, or REG_WRITE/ACTION misuse.
    InstructionError,
    /// 3: the instruction packet reached the servo corrupted.
    CrcError,
    /// 4: the value is outside the register's range.
    DataRange,
    /// 5: the data is shorter than the register.
    DataLength,
    /// 6: the value is outside a limit (e.g. a goal beyond a limit register).
    DataLimit,
    /// 7: read-only register, or EEPROM while torque is on.
    AccessError,
    /// Any other number.
    Unknown(u8),
}

impl StatusError {
    /// Decodes the low 7 bits of a status packet's error byte; `None` when they are 0.
    pub fn from_error_byte(error_byte: u8) -> Option<StatusError> {
        Some(match error_byte & 0x7F {
            0 => return None,
            1 => StatusError::ResultFail,
            2 => StatusError::InstructionError,
            3 => StatusError::CrcError,
            4 => StatusError::DataRange,
            5 => StatusError::DataLength,
            6 => StatusError::DataLimit,
            7 => StatusError::AccessError,
            other => StatusError::Unknown(other),
        })
    }

    /// The error number as sent on the wire.
    pub fn number(self) -> u8 {
        match self {
            StatusError::ResultFail => 1,
            StatusError::InstructionError => 2,
            StatusError::CrcError => 3,
            StatusError::DataRange => 4,
            StatusError::DataLength => 5,
            StatusError::DataLimit => 6,
            StatusError::AccessError => 7,
            StatusError::Unknown(n) => n,
        }
    }
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            StatusError::ResultFail => "result fail",
            StatusError::InstructionError => "instruction error",
            StatusError::CrcError => "CRC error (the instruction arrived corrupted)",
            StatusError::DataRange => "data range error (value outside the register's range)",
            StatusError::DataLength => "data length error",
            StatusError::DataLimit => "data limit error (value beyond a limit register)",
            StatusError::AccessError => {
                "access error (read-only register, or an EEPROM register while torque is on)"
            }
            StatusError::Unknown(_) => "unknown error",
        };
        write!(f, "{text}, error number {}", self.number())
    }
}

/// One fault bit of Hardware_Error_Status (and of the Shutdown register, which uses the same bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HardwareFault {
    /// Bit 0: supply voltage outside Min/Max_Voltage_Limit.
    InputVoltage,
    /// Bit 2: internal temperature above Temperature_Limit.
    Overheating,
    /// Bit 3: the motor encoder is not working.
    MotorEncoder,
    /// Bit 4: electrical shock on the circuit, or not enough power.
    ElectricalShock,
    /// Bit 5: persistent load above the maximum output.
    Overload,
}

impl HardwareFault {
    pub const ALL: [HardwareFault; 5] = [
        HardwareFault::InputVoltage,
        HardwareFault::Overheating,
        HardwareFault::MotorEncoder,
        HardwareFault::ElectricalShock,
        HardwareFault::Overload,
    ];

    /// The fault's bit in Hardware_Error_Status.
    pub fn bit(self) -> u8 {
        match self {
            HardwareFault::InputVoltage => 1 << 0,
            HardwareFault::Overheating => 1 << 2,
            HardwareFault::MotorEncoder => 1 << 3,
            HardwareFault::ElectricalShock => 1 << 4,
            HardwareFault::Overload => 1 << 5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HardwareFault::InputVoltage => "input voltage",
            HardwareFault::Overheating => "overheating",
            HardwareFault::MotorEncoder => "motor encoder",
            HardwareFault::ElectricalShock => "electrical shock",
            HardwareFault::Overload => "overload",
        }
    }
}

impl fmt::Display for HardwareFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The decoded Hardware_Error_Status register: a set of [`HardwareFault`]s (plus any bits the
/// e-manual does not define, kept so nothing is hidden). Cleared only by REBOOT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardwareErrors {
    raw: u8,
}

impl HardwareErrors {
    pub fn from_raw(raw: u8) -> HardwareErrors {
        HardwareErrors { raw }
    }

    pub fn raw(self) -> u8 {
        self.raw
    }

    /// No bit set: the servo is healthy.
    pub fn is_empty(self) -> bool {
        self.raw == 0
    }

    pub fn contains(self, fault: HardwareFault) -> bool {
        self.raw & fault.bit() != 0
    }

    /// The named faults that are set, in bit order.
    pub fn faults(self) -> impl Iterator<Item = HardwareFault> {
        HardwareFault::ALL
            .into_iter()
            .filter(move |f| self.contains(*f))
    }

    /// Bits that are set but name no documented fault.
    pub fn unknown_bits(self) -> u8 {
        let known = HardwareFault::ALL.iter().fold(0, |acc, f| acc | f.bit());
        self.raw & !known
    }
}

impl fmt::Display for HardwareErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no hardware error");
        }
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { ", " };
            first = false;
            f.write_str(s)
        };
        for fault in self.faults() {
            sep(f)?;
            write!(f, "{fault}")?;
        }
        let unknown = self.unknown_bits();
        for bit in (0..8).filter(|b| unknown & (1 << b) != 0) {
            sep(f)?;
            write!(f, "undocumented bit {bit}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_named_faults() {
        let errors = HardwareErrors::from_raw(0b0010_0100);
        assert!(errors.contains(HardwareFault::Overload));
        assert!(errors.contains(HardwareFault::Overheating));
        assert!(!errors.contains(HardwareFault::InputVoltage));
        assert_eq!(
            errors.faults().collect::<Vec<_>>(),
            [HardwareFault::Overheating, HardwareFault::Overload]
        );
        assert_eq!(errors.to_string(), "overheating, overload");
    }

    #[test]
    fn keeps_undocumented_bits() {
        let errors = HardwareErrors::from_raw(0b1000_0001);
        assert_eq!(errors.unknown_bits(), 0b1000_0000);
        assert_eq!(errors.to_string(), "input voltage, undocumented bit 7");
        assert_eq!(HardwareErrors::from_raw(0).to_string(), "no hardware error");
    }

    #[test]
    fn every_fault_bit_matches_the_shutdown_register_layout() {
        let bits: Vec<u8> = HardwareFault::ALL.iter().map(|f| f.bit()).collect();
        assert_eq!(bits, [1, 4, 8, 16, 32]);
    }

    #[test]
    fn status_error_numbers() {
        assert_eq!(StatusError::from_error_byte(0x80), None);
        assert_eq!(
            StatusError::from_error_byte(0x87),
            Some(StatusError::AccessError)
        );
        assert_eq!(
            StatusError::from_error_byte(0x03),
            Some(StatusError::CrcError)
        );
        assert_eq!(
            StatusError::from_error_byte(0x09),
            Some(StatusError::Unknown(9))
        );
        assert!(StatusError::AccessError.to_string().contains("EEPROM"));
        for n in 1..=9 {
            assert_eq!(StatusError::from_error_byte(n).map(|e| e.number()), Some(n));
        }
    }
}
