//! Servo motion as closed-form functions of time, so that the state at any instant is exact
//! however rarely it is sampled (the arm evaluates it lazily on every bus access).
//!
//! Positions here are *shaft* positions: raw encoder ticks before Homing_Offset and the
//! Drive_Mode reverse bit are applied. [`reported_ticks`] and [`shaft_for_goal`] map between
//! the shaft and what the servo reports and accepts on the bus.
//!
//! Profiles follow the X-series e-manual: with the time-based profile (Drive_Mode bit 2),
//! Profile_Velocity is the whole move's duration in ms and Profile_Acceleration the ramp time
//! in ms (at most half the move); with the velocity-based profile they are a speed (0.229 rpm)
//! and an acceleration (214.577 rev/min^2). Zero means "unlimited": the move runs at
//! Velocity_Limit with instant acceleration. Every move is planned from rest at the current
//! position (a simplification: real firmware blends from the current velocity).

use widowx::units::{CENTER_TICKS, TICKS_PER_REV, VELOCITY_UNIT_RPM};

/// Ticks per second of one Velocity register unit (0.229 rpm).
pub const TICKS_PER_S_PER_VELOCITY_UNIT: f64 = VELOCITY_UNIT_RPM * TICKS_PER_REV / 60.0;
/// Ticks per second squared of one velocity-based Profile_Acceleration unit (214.577 rev/min^2).
pub const TICKS_PER_S2_PER_ACCEL_UNIT: f64 = 214.577 * TICKS_PER_REV / 3600.0;
/// Where each shadow's shaft sits relative to its master's mirror image, so that an
/// uncalibrated shadow reads a different angle and Homing_Offset calibration is needed.
pub const SHADOW_SHAFT_OFFSET_TICKS: f64 = 20.0;
/// Mechanical stops of the gripper servo (joint angle, rad): the fingers cannot go further.
/// A simulator choice: the Interbotix gripper travels roughly this far between closed and open.
pub const GRIPPER_STOPS_RAD: (f64, f64) = (-0.9, 0.9);
/// Full Goal_PWM (885) drives the gripper at this many Velocity units (131 = pi rad/s).
pub const GRIPPER_FULL_PWM_VELOCITY_UNITS: f64 = 131.0;
/// Goal_PWM of full power.
pub const FULL_PWM: f64 = 885.0;

const CENTER: f64 = CENTER_TICKS as f64;

/// What the servo reports for a shaft position: Homing_Offset is added in the shaft frame,
/// then reverse mode mirrors about the centre tick. This is the rule under which the stock
/// shadow calibration (offset = master - shadow, or shadow - master when reversed) aligns both.
pub fn reported_ticks(shaft_ticks: f64, homing_offset_ticks: i64, reverse: bool) -> f64 {
    let offset = shaft_ticks + homing_offset_ticks as f64;
    if reverse {
        2.0 * CENTER - offset
    } else {
        offset
    }
}

/// The shaft position at which the servo reports `reported` (inverse of [`reported_ticks`]).
pub fn shaft_for_goal(reported: f64, homing_offset_ticks: i64, reverse: bool) -> f64 {
    let offset = if reverse {
        2.0 * CENTER - reported
    } else {
        reported
    };
    offset - homing_offset_ticks as f64
}

/// Position, velocity and acceleration of a shaft at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub position_ticks: f64,
    pub velocity_ticks_s: f64,
    pub acceleration_ticks_s2: f64,
    /// Following a profile or a non-zero velocity command.
    pub moving: bool,
    /// Pushed against a mechanical stop.
    pub stalled: bool,
}

/// A trapezoidal move from `from_ticks` to `to_ticks`: ramp up for `ramp_s`, cruise, ramp down
/// for `ramp_s`, arriving at `start_s + total_s` (ramp_s <= total_s / 2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trapezoid {
    pub start_s: f64,
    pub from_ticks: f64,
    pub to_ticks: f64,
    pub total_s: f64,
    pub ramp_s: f64,
}

impl Trapezoid {
    /// Time-based profile: the move takes `profile_velocity_ms` with `profile_acceleration_ms`
    /// ramps, stretched if it would exceed `velocity_limit_ticks_s`; 0 ms = as fast as allowed.
    pub fn time_based(
        start_s: f64,
        from_ticks: f64,
        to_ticks: f64,
        profile_velocity_ms: i64,
        profile_acceleration_ms: i64,
        velocity_limit_ticks_s: f64,
    ) -> Trapezoid {
        let total_s = profile_velocity_ms.max(0) as f64 / 1000.0;
        let ramp_s = (profile_acceleration_ms.max(0) as f64 / 1000.0).min(total_s / 2.0);
        Trapezoid {
            start_s,
            from_ticks,
            to_ticks,
            total_s,
            ramp_s,
        }
        .stretched_to(velocity_limit_ticks_s)
    }

    /// Velocity-based profile: cruise at `profile_velocity_raw` (0.229 rpm; 0 = the limit),
    /// ramp at `profile_acceleration_raw` (214.577 rev/min^2; 0 = instantly).
    pub fn velocity_based(
        start_s: f64,
        from_ticks: f64,
        to_ticks: f64,
        profile_velocity_raw: i64,
        profile_acceleration_raw: i64,
        velocity_limit_ticks_s: f64,
    ) -> Trapezoid {
        let limit = velocity_limit_ticks_s.max(f64::MIN_POSITIVE);
        let requested = profile_velocity_raw.max(0) as f64 * TICKS_PER_S_PER_VELOCITY_UNIT;
        let speed = if requested > 0.0 {
            requested.min(limit)
        } else {
            limit
        };
        let distance = (to_ticks - from_ticks).abs();
        let accel = profile_acceleration_raw.max(0) as f64 * TICKS_PER_S2_PER_ACCEL_UNIT;
        let (total_s, ramp_s) = if accel <= 0.0 {
            (distance / speed, 0.0)
        } else if distance >= speed * speed / accel {
            (distance / speed + speed / accel, speed / accel)
        } else {
            let ramp_s = (distance / accel).sqrt();
            (2.0 * ramp_s, ramp_s)
        };
        Trapezoid {
            start_s,
            from_ticks,
            to_ticks,
            total_s,
            ramp_s,
        }
    }

    /// Cruise speed of this plan.
    fn cruise_ticks_s(&self) -> f64 {
        let cruise_time_s = self.total_s - self.ramp_s;
        if cruise_time_s <= 0.0 {
            f64::INFINITY
        } else {
            (self.to_ticks - self.from_ticks).abs() / cruise_time_s
        }
    }

    /// The same shape, slowed down uniformly so the cruise speed stays within `limit`.
    fn stretched_to(self, limit_ticks_s: f64) -> Trapezoid {
        let limit = limit_ticks_s.max(f64::MIN_POSITIVE);
        let distance = (self.to_ticks - self.from_ticks).abs();
        if distance == 0.0 {
            return Trapezoid {
                total_s: 0.0,
                ramp_s: 0.0,
                ..self
            };
        }
        if self.total_s <= 0.0 {
            return Trapezoid {
                total_s: distance / limit,
                ramp_s: 0.0,
                ..self
            };
        }
        let factor = self.cruise_ticks_s() / limit;
        if factor > 1.0 {
            Trapezoid {
                total_s: self.total_s * factor,
                ramp_s: self.ramp_s * factor,
                ..self
            }
        } else {
            self
        }
    }

    pub fn end_s(&self) -> f64 {
        self.start_s + self.total_s
    }

    pub fn sample(&self, now_s: f64) -> Sample {
        let t = now_s - self.start_s;
        let direction = (self.to_ticks - self.from_ticks).signum();
        let distance = (self.to_ticks - self.from_ticks).abs();
        if t >= self.total_s || distance == 0.0 {
            return resting(self.to_ticks);
        }
        let t = t.max(0.0);
        let cruise = self.cruise_ticks_s();
        let accel = if self.ramp_s > 0.0 {
            cruise / self.ramp_s
        } else {
            0.0
        };
        let (travelled, speed, acceleration) = if t < self.ramp_s {
            (0.5 * accel * t * t, accel * t, accel)
        } else if t < self.total_s - self.ramp_s {
            (
                0.5 * accel * self.ramp_s * self.ramp_s + cruise * (t - self.ramp_s),
                cruise,
                0.0,
            )
        } else {
            let left = self.total_s - t;
            (distance - 0.5 * accel * left * left, accel * left, -accel)
        };
        Sample {
            position_ticks: self.from_ticks + direction * travelled.min(distance),
            velocity_ticks_s: direction * speed,
            acceleration_ticks_s2: direction * acceleration,
            moving: true,
            stalled: false,
        }
    }
}

fn resting(position_ticks: f64) -> Sample {
    Sample {
        position_ticks,
        velocity_ticks_s: 0.0,
        acceleration_ticks_s2: 0.0,
        moving: false,
        stalled: false,
    }
}

/// What a joint's shaft is doing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Drive {
    /// Standing still (torque off, or holding).
    Hold { at_ticks: f64 },
    /// Following a position profile.
    Profile(Trapezoid),
    /// Turning at constant speed (PWM or velocity mode) until a stop, if any.
    Constant {
        start_s: f64,
        from_ticks: f64,
        velocity_ticks_s: f64,
        min_ticks: f64,
        max_ticks: f64,
    },
}

impl Drive {
    pub fn sample(&self, now_s: f64) -> Sample {
        match *self {
            Drive::Hold { at_ticks } => resting(at_ticks),
            Drive::Profile(trapezoid) => trapezoid.sample(now_s),
            Drive::Constant {
                start_s,
                from_ticks,
                velocity_ticks_s,
                min_ticks,
                max_ticks,
            } => {
                let free = from_ticks + velocity_ticks_s * (now_s - start_s).max(0.0);
                let position_ticks =
                    free.clamp(min_ticks.min(from_ticks), max_ticks.max(from_ticks));
                let stalled = position_ticks != free
                    || (velocity_ticks_s > 0.0 && position_ticks >= max_ticks)
                    || (velocity_ticks_s < 0.0 && position_ticks <= min_ticks);
                let moving = !stalled && velocity_ticks_s != 0.0;
                Sample {
                    position_ticks,
                    velocity_ticks_s: if moving { velocity_ticks_s } else { 0.0 },
                    acceleration_ticks_s2: 0.0,
                    moving,
                    stalled,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: f64 = 131.0 * TICKS_PER_S_PER_VELOCITY_UNIT;

    #[test]
    fn time_based_trapezoid_arrives_on_time() {
        let plan = Trapezoid::time_based(1.0, 2048.0, 2548.0, 500, 100, LIMIT * 10.0);
        assert_eq!(plan.sample(0.5).position_ticks, 2048.0);
        assert!(
            (plan.sample(1.25).position_ticks - 2298.0).abs() < 1e-9,
            "symmetric midpoint"
        );
        assert!(plan.sample(1.25).moving);
        assert_eq!(plan.sample(1.5).position_ticks, 2548.0);
        assert!(!plan.sample(1.5).moving);
        // cruise = 500 / 0.4 s
        assert!((plan.sample(1.25).velocity_ticks_s - 1250.0).abs() < 1e-9);
    }

    #[test]
    fn time_based_profile_respects_the_velocity_limit() {
        let plan = Trapezoid::time_based(0.0, 0.0, 4000.0, 100, 0, LIMIT);
        assert!((plan.total_s - 4000.0 / LIMIT).abs() < 1e-9);
        let fastest = Trapezoid::time_based(0.0, 0.0, -1000.0, 0, 0, LIMIT);
        assert!((fastest.sample(0.1).velocity_ticks_s + LIMIT).abs() < 1e-9);
    }

    #[test]
    fn velocity_based_triangle_for_short_moves() {
        let plan = Trapezoid::velocity_based(0.0, 0.0, 10.0, 100, 1, LIMIT);
        assert!((plan.ramp_s * 2.0 - plan.total_s).abs() < 1e-12);
        assert!((plan.sample(plan.total_s / 2.0).position_ticks - 5.0).abs() < 1e-9);
    }

    #[test]
    fn constant_drive_stops_at_the_stop() {
        let drive = Drive::Constant {
            start_s: 0.0,
            from_ticks: 0.0,
            velocity_ticks_s: 100.0,
            min_ticks: -50.0,
            max_ticks: 50.0,
        };
        assert!(drive.sample(0.2).moving);
        let late = drive.sample(1.0);
        assert_eq!(late.position_ticks, 50.0);
        assert!(late.stalled && !late.moving);
    }

    #[test]
    fn homing_offset_and_reverse_round_trip() {
        for reverse in [false, true] {
            let shaft = shaft_for_goal(1234.0, -20, reverse);
            assert!((reported_ticks(shaft, -20, reverse) - 1234.0).abs() < 1e-12);
        }
        assert_eq!(reported_ticks(2048.0, 0, true), 2048.0);
        assert_eq!(reported_ticks(2000.0, 0, true), 2096.0);
    }
}
