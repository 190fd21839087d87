//! Conversions between raw servo units and SI units: the one place they live.

use std::f64::consts::TAU;

/// Position ticks per revolution of an X-series servo.
pub const TICKS_PER_REV: f64 = 4096.0;
/// Tick value of the zero angle.
pub const CENTER_TICKS: i32 = 2048;
/// One raw unit of velocity registers, in rev/min.
pub const VELOCITY_UNIT_RPM: f64 = 0.229;
/// One raw unit of XM430 current registers, in mA.
pub const CURRENT_UNIT_MA: f64 = 2.69;
/// One raw unit of XL430 Present_Load, in percent of maximum load.
pub const LOAD_UNIT_PERCENT: f64 = 0.1;

pub fn ticks_to_rad(ticks: i32) -> f64 {
    f64::from(ticks - CENTER_TICKS) * TAU / TICKS_PER_REV
}

/// Nearest tick for `angle_rad` (not clamped to any limit).
pub fn rad_to_ticks(angle_rad: f64) -> i32 {
    (angle_rad * TICKS_PER_REV / TAU).round() as i32 + CENTER_TICKS
}

pub fn velocity_raw_to_rad_s(raw: i32) -> f64 {
    f64::from(raw) * VELOCITY_UNIT_RPM * TAU / 60.0
}

pub fn rad_s_to_velocity_raw(velocity_rad_s: f64) -> i32 {
    (velocity_rad_s * 60.0 / (TAU * VELOCITY_UNIT_RPM)).round() as i32
}

pub fn current_raw_to_ma(raw: i16) -> f64 {
    f64::from(raw) * CURRENT_UNIT_MA
}

pub fn load_raw_to_percent(raw: i16) -> f64 {
    f64::from(raw) * LOAD_UNIT_PERCENT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angle_round_trip() {
        assert_eq!(ticks_to_rad(2048), 0.0);
        assert!((ticks_to_rad(3072) - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
        for ticks in [0, 1, 819, 2048, 3345, 4095] {
            assert_eq!(rad_to_ticks(ticks_to_rad(ticks)), ticks);
        }
    }

    #[test]
    fn velocity_limit_is_pi() {
        assert!((velocity_raw_to_rad_s(131) - std::f64::consts::PI).abs() < 0.01);
        assert_eq!(rad_s_to_velocity_raw(velocity_raw_to_rad_s(131)), 131);
    }
}
