//! The safety supervisor: pure checks the control thread runs every tick on what it measured
//! and what it is about to command, each fault with the response it calls for
//! ([`Fault::response`]) and a message that tells the operator what happened and what to do.
//!
//! Checked: joint limits, the workspace box, the size of each setpoint step (clamped, so the
//! commanded joint velocity never exceeds `max_joint_step_per_tick_rad / control_period_s`),
//! measured joint velocity, tracking error, the effort trip per joint, watchdogs on the policy,
//! the camera and the bus, hardware errors, and non-finite actions. Allocation-free.

use std::fmt;
use std::time::{Duration, Instant};

use widowx::joints::{ARM_JOINTS, Joint, JointLimits};
use widowx::kinematics::forward;
use widowx_driver::{Effort, HardwareErrors, JointState, ServoRef};

use crate::config::{SafetyConfig, WorkspaceConfig};
use crate::modes::{Mode, Response};

/// Something the supervisor will not let pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// A measured joint is beyond its URDF limits (plus the margin).
    JointLimit {
        joint: Joint,
        position_rad: f64,
        min_rad: f64,
        max_rad: f64,
    },
    /// The measured end effector is outside the workspace box (plus the margin).
    Workspace {
        position_m: [f64; 3],
        outside_m: f64,
    },
    /// A measured joint moves faster than allowed.
    Velocity {
        joint: Joint,
        velocity_rad_s: f64,
        limit_rad_s: f64,
    },
    /// A joint is far from where it was told to be (blocked, pushed, or lost torque).
    Tracking { joint: Joint, error_rad: f64 },
    /// A joint's current or load exceeds its trip level.
    Effort {
        joint: Joint,
        effort: Effort,
        limit: f64,
    },
    /// No action from the policy for this long while it drives.
    PolicyTimeout { silent_s: f64 },
    /// No camera frame for this long while the policy drives.
    CameraTimeout { frame_age_s: f64 },
    /// The bus has failed (no reply, corrupt replies) for this long.
    BusTimeout { failing_s: f64 },
    /// The serial port itself failed (unplugged, vanished).
    BusLost,
    /// A servo reports a hardware error (alert bit).
    Hardware {
        servo: ServoRef,
        faults: Option<HardwareErrors>,
    },
    /// The policy produced NaN or infinity in component `index`.
    NonFiniteAction { index: usize },
    /// The driver refused a goal (outside the servo's position limits).
    GoalRefused { joint: Joint },
    /// The start or sleep pose was not reached in time.
    NotReached { joint: Joint, error_rad: f64 },
    /// There are no joints that reach the configured start pose.
    StartUnreachable,
}

impl Fault {
    /// What the runtime does about it.
    pub fn response(&self) -> Response {
        match self {
            Fault::Effort { .. } | Fault::Hardware { .. } => Response::Park,
            Fault::Tracking { .. }
            | Fault::BusTimeout { .. }
            | Fault::BusLost
            | Fault::NotReached { .. } => Response::EmergencyHold,
            Fault::JointLimit { .. }
            | Fault::Workspace { .. }
            | Fault::Velocity { .. }
            | Fault::PolicyTimeout { .. }
            | Fault::CameraTimeout { .. }
            | Fault::NonFiniteAction { .. }
            | Fault::GoalRefused { .. }
            | Fault::StartUnreachable => Response::Hold,
        }
    }

    /// A short stable name (status line, tests, summaries).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::JointLimit { .. } => "joint-limit",
            Fault::Workspace { .. } => "workspace",
            Fault::Velocity { .. } => "velocity",
            Fault::Tracking { .. } => "tracking",
            Fault::Effort { .. } => "effort",
            Fault::PolicyTimeout { .. } => "policy-timeout",
            Fault::CameraTimeout { .. } => "camera-timeout",
            Fault::BusTimeout { .. } => "bus-timeout",
            Fault::BusLost => "bus-lost",
            Fault::Hardware { .. } => "hardware-error",
            Fault::NonFiniteAction { .. } => "non-finite-action",
            Fault::GoalRefused { .. } => "goal-refused",
            Fault::NotReached { .. } => "not-reached",
            Fault::StartUnreachable => "start-unreachable",
        }
    }

    fn what_happens(&self) -> &'static str {
        match self.response() {
            Response::Hold => {
                "the episode is stopped, holding where it is (torque on) until the operator acts: h park, q park and quit, e emergency freeze"
            }
            Response::Park => "parking in the sleep pose, then torque off",
            Response::EmergencyHold => {
                "emergency hold (torque on) until the operator acts: e torque off where it stands, h park, q park and quit"
            }
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::JointLimit {
                joint,
                position_rad,
                min_rad,
                max_rad,
            } => write!(
                f,
                "{joint} at {position_rad:.3} rad is beyond its limits {min_rad:.3}..{max_rad:.3} rad"
            )?,
            Fault::Workspace {
                position_m,
                outside_m,
            } => write!(
                f,
                "end effector at x {:.3} y {:.3} z {:.3} m is {:.0} mm outside the workspace box",
                position_m[0],
                position_m[1],
                position_m[2],
                outside_m * 1e3
            )?,
            Fault::Velocity {
                joint,
                velocity_rad_s,
                limit_rad_s,
            } => write!(
                f,
                "{joint} moves at {velocity_rad_s:.2} rad/s, above the limit {limit_rad_s:.2} rad/s"
            )?,
            Fault::Tracking { joint, error_rad } => write!(
                f,
                "{joint} is {error_rad:.2} rad from its setpoint (blocked, pushed, or without torque?)"
            )?,
            Fault::Effort {
                joint,
                effort,
                limit,
            } => write!(f, "effort trip: {joint} at {effort}, trip level {limit}")?,
            Fault::PolicyTimeout { silent_s } => {
                write!(f, "policy too slow: no action for {silent_s:.2} s")?
            }
            Fault::CameraTimeout { frame_age_s } => {
                write!(f, "camera stalled: newest frame is {frame_age_s:.2} s old")?
            }
            Fault::BusTimeout { failing_s } => write!(
                f,
                "servo bus failing for {failing_s:.2} s (no or corrupt replies)"
            )?,
            Fault::BusLost => write!(
                f,
                "servo bus lost: the serial port failed (unplugged?); the servos keep their last goal with torque on but cannot be reached; check the cable and power, then restart"
            )?,
            Fault::Hardware { servo, faults } => {
                match faults {
                    Some(faults) => write!(f, "{servo} reports a hardware error: {faults}")?,
                    None => write!(f, "{servo} reports a hardware error")?,
                }
                return write!(
                    f,
                    "; {}; when parked press b to reboot the faulted servo",
                    self.what_happens()
                );
            }
            Fault::NonFiniteAction { index } => write!(
                f,
                "the policy returned a non-finite action (component {index} is NaN or infinite)"
            )?,
            Fault::GoalRefused { joint } => write!(
                f,
                "the driver refused the goal of {joint} (outside its servo limits)"
            )?,
            Fault::NotReached { joint, error_rad } => write!(
                f,
                "planned move not reached in time: {joint} is still {error_rad:.2} rad away"
            )?,
            Fault::StartUnreachable => {
                write!(f, "no joint solution reaches the configured start pose")?
            }
        }
        write!(f, "; {}", self.what_happens())
    }
}

/// What the supervisor looks at each tick.
#[derive(Debug, Clone, Copy)]
pub struct TickView<'a> {
    pub mode: Mode,
    pub now: Instant,
    pub state: &'a JointState,
    /// The arm setpoint last written.
    pub setpoint_rad: &'a [f64; ARM_JOINTS],
    /// When the policy last delivered an action (or when it started driving).
    pub last_action_at: Instant,
    /// When the newest camera frame was captured (or when the policy started driving).
    pub last_frame_at: Instant,
}

/// The checks, with the bus watchdog's memory.
#[derive(Debug, Clone)]
pub struct Supervisor {
    safety: SafetyConfig,
    workspace: WorkspaceConfig,
    /// The arm's reconciled joint limits (`Arm::joint_limits`): what the driver accepts.
    joint_limits: [JointLimits; ARM_JOINTS],
    bus_failing_since: Option<Instant>,
    /// Consecutive checks each joint has been over the speed limit.
    over_speed_ticks: [u32; ARM_JOINTS],
}

impl Supervisor {
    /// A supervisor for an arm whose goals must lie within `joint_limits` (take them from
    /// `widowx_driver::Arm::joint_limits`, so that no setpoint passed here is refused there).
    pub fn new(
        safety: SafetyConfig,
        workspace: WorkspaceConfig,
        joint_limits: [JointLimits; ARM_JOINTS],
    ) -> Supervisor {
        Supervisor {
            safety,
            workspace,
            joint_limits,
            bus_failing_since: None,
            over_speed_ticks: [0; ARM_JOINTS],
        }
    }

    /// The first fault in the measured state, in order of severity: limits and effort before
    /// motion, watchdogs last (a stalled camera is named before the policy it starves).
    pub fn check(&mut self, view: &TickView) -> Option<Fault> {
        if !view.mode.torque_on() {
            self.over_speed_ticks = [0; ARM_JOINTS];
            return None;
        }
        let over_speed = self.check_velocity(view.state);
        self.check_joint_limits(view.state)
            .or_else(|| self.check_effort(view.state))
            .or(over_speed)
            .or_else(|| self.check_tracking(view))
            .or_else(|| self.check_workspace(view))
            .or_else(|| self.check_watchdogs(view))
    }

    fn check_joint_limits(&self, state: &JointState) -> Option<Fault> {
        let margin = self.safety.joint_limit_margin_rad;
        (0..ARM_JOINTS).find_map(|i| {
            let limits = self.joint_limits[i];
            let position_rad = state.positions_rad[i];
            let inside =
                position_rad >= limits.min_rad - margin && position_rad <= limits.max_rad + margin;
            (!inside).then_some(Fault::JointLimit {
                joint: Joint::ALL[i],
                position_rad,
                min_rad: limits.min_rad,
                max_rad: limits.max_rad,
            })
        })
    }

    fn check_effort(&self, state: &JointState) -> Option<Fault> {
        (0..=ARM_JOINTS).find_map(|i| {
            let (value, limit) = match state.effort[i] {
                Effort::CurrentMa(ma) => (ma, self.safety.effort_trip_current_ma[i]),
                Effort::LoadPercent(p) => (p, self.safety.effort_trip_load_percent[i]),
            };
            (value.abs() > limit).then_some(Fault::Effort {
                joint: Joint::ALL[i],
                effort: state.effort[i],
                limit,
            })
        })
    }

    fn check_velocity(&mut self, state: &JointState) -> Option<Fault> {
        let limit_rad_s = self.safety.max_joint_velocity_rad_s;
        for (i, ticks) in self.over_speed_ticks.iter_mut().enumerate() {
            let over = state.velocities_rad_s[i].abs() > limit_rad_s;
            *ticks = if over { *ticks + 1 } else { 0 };
        }
        (0..ARM_JOINTS).find_map(|i| {
            (self.over_speed_ticks[i] >= self.safety.velocity_trip_ticks).then_some(
                Fault::Velocity {
                    joint: Joint::ALL[i],
                    velocity_rad_s: state.velocities_rad_s[i],
                    limit_rad_s,
                },
            )
        })
    }

    fn check_tracking(&self, view: &TickView) -> Option<Fault> {
        if view.mode == Mode::EmergencyHold {
            return None; // frozen where it was measured: nothing to track
        }
        (0..ARM_JOINTS).find_map(|i| {
            let error_rad = (view.state.positions_rad[i] - view.setpoint_rad[i]).abs();
            (error_rad > self.safety.max_tracking_error_rad).then_some(Fault::Tracking {
                joint: Joint::ALL[i],
                error_rad,
            })
        })
    }

    fn check_workspace(&self, view: &TickView) -> Option<Fault> {
        if !view.mode.in_episode() {
            return None; // resets and parking are planned joint-space moves outside the box
        }
        let position_m = forward(&view.state.arm_positions_rad()).position_m;
        let outside_m = self.workspace.distance_outside_m(position_m);
        (outside_m > self.safety.workspace_margin_m).then_some(Fault::Workspace {
            position_m,
            outside_m,
        })
    }

    fn check_watchdogs(&self, view: &TickView) -> Option<Fault> {
        if view.mode != Mode::Running {
            return None;
        }
        let frame_age_s = seconds_between(view.last_frame_at, view.now);
        if frame_age_s > self.safety.camera_timeout_s {
            return Some(Fault::CameraTimeout { frame_age_s });
        }
        let silent_s = seconds_between(view.last_action_at, view.now);
        (silent_s > self.safety.policy_timeout_s).then_some(Fault::PolicyTimeout { silent_s })
    }

    /// A failed bus transaction (timeout, corrupt reply): a fault once failures have lasted
    /// `bus_timeout_s` (the driver already retried each one).
    pub fn bus_failed(&mut self, now: Instant) -> Option<Fault> {
        let since = *self.bus_failing_since.get_or_insert(now);
        let failing_s = seconds_between(since, now);
        (failing_s >= self.safety.bus_timeout_s).then_some(Fault::BusTimeout { failing_s })
    }

    /// A bus transaction succeeded: the bus watchdog starts over.
    pub fn bus_ok(&mut self) {
        self.bus_failing_since = None;
    }

    /// `target` approached from `setpoint` by at most `max_joint_step_per_tick_rad` per joint;
    /// returns the next setpoint and whether any joint was slowed down.
    pub fn limit_step(
        &self,
        setpoint_rad: &[f64; ARM_JOINTS],
        target_rad: &[f64; ARM_JOINTS],
    ) -> ([f64; ARM_JOINTS], bool) {
        let max_step = self.safety.max_joint_step_per_tick_rad;
        let mut slowed = false;
        let next = std::array::from_fn(|i| {
            let step = target_rad[i] - setpoint_rad[i];
            let limited = step.clamp(-max_step, max_step);
            if limited == step {
                target_rad[i] // exactly: arrival is checked by equality
            } else {
                slowed = true;
                setpoint_rad[i] + limited
            }
        });
        (next, slowed)
    }

    /// Joints clamped inside the arm's joint limits (a frozen measured pose may sit a hair
    /// outside, and an IK solution may touch the URDF limit past a servo limit: the driver
    /// would refuse either as a goal).
    pub fn clamp_to_limits(&self, joints_rad: &[f64; ARM_JOINTS]) -> [f64; ARM_JOINTS] {
        std::array::from_fn(|i| self.joint_limits[i].clamp(joints_rad[i]))
    }
}

fn seconds_between(earlier: Instant, later: Instant) -> f64 {
    later
        .checked_duration_since(earlier)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use widowx::joints::BRIDGE_NEUTRAL_POSE_RAD;

    use crate::action::{ActionMapper, CommandedPose};
    use crate::config::ActionConfig;

    fn supervisor() -> Supervisor {
        Supervisor::new(
            SafetyConfig::default(),
            WorkspaceConfig::default(),
            limits(),
        )
    }

    fn limits() -> [JointLimits; ARM_JOINTS] {
        widowx::firmware::FirmwareConfig::wx250s().joint_limits()
    }

    fn start_joints() -> [f64; ARM_JOINTS] {
        let mapper = ActionMapper::new(ActionConfig::default(), WorkspaceConfig::default());
        mapper
            .solve(
                &CommandedPose::from_xyz_rpy([0.3, 0.0, 0.15], [0.0; 3]),
                &BRIDGE_NEUTRAL_POSE_RAD,
            )
            .unwrap()
    }

    fn state_at(joints: [f64; ARM_JOINTS]) -> JointState {
        let mut state = JointState::default();
        state.positions_rad[..ARM_JOINTS].copy_from_slice(&joints);
        state.effort[5] = Effort::LoadPercent(5.0);
        state.effort[6] = Effort::LoadPercent(28.0);
        state
    }

    fn check(
        mode: Mode,
        state: &JointState,
        setpoint: &[f64; 6],
        ages_s: (f64, f64),
    ) -> Option<Fault> {
        let now = Instant::now() + Duration::from_secs(10);
        let view = TickView {
            mode,
            now,
            state,
            setpoint_rad: setpoint,
            last_action_at: now - Duration::from_secs_f64(ages_s.0),
            last_frame_at: now - Duration::from_secs_f64(ages_s.1),
        };
        supervisor().check(&view)
    }

    #[test]
    fn a_healthy_tick_passes_in_every_mode() {
        let joints = start_joints();
        let state = state_at(joints);
        for mode in Mode::ALL {
            assert_eq!(check(mode, &state, &joints, (0.1, 0.05)), None, "{mode}");
        }
    }

    #[test]
    fn joint_limits_trip_beyond_the_margin_only() {
        let mut joints = start_joints();
        joints[1] = limits()[1].max_rad + 0.04;
        let state = state_at(joints);
        assert_eq!(check(Mode::Idle, &state, &joints, (0.0, 0.0)), None);
        joints[1] = limits()[1].max_rad + 0.06;
        let state = state_at(joints);
        let fault = check(Mode::Idle, &state, &joints, (0.0, 0.0)).unwrap();
        assert!(
            matches!(
                fault,
                Fault::JointLimit {
                    joint: Joint::Shoulder,
                    ..
                }
            ),
            "{fault:?}"
        );
        assert_eq!(fault.response(), Response::Hold);
        assert!(fault.to_string().contains("shoulder"));
    }

    #[test]
    fn effort_trips_per_joint_in_its_own_unit() {
        let joints = start_joints();
        let mut state = state_at(joints);
        state.effort[2] = Effort::CurrentMa(-1900.0);
        let fault = check(Mode::Running, &state, &joints, (0.0, 0.0)).unwrap();
        assert!(
            matches!(fault, Fault::Effort { joint: Joint::Elbow, limit, .. } if limit == 1800.0)
        );
        assert_eq!(fault.response(), Response::Park);
        let mut state = state_at(joints);
        state.effort[5] = Effort::LoadPercent(95.0);
        let fault = check(Mode::Running, &state, &joints, (0.0, 0.0)).unwrap();
        assert!(matches!(
            fault,
            Fault::Effort {
                joint: Joint::WristRotate,
                ..
            }
        ));
        // The gripper squeezing a block at constant PWM is not a trip.
        let mut state = state_at(joints);
        state.effort[6] = Effort::LoadPercent(100.0);
        assert_eq!(check(Mode::Running, &state, &joints, (0.0, 0.0)), None);
    }

    #[test]
    fn measured_velocity_and_tracking_error_trip() {
        let joints = start_joints();
        let mut state = state_at(joints);
        state.velocities_rad_s[4] = -3.4;
        // One or two readings over the limit are a servo re-planning; three are a runaway.
        let mut s = supervisor();
        let now = Instant::now();
        let view = TickView {
            mode: Mode::Paused,
            now,
            state: &state,
            setpoint_rad: &joints,
            last_action_at: now,
            last_frame_at: now,
        };
        assert_eq!(s.check(&view), None);
        assert_eq!(s.check(&view), None);
        let fault = s.check(&view).unwrap();
        assert!(matches!(
            fault,
            Fault::Velocity {
                joint: Joint::WristAngle,
                ..
            }
        ));
        let calm = state_at(joints);
        assert_eq!(
            s.check(&TickView {
                state: &calm,
                ..view
            }),
            None
        );
        assert_eq!(
            s.check(&view),
            None,
            "the count starts over after a calm reading"
        );
        let state = state_at(joints);
        let mut setpoint = joints;
        setpoint[0] += 0.4;
        let fault = check(Mode::Running, &state, &setpoint, (0.0, 0.0)).unwrap();
        assert!(matches!(
            fault,
            Fault::Tracking {
                joint: Joint::Waist,
                ..
            }
        ));
        assert_eq!(fault.response(), Response::EmergencyHold);
        // Frozen in an emergency, the setpoint is the measured pose: no tracking check.
        assert_eq!(
            check(Mode::EmergencyHold, &state, &setpoint, (0.0, 0.0)),
            None
        );
    }

    #[test]
    fn workspace_is_checked_during_episodes_only() {
        let mapper = ActionMapper::new(
            ActionConfig::default(),
            WorkspaceConfig {
                max_m: [0.6; 3],
                ..WorkspaceConfig::default()
            },
        );
        let outside = mapper
            .solve(
                &CommandedPose::from_xyz_rpy([0.3, 0.32, 0.15], [0.0; 3]),
                &start_joints(),
            )
            .unwrap();
        let state = state_at(outside);
        let fault = check(Mode::Running, &state, &outside, (0.0, 0.0)).unwrap();
        assert!(
            matches!(fault, Fault::Workspace { outside_m, .. } if (outside_m - 0.07).abs() < 0.002)
        );
        assert_eq!(
            check(Mode::Paused, &state, &outside, (0.0, 0.0)).map(|f| f.kind()),
            Some("workspace")
        );
        assert_eq!(
            check(Mode::MovingToStart, &state, &outside, (0.0, 0.0)),
            None
        );
        assert_eq!(check(Mode::Parking, &state, &outside, (0.0, 0.0)), None);
    }

    #[test]
    fn watchdogs_fire_while_running_camera_first() {
        let joints = start_joints();
        let state = state_at(joints);
        let fault = check(Mode::Running, &state, &joints, (1.3, 0.1)).unwrap();
        assert!(matches!(fault, Fault::PolicyTimeout { silent_s } if silent_s > 1.2));
        assert!(fault.to_string().contains("policy too slow"));
        let fault = check(Mode::Running, &state, &joints, (1.3, 1.1)).unwrap();
        assert!(matches!(fault, Fault::CameraTimeout { .. }));
        assert!(fault.to_string().contains("camera stalled"));
        for mode in [Mode::Paused, Mode::Idle, Mode::Parking] {
            assert_eq!(check(mode, &state, &joints, (5.0, 5.0)), None, "{mode}");
        }
    }

    #[test]
    fn nothing_is_checked_with_torque_off() {
        let mut joints = start_joints();
        joints[1] = 3.0;
        let state = state_at(joints);
        assert_eq!(check(Mode::Done, &state, &[0.0; 6], (9.0, 9.0)), None);
        assert_eq!(check(Mode::TorqueOff, &state, &[0.0; 6], (9.0, 9.0)), None);
    }

    #[test]
    fn the_bus_watchdog_needs_failures_to_last() {
        let mut s = supervisor();
        let t0 = Instant::now();
        assert_eq!(s.bus_failed(t0), None);
        assert_eq!(s.bus_failed(t0 + Duration::from_millis(300)), None);
        let fault = s.bus_failed(t0 + Duration::from_millis(600)).unwrap();
        assert!(matches!(fault, Fault::BusTimeout { failing_s } if (failing_s - 0.6).abs() < 1e-9));
        s.bus_ok();
        assert_eq!(s.bus_failed(t0 + Duration::from_millis(700)), None);
        assert_eq!(Fault::BusLost.response(), Response::EmergencyHold);
        assert!(Fault::BusLost.to_string().contains("serial port failed"));
    }

    #[test]
    fn setpoint_steps_are_limited_per_joint() {
        let s = supervisor();
        let from = [0.0; 6];
        let (next, slowed) = s.limit_step(&from, &[0.005, -0.5, 0.0, 0.01, 0.1, -0.009]);
        assert_eq!(next, [0.005, -0.01, 0.0, 0.01, 0.01, -0.009]);
        assert!(slowed);
        let (next, slowed) = s.limit_step(&from, &[0.007; 6]);
        assert_eq!(next, [0.007; 6]);
        assert!(!slowed);
    }

    #[test]
    fn responses_and_messages() {
        let servo = ServoRef {
            id: 4,
            joint: Some(Joint::Elbow),
        };
        let hw = Fault::Hardware {
            servo,
            faults: Some(HardwareErrors::from_raw(
                widowx_driver::HardwareFault::Overload.bit(),
            )),
        };
        assert_eq!(hw.response(), Response::Park);
        let text = hw.to_string();
        assert!(
            text.contains("servo 4 (elbow)")
                && text.contains("overload")
                && text.contains("press b"),
            "{text}"
        );
        let nan = Fault::NonFiniteAction { index: 3 };
        assert_eq!(nan.response(), Response::Hold);
        assert!(
            nan.to_string()
                .contains("holding where it is (torque on) until the operator acts")
        );
        let clamped = supervisor().clamp_to_limits(&[0.0, -3.0, 3.0, 0.0, 0.0, 0.0]);
        assert_eq!(clamped[1], limits()[1].min_rad);
        // Above, the servo's limit binds before the URDF's, and the clamp respects it.
        assert_eq!(clamped[2], limits()[2].max_rad);
        assert!(limits()[2].max_rad < widowx::joints::ARM_JOINT_LIMITS[2].max_rad);
    }
}
