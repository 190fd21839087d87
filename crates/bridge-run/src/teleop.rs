//! Keyboard teleoperation as a [`Policy`]: the operator's held keys become Bridge actions, so a
//! teleoperated episode goes through the same control thread, safety supervisor, recorder and
//! BridgeData V2 raw layout as a policy's (each step recorded as `teleop`).
//!
//! Rate control: a terminal sends a held key as one press, a pause (the repeat delay), then a
//! press every 25-40 ms. A first press moves for `teleop.key_hold_s`, each repeat extends the
//! move by `teleop.repeat_hold_s`, and the opposite key stops it at once. Each policy step, the
//! action is the held velocity times the step's period: `[dx, dy, dz, 0, 0, dyaw, gripper]`
//! with the gripper absolute (1 open, 0 closed), as Bridge's teleoperation records it.
//!
//! A gamepad (feature `gamepad`, through gilrs: module `gamepad`) moves in proportion to its
//! sticks' deflection ([`TeleopKeys::set_stick`]), its buttons mapped by [`pad_button`].
//!
//! Keys ([`teleop_key`]): w/s x, a/d y, r/f z, j/l yaw, g gripper, Enter ends the episode;
//! space, e/Esc, h, q and Ctrl-C keep their meaning (pause, emergency, park, quit). Between
//! episodes ([`Phase::Reset`]): n keep and go on, r discard and redo, q keep and quit.
//!
//! Not for: jogging a paused policy episode (that is the mode machine's `Jog`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bridge_data::StepKind;
use crossbeam_channel::Sender;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::config::TeleopConfig;
use crate::keyboard::command_for_key;
use crate::modes::OperatorCommand;
use crate::policy::{GoalImage, Policy, PolicyError, PolicyOutput};
use crate::replay::SCRIPTED_INPUT_PX;

/// One line of help for the teleoperation keys.
pub const HELP: &str = "teleop keys (hold to move): w/s x, a/d y, r/f z, j/l yaw, g gripper, Enter end episode | space pause | e/Esc emergency | h park | q park+quit";

/// One line of help for the reset period between episodes.
pub const RESET_HELP: &str = "reset the scene, then: n keep this episode and go on | r discard it and redo | q keep it and quit";

/// A direction the operator can move in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Motion {
    X,
    Y,
    Z,
    Yaw,
}

impl Motion {
    const ALL: [Motion; 4] = [Motion::X, Motion::Y, Motion::Z, Motion::Yaw];

    fn index(self) -> usize {
        self as usize
    }
}

/// What the operator decided in the reset period after an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetChoice {
    /// Keep the episode and record the next.
    Next,
    /// Discard the episode (it is deleted) and record it again.
    Redo,
    /// Keep the episode and end the session.
    Quit,
}

/// Whether keys drive the arm (an episode) or decide about the last episode (the reset period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Episode,
    Reset,
}

/// What one key press means in teleoperation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeleopKey {
    /// Move along `motion`, positive or negative.
    Move { motion: Motion, positive: bool },
    /// Open a closed gripper, close an open one.
    Gripper,
    /// End the episode after the current step (it counts as completed).
    EndEpisode,
    /// A reset-period decision.
    Choice(ResetChoice),
    /// A command for the mode machine (pause, emergency, park, quit).
    Operator(OperatorCommand),
}

/// The key's meaning in `phase`, if any. Safety keys (e, Esc, h, space, Ctrl-C) mean the same
/// in both phases; q quits the session in both.
pub fn teleop_key(key: &KeyEvent, phase: Phase) -> Option<TeleopKey> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let plain = !key.modifiers.contains(KeyModifiers::CONTROL);
    let char = match key.code {
        KeyCode::Char(c) if plain => Some(c.to_ascii_lowercase()),
        _ => None,
    };
    let safety = || match command_for_key(key)? {
        command @ (OperatorCommand::Emergency
        | OperatorCommand::Park
        | OperatorCommand::TogglePause
        | OperatorCommand::Quit) => Some(TeleopKey::Operator(command)),
        _ => None,
    };
    if phase == Phase::Reset {
        return match char {
            Some('n') => Some(TeleopKey::Choice(ResetChoice::Next)),
            Some('r') => Some(TeleopKey::Choice(ResetChoice::Redo)),
            Some('q') => Some(TeleopKey::Choice(ResetChoice::Quit)),
            _ => safety(),
        };
    }
    let movement = |motion, positive| Some(TeleopKey::Move { motion, positive });
    match (key.code, char) {
        (KeyCode::Enter, _) => Some(TeleopKey::EndEpisode),
        (_, Some('w')) => movement(Motion::X, true),
        (_, Some('s')) => movement(Motion::X, false),
        (_, Some('a')) => movement(Motion::Y, true),
        (_, Some('d')) => movement(Motion::Y, false),
        (_, Some('r')) => movement(Motion::Z, true),
        (_, Some('f')) => movement(Motion::Z, false),
        (_, Some('j')) => movement(Motion::Yaw, true),
        (_, Some('l')) => movement(Motion::Yaw, false),
        (_, Some('g')) => Some(TeleopKey::Gripper),
        _ => safety(),
    }
}

/// The operator's held keys, shared by the keyboard thread (which presses) and the
/// [`TeleopPolicy`] (which reads a velocity each step).
#[derive(Debug, Clone)]
pub struct TeleopKeys {
    state: Arc<Mutex<HeldKeys>>,
}

#[derive(Debug)]
struct HeldKeys {
    settings: TeleopConfig,
    /// Per motion: the direction held (+1 or -1) and until when.
    held: [Option<(f64, Instant)>; 4],
    /// A gamepad's sticks per motion, -1..=1 of the full speed (0 without a gamepad).
    stick: [f64; 4],
    gripper_open: bool,
    end_requested: bool,
    phase: Phase,
}

impl TeleopKeys {
    pub fn new(settings: TeleopConfig) -> TeleopKeys {
        TeleopKeys {
            state: Arc::new(Mutex::new(HeldKeys {
                settings,
                held: [None; 4],
                stick: [0.0; 4],
                gripper_open: true,
                end_requested: false,
                phase: Phase::Episode,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HeldKeys> {
        // The state stays consistent whatever a panicking holder did: plain values only.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Switches between driving keys and reset-period keys; entering an episode releases every
    /// key and opens the gripper (episodes start open at the start pose).
    pub fn set_phase(&self, phase: Phase) {
        let mut keys = self.lock();
        keys.phase = phase;
        keys.held = [None; 4];
        keys.stick = [0.0; 4];
        keys.end_requested = false;
        if phase == Phase::Episode {
            keys.gripper_open = true;
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// Registers a press of a move key at `at`: a press within the hold of the same direction is
    /// a repeat (the key is held); the opposite direction stops the motion.
    pub fn press(&self, motion: Motion, positive: bool, at: Instant) {
        let mut keys = self.lock();
        let sign = if positive { 1.0 } else { -1.0 };
        let slot = motion.index();
        let hold = match keys.held[slot] {
            Some((held_sign, until)) if held_sign == sign && until > at => {
                keys.settings.repeat_hold_s
            }
            Some((_, until)) if until > at => {
                keys.held[slot] = None; // the opposite key: stop
                return;
            }
            _ => keys.settings.key_hold_s,
        };
        let until = at + Duration::from_secs_f64(hold);
        keys.held[slot] = Some((sign, until));
    }

    /// A gamepad stick's deflection along `motion`, -1..=1 of the full speed; within
    /// [`STICK_DEADZONE`] of the centre it counts as released.
    pub fn set_stick(&self, motion: Motion, deflection: f64) {
        let deflection = if deflection.is_finite() && deflection.abs() > STICK_DEADZONE {
            deflection.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        self.lock().stick[motion.index()] = deflection;
    }

    /// Toggles the gripper's commanded state.
    pub fn toggle_gripper(&self) {
        let mut keys = self.lock();
        keys.gripper_open = !keys.gripper_open;
    }

    /// Asks the episode to end after the current step.
    pub fn request_end(&self) {
        self.lock().end_requested = true;
    }

    fn end_requested(&self) -> bool {
        self.lock().end_requested
    }

    /// The Bridge action for a step of `period_s` starting at `at`.
    pub fn action_at(&self, at: Instant, period_s: f64) -> [f32; 7] {
        let keys = self.lock();
        let mut action = [0.0f32; 7];
        for motion in Motion::ALL {
            let (speed, entry) = match motion {
                Motion::X => (keys.settings.speed_m_s, 0),
                Motion::Y => (keys.settings.speed_m_s, 1),
                Motion::Z => (keys.settings.speed_m_s, 2),
                Motion::Yaw => (keys.settings.yaw_speed_rad_s, 5),
            };
            // The key's part of the step during which it is still held; else the stick's.
            let held = keys.held[motion.index()].filter(|(_, until)| *until > at);
            let from_key = held.map(|(sign, until)| {
                sign * until
                    .saturating_duration_since(at)
                    .as_secs_f64()
                    .min(period_s)
            });
            let signed_s = from_key.unwrap_or(keys.stick[motion.index()] * period_s);
            action[entry] = (signed_s * speed) as f32;
        }
        action[6] = if keys.gripper_open { 1.0 } else { 0.0 };
        action
    }

    /// Handles one key press: moves and the gripper change the held state; other keys are
    /// sent on, operator commands to the mode machine, reset choices to `choices`. Returns
    /// false when a receiver is gone (the keyboard thread then stops).
    pub fn handle(
        &self,
        key: &KeyEvent,
        commands: &Sender<OperatorCommand>,
        choices: &Sender<ResetChoice>,
    ) -> bool {
        match teleop_key(key, self.phase()) {
            Some(meaning) => self.apply(meaning, commands, choices),
            None => true,
        }
    }

    /// Carries out one key's (or gamepad button's) meaning; false when a receiver is gone.
    pub fn apply(
        &self,
        meaning: TeleopKey,
        commands: &Sender<OperatorCommand>,
        choices: &Sender<ResetChoice>,
    ) -> bool {
        match meaning {
            TeleopKey::Move { motion, positive } => {
                self.press(motion, positive, Instant::now());
                true
            }
            TeleopKey::Gripper => {
                self.toggle_gripper();
                true
            }
            TeleopKey::EndEpisode => {
                self.request_end();
                true
            }
            TeleopKey::Choice(choice) => choices.send(choice).is_ok(),
            TeleopKey::Operator(command) => commands.send(command).is_ok(),
        }
    }
}

/// Stick deflections below this fraction count as centred (sticks rarely rest at exactly 0).
pub const STICK_DEADZONE: f64 = 0.15;

/// A gamepad's buttons that mean something in teleoperation (named by position, as gilrs
/// names them: South is A on an Xbox pad, cross on a PlayStation pad).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadButton {
    South,
    East,
    West,
    North,
    Start,
    Select,
}

/// The gamepad layout: left stick x/y, right stick z (up/down) and yaw (left/right); in an
/// episode South toggles the gripper, Start ends the episode, Select pauses, East is the
/// emergency stop; in the reset period South keeps and goes on, West discards and redoes, North
/// keeps and quits (East is still the emergency stop).
pub fn pad_button(button: PadButton, phase: Phase) -> Option<TeleopKey> {
    let operator = |command| Some(TeleopKey::Operator(command));
    match (phase, button) {
        (_, PadButton::East) => operator(OperatorCommand::Emergency),
        (Phase::Episode, PadButton::South) => Some(TeleopKey::Gripper),
        (Phase::Episode, PadButton::Start) => Some(TeleopKey::EndEpisode),
        (Phase::Episode, PadButton::Select) => operator(OperatorCommand::TogglePause),
        (Phase::Reset, PadButton::South) => Some(TeleopKey::Choice(ResetChoice::Next)),
        (Phase::Reset, PadButton::West) => Some(TeleopKey::Choice(ResetChoice::Redo)),
        (Phase::Reset, PadButton::North) => Some(TeleopKey::Choice(ResetChoice::Quit)),
        _ => None,
    }
}

/// The operator, as a policy: each step's action is what the held keys ask for.
pub struct TeleopPolicy {
    keys: TeleopKeys,
    period_s: f64,
}

impl TeleopPolicy {
    /// Reads `keys` once per `period_s` (`policy.policy_period_s`).
    pub fn new(keys: TeleopKeys, period_s: f64) -> TeleopPolicy {
        TeleopPolicy { keys, period_s }
    }
}

impl Policy for TeleopPolicy {
    fn input_size_px(&self) -> u32 {
        SCRIPTED_INPUT_PX
    }

    fn set_goal(&mut self, _goal: &GoalImage) -> Result<(), PolicyError> {
        Ok(())
    }

    fn act(&mut self, _obs_model_rgb: &[u8]) -> Result<PolicyOutput, PolicyError> {
        Ok(PolicyOutput {
            action: self.keys.action_at(Instant::now(), self.period_s),
            distance: f32::NAN,
            inference_s: 0.0,
        })
    }

    fn episode_done(&self) -> bool {
        self.keys.end_requested()
    }

    fn step_kind(&self) -> StepKind {
        StepKind::Teleop
    }
}

/// The stand-in goal of a teleoperated episode: the operator has the goal in mind, so the
/// recording's `episode.toml` says so and no goal image is saved.
pub fn no_goal(policy: &dyn Policy, frame_px: (u32, u32)) -> Result<GoalImage, PolicyError> {
    let (width_px, height_px) = frame_px;
    let blank = vec![0u8; width_px as usize * height_px as usize * 3];
    GoalImage::from_rgb(
        std::path::Path::new("(teleoperation: the operator's goal, no image)"),
        &blank,
        width_px,
        height_px,
        policy.input_view(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn keys() -> TeleopKeys {
        TeleopKeys::new(TeleopConfig::default())
    }

    #[test]
    fn a_tap_moves_for_the_first_hold_and_repeats_extend_it() {
        let keys = keys();
        let t0 = Instant::now();
        keys.press(Motion::X, true, t0);
        // A whole 0.2 s step inside the 0.6 s first hold: 0.05 m/s * 0.2 s.
        let first = keys.action_at(t0, 0.2);
        assert!((first[0] - 0.01).abs() < 1e-6, "{first:?}");
        // Past the hold with no repeat: no motion.
        assert_eq!(keys.action_at(t0 + Duration::from_millis(700), 0.2)[0], 0.0);
        // Repeats (a held key) keep it moving 0.15 s past the last one.
        for ms in [500, 530, 560, 590, 620, 650, 680] {
            keys.press(Motion::X, true, t0 + Duration::from_millis(ms));
        }
        let held = keys.action_at(t0 + Duration::from_millis(700), 0.2);
        assert!((held[0] - 0.05 * 0.13).abs() < 1e-6, "{held:?}");
    }

    #[test]
    fn the_opposite_key_stops_at_once() {
        let keys = keys();
        let t0 = Instant::now();
        keys.press(Motion::Y, true, t0);
        keys.press(Motion::Y, false, t0 + Duration::from_millis(100));
        assert_eq!(keys.action_at(t0 + Duration::from_millis(100), 0.2)[1], 0.0);
        // Pressed again after the stop, the other way: moves that way.
        keys.press(Motion::Y, false, t0 + Duration::from_millis(150));
        assert!(keys.action_at(t0 + Duration::from_millis(150), 0.2)[1] < 0.0);
    }

    #[test]
    fn yaw_and_gripper_fill_their_entries() {
        let keys = keys();
        let t0 = Instant::now();
        keys.press(Motion::Yaw, false, t0);
        let action = keys.action_at(t0, 0.2);
        assert!((action[5] + 0.1).abs() < 1e-6, "{action:?}");
        assert_eq!(action[6], 1.0, "episodes start with the gripper open");
        keys.toggle_gripper();
        assert_eq!(keys.action_at(t0, 0.2)[6], 0.0);
        keys.set_phase(Phase::Episode);
        assert_eq!(keys.action_at(t0, 0.2), [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn a_stick_moves_in_proportion_and_a_key_takes_precedence() {
        let keys = keys();
        let t0 = Instant::now();
        keys.set_stick(Motion::X, 0.5);
        keys.set_stick(Motion::Yaw, -1.0);
        keys.set_stick(Motion::Y, 0.1); // inside the dead zone
        let action = keys.action_at(t0, 0.2);
        assert!((action[0] - 0.005).abs() < 1e-6, "{action:?}");
        assert_eq!(action[1], 0.0);
        assert!((action[5] + 0.1).abs() < 1e-6, "{action:?}");
        keys.press(Motion::X, false, t0);
        assert!((keys.action_at(t0, 0.2)[0] + 0.01).abs() < 1e-6);
        keys.set_phase(Phase::Reset);
        assert_eq!(
            keys.action_at(t0, 0.2)[5],
            0.0,
            "a new phase centres the sticks"
        );
    }

    #[test]
    fn gamepad_buttons_mean_the_same_as_their_keys() {
        assert_eq!(
            pad_button(PadButton::South, Phase::Episode),
            Some(TeleopKey::Gripper)
        );
        assert_eq!(
            pad_button(PadButton::South, Phase::Reset),
            Some(TeleopKey::Choice(ResetChoice::Next))
        );
        assert_eq!(
            pad_button(PadButton::West, Phase::Reset),
            Some(TeleopKey::Choice(ResetChoice::Redo))
        );
        for phase in [Phase::Episode, Phase::Reset] {
            assert_eq!(
                pad_button(PadButton::East, phase),
                Some(TeleopKey::Operator(OperatorCommand::Emergency))
            );
        }
        assert_eq!(
            pad_button(PadButton::Start, Phase::Episode),
            Some(TeleopKey::EndEpisode)
        );
        assert_eq!(pad_button(PadButton::West, Phase::Episode), None);
    }

    #[test]
    fn keys_mean_moves_in_an_episode_and_choices_in_the_reset_period() {
        let episode = |code| teleop_key(&key(code), Phase::Episode);
        let reset = |code| teleop_key(&key(code), Phase::Reset);
        assert_eq!(
            episode(KeyCode::Char('r')),
            Some(TeleopKey::Move {
                motion: Motion::Z,
                positive: true
            })
        );
        assert_eq!(
            reset(KeyCode::Char('r')),
            Some(TeleopKey::Choice(ResetChoice::Redo))
        );
        assert_eq!(
            reset(KeyCode::Char('n')),
            Some(TeleopKey::Choice(ResetChoice::Next))
        );
        assert_eq!(episode(KeyCode::Enter), Some(TeleopKey::EndEpisode));
        for phase in [Phase::Episode, Phase::Reset] {
            assert_eq!(
                teleop_key(&key(KeyCode::Esc), phase),
                Some(TeleopKey::Operator(OperatorCommand::Emergency))
            );
            assert_eq!(
                teleop_key(&key(KeyCode::Char('h')), phase),
                Some(TeleopKey::Operator(OperatorCommand::Park))
            );
        }
        assert_eq!(
            episode(KeyCode::Char('q')),
            Some(TeleopKey::Operator(OperatorCommand::Quit))
        );
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(
            teleop_key(&ctrl_c, Phase::Reset),
            Some(TeleopKey::Operator(OperatorCommand::Quit))
        );
        // The paused-jog and reboot keys of a policy run mean nothing here.
        assert_eq!(episode(KeyCode::Char('b')), None);
    }
}
