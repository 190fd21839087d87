//! The mode machine of the runtime (docs/architecture.md, "Modes"), pure: inputs in, transitions
//! with the effect the control thread must carry out.
//!
//! ```text
//!          Reset            Reached            Begin
//!   Idle ─────────▶ MovingToStart ─────▶ Idle ─────────▶ Running ◀──space──▶ Paused
//!    ▲                                                      │ episode complete
//!    └──────────────────────────────────────────────────────┘
//!   fault (hold): ──▶ FaultHold (torque on, where it stopped)
//!   fault (tracking, bus), e / Esc: ──▶ EmergencyHold (torque on, frozen) ──e / Esc──▶ TorqueOff
//!   h / q / hardware fault / effort trip: ──▶ Parking ──Reached──▶ Done (torque off)
//!   no operator within the unattended-hold time (FaultHold, EmergencyHold): ──▶ TorqueOff
//! ```
//!
//! Holding modes (Idle, Paused, FaultHold) keep torque on and let the operator jog and toggle
//! the gripper. Nothing but the runtime's `Begin` starts the policy, and only from Idle after a
//! reset. After a fault the arm waits for the operator: the runtime cannot move it out of
//! FaultHold, EmergencyHold or TorqueOff (its shutdown is ignored there, and space does not
//! release a hold); h parks, q parks and quits, e cuts torque where the arm stands. Without an
//! operator the only way out is torque off where it stands ([`Input::Unattended`]), never a move.

use std::fmt;

/// A base-frame axis the operator jogs along.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Axis {
    X,
    Y,
    Z,
}

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Axis::X => "x",
            Axis::Y => "y",
            Axis::Z => "z",
        })
    }
}

/// What the operator asks for (keyboard keys, or injected by tests and other front ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperatorCommand {
    /// space: pause the policy / resume it.
    TogglePause,
    /// w/s, a/d, r/f while holding: move the commanded position one jog step.
    Jog { axis: Axis, positive: bool },
    /// g while holding: open a closed gripper, close an open one.
    ToggleGripper,
    /// e or Esc: hold with torque on; pressed again: torque off.
    Emergency,
    /// h: move to the sleep pose, then torque off.
    Park,
    /// q (or Ctrl-C, SIGTERM): park, then quit.
    Quit,
    /// b when parked or torque is off: reboot the servos that report a hardware error.
    RebootFaulted,
}

impl fmt::Display for OperatorCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OperatorCommand::TogglePause => f.write_str("pause/resume"),
            OperatorCommand::Jog { axis, positive } => {
                write!(f, "jog {}{axis}", if *positive { "+" } else { "-" })
            }
            OperatorCommand::ToggleGripper => f.write_str("toggle gripper"),
            OperatorCommand::Emergency => f.write_str("emergency"),
            OperatorCommand::Park => f.write_str("park"),
            OperatorCommand::Quit => f.write_str("park and quit"),
            OperatorCommand::RebootFaulted => f.write_str("reboot faulted servos"),
        }
    }
}

/// The runtime's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Holding with torque on, no episode (before, between and after episodes, or after a
    /// fault that holds).
    Idle,
    /// A planned joint-space move to the start pose.
    MovingToStart,
    /// The policy drives.
    Running,
    /// The operator paused the episode: holding, jogging allowed; space resumes.
    Paused,
    /// A planned move to the sleep pose; torque goes off on arrival.
    Parking,
    /// Parked, torque off.
    Done,
    /// Frozen where it is with torque on (dropping a raised arm is unsafe).
    EmergencyHold,
    /// Holding where a fault stopped the episode, torque on, until the operator acts.
    FaultHold,
    /// Torque cut by the operator (second emergency press).
    TorqueOff,
}

impl Mode {
    pub const ALL: [Mode; 9] = [
        Mode::Idle,
        Mode::MovingToStart,
        Mode::Running,
        Mode::Paused,
        Mode::Parking,
        Mode::Done,
        Mode::EmergencyHold,
        Mode::FaultHold,
        Mode::TorqueOff,
    ];

    /// Whether the servos hold torque in this mode.
    pub fn torque_on(self) -> bool {
        !matches!(self, Mode::Done | Mode::TorqueOff)
    }

    /// Whether the operator may jog and toggle the gripper.
    pub fn allows_jog(self) -> bool {
        matches!(self, Mode::Idle | Mode::Paused | Mode::FaultHold)
    }

    /// Whether the arm holds after a fault or an emergency and only the operator may move it
    /// on: h parks, q parks and quits, e cuts torque.
    pub fn awaits_operator(self) -> bool {
        matches!(self, Mode::FaultHold | Mode::EmergencyHold)
    }

    /// Whether an episode is under way (the policy drives or will resume).
    pub fn in_episode(self) -> bool {
        matches!(self, Mode::Running | Mode::Paused)
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Idle => "idle",
            Mode::MovingToStart => "moving-to-start",
            Mode::Running => "running",
            Mode::Paused => "paused",
            Mode::Parking => "parking",
            Mode::Done => "done",
            Mode::EmergencyHold => "emergency-hold",
            Mode::FaultHold => "fault-hold",
            Mode::TorqueOff => "torque-off",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the supervisor answers a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Response {
    /// Stop the policy and hold the current setpoint, torque on.
    Hold,
    /// Move to the sleep pose and cut torque.
    Park,
    /// Freeze where the arm is, torque on, and wait for the operator.
    EmergencyHold,
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Response::Hold => "hold",
            Response::Park => "park",
            Response::EmergencyHold => "emergency hold",
        })
    }
}

/// Everything that can change the mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Input {
    Operator(OperatorCommand),
    /// The runtime starts an episode: move to the start pose.
    Reset,
    /// The planned move (to the start pose or to the sleep pose) arrived.
    Reached,
    /// The runtime hands control to the policy.
    Begin,
    /// The policy took its last step of the episode.
    EpisodeComplete,
    /// The supervisor found a fault.
    Fault(Response),
    /// The runtime shuts down: park, then stop (as `q`); ignored while a hold awaits the
    /// operator.
    Shutdown,
    /// Nobody can answer a hold (no keyboard) and the configured hold time is over: torque
    /// off where the arm stands.
    Unattended,
}

/// What the control thread must do on a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    None,
    /// Stop where the setpoint is.
    Hold,
    /// Setpoint := measured joints, torque on (emergency).
    FreezeAtMeasured,
    TorqueOff,
    /// Torque on if off, open the gripper, move to the start pose.
    MoveToStart,
    /// Torque on if off, move to the sleep pose.
    MoveToPark,
    Jog {
        axis: Axis,
        positive: bool,
    },
    ToggleGripper,
    RebootFaulted,
    /// Space when parked: the operator lets the runtime run again (refused while a servo still
    /// reports a hardware error).
    Resume,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::None => f.write_str("nothing to do"),
            Effect::Hold => f.write_str("hold"),
            Effect::FreezeAtMeasured => f.write_str("freeze where the arm is"),
            Effect::TorqueOff => f.write_str("torque off"),
            Effect::MoveToStart => f.write_str("move to the start pose"),
            Effect::MoveToPark => f.write_str("move to the sleep pose"),
            Effect::Jog { axis, positive } => {
                write!(f, "jog {}{axis}", if *positive { "+" } else { "-" })
            }
            Effect::ToggleGripper => f.write_str("toggle the gripper"),
            Effect::RebootFaulted => f.write_str("reboot the faulted servos"),
            Effect::Resume => f.write_str("resume"),
        }
    }
}

/// Why `mode` does not take `command`, in a few words for the status line (the operator
/// pressed a key that did nothing).
pub fn ignored_because(mode: Mode, command: OperatorCommand) -> &'static str {
    use Mode::*;
    use OperatorCommand as Op;
    match (mode, command) {
        (EmergencyHold | FaultHold, Op::TogglePause) => {
            "the arm holds after a fault; h park, q park and quit, e torque off"
        }
        (Running, Op::Jog { .. } | Op::ToggleGripper) => "pause first (space)",
        (MovingToStart | Parking, _) => "wait until the arm has arrived",
        (EmergencyHold, Op::Jog { .. } | Op::ToggleGripper) => {
            "the arm is frozen in an emergency hold; h park, q park and quit, e torque off"
        }
        (Done | TorqueOff, Op::Jog { .. } | Op::ToggleGripper) => "torque is off",
        (Done | TorqueOff, Op::Emergency) => "torque is already off",
        (Done, Op::Park) => "already parked",
        (TorqueOff, Op::Park | Op::TogglePause) => "torque is off where the arm stands; q quits",
        (_, Op::RebootFaulted) => "park first (h): servos reboot only with torque off",
        (Idle, Op::TogglePause) => "no episode is running",
        _ => "not in this mode",
    }
}

/// Why an episode ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EpisodeEnd {
    /// The policy took its last step.
    Completed,
    /// An operator command (park, quit, emergency) or the runtime's shutdown.
    Operator(OperatorCommand),
    /// The supervisor stopped it.
    Fault(Response),
}

/// One accepted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Mode,
    pub to: Mode,
    pub input: Input,
    pub effect: Effect,
    /// Set when this transition ends the episode under way.
    pub episode_end: Option<EpisodeEnd>,
}

/// The mode, and whether a quit is pending (parking, then stop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeMachine {
    mode: Mode,
    quit_requested: bool,
}

impl Default for ModeMachine {
    fn default() -> Self {
        ModeMachine::new()
    }
}

impl ModeMachine {
    /// Starts in Idle.
    pub fn new() -> ModeMachine {
        ModeMachine {
            mode: Mode::Idle,
            quit_requested: false,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether `q`, Ctrl-C or the runtime's shutdown asked to stop.
    pub fn quit_requested(&self) -> bool {
        self.quit_requested
    }

    /// Applies `input`; `None` when it is ignored in the current mode (nothing changes).
    pub fn handle(&mut self, input: Input) -> Option<Transition> {
        let (to, effect) = self.decide(input)?;
        if matches!(
            input,
            Input::Operator(OperatorCommand::Quit) | Input::Shutdown
        ) {
            self.quit_requested = true;
        }
        let from = self.mode;
        let episode_end = (from.in_episode() && !to.in_episode()).then_some(match input {
            Input::Operator(command) => EpisodeEnd::Operator(command),
            Input::Shutdown => EpisodeEnd::Operator(OperatorCommand::Quit),
            Input::Fault(response) => EpisodeEnd::Fault(response),
            _ => EpisodeEnd::Completed,
        });
        self.mode = to;
        Some(Transition {
            from,
            to,
            input,
            effect,
            episode_end,
        })
    }

    fn decide(&self, input: Input) -> Option<(Mode, Effect)> {
        use Mode::*;
        use OperatorCommand as Op;
        let mode = self.mode;
        let park = (Parking, Effect::MoveToPark);
        Some(match (mode, input) {
            // A hold after a fault or an emergency waits for the operator: the runtime's
            // shutdown does not move the arm, and space does not release it.
            (FaultHold | EmergencyHold, Input::Shutdown | Input::Operator(Op::TogglePause)) => {
                return None;
            }
            (FaultHold | EmergencyHold, Input::Unattended) => (TorqueOff, Effect::TorqueOff),
            // Stopping: park from any torque-on mode; already parked or limp: just stop.
            (Done | TorqueOff, Input::Operator(Op::Quit) | Input::Shutdown) => (mode, Effect::None),
            (Parking, Input::Operator(Op::Quit | Op::Park) | Input::Shutdown) => {
                (Parking, Effect::None)
            }
            (_, Input::Operator(Op::Quit | Op::Park) | Input::Shutdown) if mode != Done => park,
            // Emergency: freeze, then cut torque.
            (EmergencyHold, Input::Operator(Op::Emergency)) => (TorqueOff, Effect::TorqueOff),
            (m, Input::Operator(Op::Emergency)) if m.torque_on() => {
                (EmergencyHold, Effect::FreezeAtMeasured)
            }
            // Episodes.
            (Idle | Done, Input::Reset) => (MovingToStart, Effect::MoveToStart),
            (MovingToStart, Input::Reached) => (Idle, Effect::Hold),
            (Parking, Input::Reached) => (Done, Effect::TorqueOff),
            (Idle, Input::Begin) => (Running, Effect::None),
            (Running | Paused, Input::EpisodeComplete) => (Idle, Effect::Hold),
            (Running, Input::Operator(Op::TogglePause)) => (Paused, Effect::Hold),
            (Paused, Input::Operator(Op::TogglePause)) => (Running, Effect::None),
            // Holding: the operator may jog and work the gripper.
            (m, Input::Operator(Op::Jog { axis, positive })) if m.allows_jog() => {
                (mode, Effect::Jog { axis, positive })
            }
            (m, Input::Operator(Op::ToggleGripper)) if m.allows_jog() => {
                (mode, Effect::ToggleGripper)
            }
            (Done | TorqueOff, Input::Operator(Op::RebootFaulted)) => (mode, Effect::RebootFaulted),
            (Done, Input::Operator(Op::TogglePause)) => (Done, Effect::Resume),
            // Faults: EmergencyHold, TorqueOff and Done are already as safe as it gets; a
            // FaultHold only tightens to an emergency freeze, it never moves by itself.
            (Idle | MovingToStart | Running | Paused, Input::Fault(Response::Hold)) => {
                (FaultHold, Effect::Hold)
            }
            (Parking, Input::Fault(Response::Hold)) => (EmergencyHold, Effect::FreezeAtMeasured),
            (Idle | MovingToStart | Running | Paused, Input::Fault(Response::Park)) => park,
            (
                Idle | MovingToStart | Running | Paused | Parking | FaultHold,
                Input::Fault(Response::EmergencyHold),
            ) => (EmergencyHold, Effect::FreezeAtMeasured),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OperatorCommand as Op;

    fn all_inputs() -> Vec<Input> {
        let mut inputs = vec![
            Input::Reset,
            Input::Reached,
            Input::Begin,
            Input::EpisodeComplete,
            Input::Shutdown,
            Input::Fault(Response::Hold),
            Input::Fault(Response::Park),
            Input::Fault(Response::EmergencyHold),
            Input::Unattended,
        ];
        for op in [
            Op::TogglePause,
            Op::Jog {
                axis: Axis::X,
                positive: true,
            },
            Op::Jog {
                axis: Axis::Z,
                positive: false,
            },
            Op::ToggleGripper,
            Op::Emergency,
            Op::Park,
            Op::Quit,
            Op::RebootFaulted,
        ] {
            inputs.push(Input::Operator(op));
        }
        inputs
    }

    fn machine_in(mode: Mode) -> ModeMachine {
        ModeMachine {
            mode,
            quit_requested: false,
        }
    }

    fn after(mode: Mode, input: Input) -> Option<(Mode, Effect)> {
        machine_in(mode).handle(input).map(|t| (t.to, t.effect))
    }

    #[test]
    fn the_episode_cycle() {
        let mut m = ModeMachine::new();
        let steps = [
            (Input::Reset, Mode::MovingToStart, Effect::MoveToStart),
            (Input::Reached, Mode::Idle, Effect::Hold),
            (Input::Begin, Mode::Running, Effect::None),
            (Input::Operator(Op::TogglePause), Mode::Paused, Effect::Hold),
            (
                Input::Operator(Op::TogglePause),
                Mode::Running,
                Effect::None,
            ),
            (Input::EpisodeComplete, Mode::Idle, Effect::Hold),
            (Input::Operator(Op::Quit), Mode::Parking, Effect::MoveToPark),
            (Input::Reached, Mode::Done, Effect::TorqueOff),
        ];
        for (input, mode, effect) in steps {
            let t = m
                .handle(input)
                .unwrap_or_else(|| panic!("{input:?} ignored"));
            assert_eq!((t.to, t.effect), (mode, effect), "{input:?}");
        }
        assert!(m.quit_requested());
    }

    #[test]
    fn every_mode_input_pair_is_decided_and_safe() {
        for mode in Mode::ALL {
            for input in all_inputs() {
                let result = after(mode, input);
                let Some((to, effect)) = result else { continue };
                // The policy only ever starts from Idle by the runtime, or resumes from Paused.
                if to == Mode::Running {
                    assert!(
                        (mode, input) == (Mode::Idle, Input::Begin)
                            || (mode, input) == (Mode::Paused, Input::Operator(Op::TogglePause)),
                        "{mode} --{input:?}--> running"
                    );
                }
                // Out of a hold after a fault, or a limp arm, nothing but the operator moves
                // the arm: every other input at most freezes it or cuts torque where it stands.
                if (mode.awaits_operator() || mode == Mode::TorqueOff)
                    && !matches!(input, Input::Operator(_))
                {
                    assert!(
                        matches!(to, Mode::EmergencyHold | Mode::TorqueOff)
                            && matches!(effect, Effect::FreezeAtMeasured | Effect::TorqueOff)
                            || (to == mode && effect == Effect::None),
                        "{mode} --{input:?}--> {to} ({effect:?})"
                    );
                }
                // Torque only goes off through a completed park, the second emergency press, or
                // an unattended hold running out.
                if mode.torque_on() && !to.torque_on() {
                    assert!(
                        (mode, input) == (Mode::Parking, Input::Reached)
                            || (mode, input)
                                == (Mode::EmergencyHold, Input::Operator(Op::Emergency))
                            || (mode.awaits_operator() && input == Input::Unattended),
                        "{mode} --{input:?}--> {to}"
                    );
                    assert_eq!(effect, Effect::TorqueOff);
                }
                // Jogs only while holding.
                if matches!(effect, Effect::Jog { .. } | Effect::ToggleGripper) {
                    assert!(mode.allows_jog() && to == mode);
                }
            }
        }
    }

    #[test]
    fn emergency_from_any_powered_mode_then_torque_off() {
        for mode in Mode::ALL {
            let got = after(mode, Input::Operator(Op::Emergency));
            match mode {
                Mode::EmergencyHold => assert_eq!(got, Some((Mode::TorqueOff, Effect::TorqueOff))),
                Mode::Done | Mode::TorqueOff => assert_eq!(got, None),
                _ => assert_eq!(got, Some((Mode::EmergencyHold, Effect::FreezeAtMeasured))),
            }
        }
    }

    #[test]
    fn quit_parks_from_powered_modes_and_stops_at_once_when_limp() {
        for mode in Mode::ALL {
            let mut m = machine_in(mode);
            let t = m.handle(Input::Operator(Op::Quit)).unwrap();
            assert!(m.quit_requested());
            match mode {
                Mode::Done | Mode::TorqueOff => assert_eq!((t.to, t.effect), (mode, Effect::None)),
                Mode::Parking => assert_eq!((t.to, t.effect), (Mode::Parking, Effect::None)),
                _ => assert_eq!((t.to, t.effect), (Mode::Parking, Effect::MoveToPark)),
            }
            let shutdown = machine_in(mode).handle(Input::Shutdown).map(|t| t.to);
            if mode.awaits_operator() {
                assert_eq!(shutdown, None, "the runtime's shutdown moved a {mode} arm");
            } else {
                assert_eq!(shutdown, Some(t.to));
            }
        }
        // h re-powers a limp arm only when the operator asks for it.
        assert_eq!(
            after(Mode::TorqueOff, Input::Operator(Op::Park)),
            Some((Mode::Parking, Effect::MoveToPark))
        );
        assert_eq!(after(Mode::Done, Input::Operator(Op::Park)), None);
    }

    #[test]
    fn faults_hold_park_or_freeze_and_end_the_episode() {
        for mode in [Mode::Running, Mode::Paused] {
            let mut m = machine_in(mode);
            let t = m.handle(Input::Fault(Response::Hold)).unwrap();
            assert_eq!((t.to, t.effect), (Mode::FaultHold, Effect::Hold));
            assert_eq!(t.episode_end, Some(EpisodeEnd::Fault(Response::Hold)));
            let t = machine_in(mode)
                .handle(Input::Fault(Response::Park))
                .unwrap();
            assert_eq!((t.to, t.effect), (Mode::Parking, Effect::MoveToPark));
            let t = machine_in(mode)
                .handle(Input::Fault(Response::EmergencyHold))
                .unwrap();
            assert_eq!(t.to, Mode::EmergencyHold);
        }
        // A fault while parking freezes rather than carrying on blindly.
        assert_eq!(
            after(Mode::Parking, Input::Fault(Response::Hold)),
            Some((Mode::EmergencyHold, Effect::FreezeAtMeasured))
        );
        assert_eq!(after(Mode::Parking, Input::Fault(Response::Park)), None);
        for mode in [Mode::Done, Mode::TorqueOff, Mode::EmergencyHold] {
            for r in [Response::Hold, Response::Park, Response::EmergencyHold] {
                assert_eq!(after(mode, Input::Fault(r)), None, "{mode} {r:?}");
            }
        }
    }

    #[test]
    fn episode_end_reports_its_cause() {
        let end = |mode, input| machine_in(mode).handle(input).and_then(|t| t.episode_end);
        assert_eq!(
            end(Mode::Running, Input::EpisodeComplete),
            Some(EpisodeEnd::Completed)
        );
        assert_eq!(
            end(Mode::Paused, Input::Operator(Op::Park)),
            Some(EpisodeEnd::Operator(Op::Park))
        );
        assert_eq!(
            end(Mode::Running, Input::Shutdown),
            Some(EpisodeEnd::Operator(Op::Quit))
        );
        assert_eq!(
            end(Mode::Running, Input::Operator(Op::Emergency)),
            Some(EpisodeEnd::Operator(Op::Emergency))
        );
        assert_eq!(end(Mode::Running, Input::Operator(Op::TogglePause)), None);
        assert_eq!(end(Mode::Idle, Input::Operator(Op::Park)), None);
    }

    #[test]
    fn the_runtime_cannot_start_what_the_operator_stopped() {
        for mode in [
            Mode::EmergencyHold,
            Mode::FaultHold,
            Mode::TorqueOff,
            Mode::Parking,
        ] {
            assert_eq!(after(mode, Input::Reset), None, "{mode}");
            assert_eq!(after(mode, Input::Begin), None, "{mode}");
        }
        assert_eq!(after(Mode::MovingToStart, Input::Begin), None);
        assert_eq!(
            after(Mode::Done, Input::Reset),
            Some((Mode::MovingToStart, Effect::MoveToStart))
        );
    }

    #[test]
    fn a_hold_after_a_fault_waits_for_the_operator() {
        for mode in [Mode::FaultHold, Mode::EmergencyHold] {
            // Neither the runtime's shutdown nor space moves or releases it.
            assert_eq!(after(mode, Input::Shutdown), None, "{mode}");
            assert_eq!(
                after(mode, Input::Operator(Op::TogglePause)),
                None,
                "{mode}"
            );
            // The operator decides: h parks, q parks and quits, e freezes or cuts torque.
            assert_eq!(
                after(mode, Input::Operator(Op::Park)),
                Some((Mode::Parking, Effect::MoveToPark))
            );
            let mut m = machine_in(mode);
            assert_eq!(
                m.handle(Input::Operator(Op::Quit)).map(|t| t.to),
                Some(Mode::Parking)
            );
            assert!(m.quit_requested());
            // Nobody there: torque off where it stands.
            assert_eq!(
                after(mode, Input::Unattended),
                Some((Mode::TorqueOff, Effect::TorqueOff))
            );
        }
        assert_eq!(
            after(Mode::FaultHold, Input::Operator(Op::Emergency)),
            Some((Mode::EmergencyHold, Effect::FreezeAtMeasured))
        );
        assert_eq!(
            after(Mode::EmergencyHold, Input::Operator(Op::Emergency)),
            Some((Mode::TorqueOff, Effect::TorqueOff))
        );
        // Unattended means nothing outside a hold.
        for mode in [Mode::Idle, Mode::Running, Mode::Parking, Mode::Done] {
            assert_eq!(after(mode, Input::Unattended), None, "{mode}");
        }
    }

    #[test]
    fn reboot_only_when_torque_is_off() {
        for mode in Mode::ALL {
            let got = after(mode, Input::Operator(Op::RebootFaulted));
            assert_eq!(got.is_some(), !mode.torque_on(), "{mode}");
        }
    }
}
