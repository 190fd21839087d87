//! Every message that crosses a thread boundary in the runtime, in one place: what each thread
//! asks of another, what it answers, and the snapshots it publishes. The graph that carries them
//! (which thread holds which end) is wired in [`crate::graph`].
//!
//! Two kinds of hand-off, chosen per edge:
//! - freshest value (`Mailbox`): the newest frame time, the policy's action, the control and
//!   policy statuses. A slow reader skips stale values; a writer never waits.
//! - bounded channels: requests, reports and events where every item matters. A request that
//!   needs an answer carries its own reply channel ([`ResetDone`], [`EpisodeDone`],
//!   [`MonitorMsg::TakeEpisodeLog`]), so nobody polls a status for it.

use std::path::PathBuf;
use std::time::Instant;

use bridge_data::raw::RawStep;
use bridge_data::{Outcome, StepKind};
use crossbeam_channel::Sender;
use widowx::bridge::{BridgeAction, Clipped, CommandedPose, bridge_state, gripper_open_fraction};
use widowx::joints::ARM_JOINTS;
use widowx_driver::{JointState, ServoRef};

use crate::action::StepRefused;
use crate::modes::{EpisodeEnd, Mode, OperatorCommand, Transition};
use crate::policy::GoalImage;
use crate::supervisor::Fault;

/// The policy's newest action, as the control thread receives it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyAction {
    pub episode: u64,
    /// 0-based step within the episode.
    pub step: usize,
    pub action: BridgeAction,
    /// When the frame the policy acted on was captured.
    pub frame_captured_at: Instant,
}

/// How an episode ended, as the control thread saw it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpisodeEndRecord {
    pub episode: u64,
    pub end: EpisodeEnd,
    /// The fault that ended it, if one did.
    pub fault: Option<Fault>,
}

/// The control thread's answer to [`ControlRequest::Reset`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResetDone {
    /// The arm is at the start pose, holding: the episode may begin.
    Ready,
    /// The reset did not complete: the mode the arm is in, and the fault that stopped it, if a
    /// fault did (otherwise the operator, or a mode that refuses a reset).
    Failed { mode: Mode, fault: Option<Fault> },
}

/// The control thread's answer to [`ControlRequest::Begin`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EpisodeDone {
    /// The episode ran and ended.
    Ended(EpisodeEndRecord),
    /// It never began: the operator took over between the reset and the start, or the reset
    /// was for another episode.
    NotBegun { mode: Mode },
}

/// A snapshot of the control thread, written every tick.
#[derive(Debug, Clone, Copy)]
pub struct ControlStatus {
    pub mode: Mode,
    pub quit_requested: bool,
    /// When the snapshot was taken.
    pub at: Instant,
    /// The last joint state read (valid when `state_fresh`).
    pub state: JointState,
    /// Whether this tick's read succeeded (a faulted servo's alert still counts: its state was read).
    pub state_fresh: bool,
    /// Joint goals last written.
    pub setpoint_rad: [f64; ARM_JOINTS],
    /// The commanded Bridge pose (what the next delta applies to).
    pub commanded: CommandedPose,
    pub gripper_closed: bool,
    /// The episode the policy drives (or drove last).
    pub episode: u64,
    /// Policy steps applied in the current episode.
    pub steps_applied: usize,
    pub last_fault: Option<Fault>,
    pub ticks: u64,
    /// Ticks that started more than one period late.
    pub overruns: u64,
    /// Events the monitor channel could not take.
    pub dropped_events: u64,
    /// What the operator has done since the runtime started (the recorder flags steps with it).
    pub interventions: Interventions,
    /// The operator pressed space after a park (Done): run again. Cleared by the next reset.
    pub resume_requested: bool,
}

impl ControlStatus {
    /// The measured Bridge state `[x, y, z, roll, pitch, yaw, gripper open fraction]` of the
    /// last joint read.
    pub fn bridge_state(&self) -> [f64; 7] {
        let joints: [f64; ARM_JOINTS] = self.state.arm_positions_rad();
        let gripper = gripper_open_fraction(self.state.positions_rad[ARM_JOINTS]);
        bridge_state(&joints, gripper)
    }
}

/// Counts of operator actions, compared between two policy steps to flag the step between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interventions {
    /// Jogs and gripper toggles carried out.
    pub jogs: u64,
    /// Pauses of a running episode.
    pub pauses: u64,
}

impl Interventions {
    /// How the step between `self` (when its action was taken) and `now` is flagged.
    pub fn step_kind_until(self, now: Interventions) -> StepKind {
        if now.jogs != self.jogs {
            StepKind::Jog
        } else if now.pauses != self.pauses {
            StepKind::Paused
        } else {
            StepKind::Policy
        }
    }
}

impl ControlStatus {
    pub(crate) fn initial(
        now: Instant,
        state: JointState,
        setpoint_rad: [f64; ARM_JOINTS],
    ) -> ControlStatus {
        ControlStatus {
            mode: Mode::Idle,
            quit_requested: false,
            at: now,
            state,
            state_fresh: true,
            setpoint_rad,
            commanded: CommandedPose::from_joints(&setpoint_rad),
            gripper_closed: false,
            episode: 0,
            steps_applied: 0,
            last_fault: None,
            ticks: 0,
            overruns: 0,
            dropped_events: 0,
            interventions: Interventions::default(),
            resume_requested: false,
        }
    }

    /// A snapshot for before the control thread has published one.
    pub fn placeholder(now: Instant) -> ControlStatus {
        ControlStatus::initial(now, JointState::default(), [0.0; ARM_JOINTS])
    }

    /// Whether the control thread has stopped for good: quit asked, and parked or powerless.
    pub fn stopped(&self) -> bool {
        self.quit_requested
            && matches!(
                self.mode,
                Mode::Done | Mode::TorqueOff | Mode::EmergencyHold
            )
    }
}

/// What the runtime asks of the control thread.
#[derive(Debug, Clone)]
pub enum ControlRequest {
    /// Move to the start pose for `episode`; the answer comes on `done` once the move is over.
    Reset {
        episode: u64,
        done: Sender<ResetDone>,
    },
    /// Hand control to the policy for `episode` (after its reset); the answer comes on `done`
    /// when the episode ends (or at once when it cannot begin).
    Begin {
        episode: u64,
        done: Sender<EpisodeDone>,
    },
    /// The policy took its last step of `episode`: hold.
    Complete { episode: u64 },
    /// Park, then stop (as `q`); ignored while a hold awaits the operator.
    Shutdown,
    /// Nobody can answer the hold (no keyboard) and its time is over: torque off where the arm
    /// stands.
    Unattended,
    /// Leave the loop (after Shutdown completed, or to give up).
    Exit,
}

/// What the control thread reports to the monitor (Copy: sent without allocating).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ControlEvent {
    Transition {
        transition: Transition,
        fault: Option<Fault>,
    },
    /// A fault seen in a mode already as safe as it answers for (logged once per kind).
    Fault {
        fault: Fault,
    },
    StepRefused {
        refused: StepRefused,
        jog: bool,
    },
    Clipped {
        step: usize,
        clipped: Clipped,
    },
    ActionApplied {
        episode: u64,
        step: usize,
        frame_to_command_s: f64,
    },
    Gripper {
        closed: bool,
    },
    Rebooted {
        servo: ServoRef,
        ok: bool,
    },
    NothingToReboot,
    /// Space after a park while `joint`'s servo still reports a hardware error.
    ResumeRefused {
        joint: widowx::joints::Joint,
    },
    /// An operator key the current mode does not take.
    Ignored {
        command: OperatorCommand,
        mode: Mode,
    },
    DriverFailed {
        what: &'static str,
        servo: Option<ServoRef>,
    },
}

/// Where an episode is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingPlan {
    /// The trajectory directory (`.../raw/traj_group0/traj<i>`).
    pub dir: PathBuf,
    pub language: Option<String>,
}

/// What the runtime asks of the policy thread.
#[derive(Debug)]
pub enum PolicyRequest {
    /// Set the goal and act during `episode` (when the control thread runs it).
    Start {
        episode: u64,
        goal: GoalImage,
        max_steps: usize,
        recording: Option<RecordingPlan>,
        /// Hand each step's camera frame (JPEG) back for the run report.
        keep_frames: bool,
    },
    /// Stop acting; record the final observation and close the recording with `outcome`.
    Stop {
        episode: u64,
        outcome: Outcome,
    },
    Exit,
}

/// One policy step, for the episode's trace.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    pub episode: u64,
    pub step: usize,
    pub action: [f32; 7],
    pub distance: f32,
    pub inference_s: f64,
    pub frame_age_s: f64,
    pub obs_model_rgb: Vec<u8>,
    /// When the step's camera frame was captured.
    pub captured_at: Instant,
    /// The camera frame as JPEG, when the run report or the recorder wants it (encoded once).
    pub frame_jpeg: Option<std::sync::Arc<Vec<u8>>>,
}

/// What the policy thread tells the runtime.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyReport {
    /// The goal was set (or could not be, with the reason).
    Started {
        episode: u64,
        result: Result<(), String>,
    },
    Step(StepRecord),
    /// The episode's last step was taken.
    Finished {
        episode: u64,
        steps: usize,
    },
    /// Acting stopped; the recording (if any) is closed.
    Stopped {
        episode: u64,
        steps: usize,
        recording: Option<PathBuf>,
    },
}

/// What the monitor receives.
#[derive(Debug, Clone)]
pub enum MonitorMsg {
    /// From the control thread.
    Control { at: Instant, event: ControlEvent },
    /// The time between the starts of two control ticks.
    Tick { period_s: f64 },
    /// From another thread (camera, policy, runtime): a line for the log; `safety` lines are
    /// also shown as the status line's last event.
    Note {
        at: Instant,
        source: &'static str,
        text: String,
        safety: bool,
    },
    /// The runtime starts collecting a new episode.
    EpisodeStart {
        episode: u64,
        /// When it started: event times in the episode's log count from here.
        at: Instant,
        /// Episodes the run asked for, when it said.
        planned: Option<u64>,
    },
    /// Answered, once every message sent before it is handled, with the log gathered since
    /// the last `EpisodeStart` (the monitor keeps collecting into a fresh one).
    TakeEpisodeLog(Sender<EpisodeLog>),
    /// Stop the monitor.
    Exit,
}

/// What the policy thread last did (for the status line).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PolicyStatus {
    pub episode: u64,
    pub steps: usize,
    pub max_steps: usize,
    pub last_inference_s: f64,
    pub last_distance: f32,
}

/// What one episode produced, gathered by the monitor for its report.
#[derive(Debug, Clone, Default)]
pub struct EpisodeLog {
    /// Every event as logged, `+seconds  text` from the episode start.
    pub events: Vec<String>,
    /// The same events with their time and kind, for the run report.
    pub timed_events: Vec<TimedEvent>,
    /// Safety events only (faults, refused steps), same format.
    pub safety_events: Vec<String>,
    pub control_period_s: Vec<f64>,
    pub frame_to_command_s: Vec<f64>,
}

/// One logged event of an episode.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedEvent {
    /// Seconds from the episode start.
    pub at_s: f64,
    pub text: String,
    /// A safety event (fault, refused step).
    pub safety: bool,
}

/// What the runtime asks the recorder to write.
// Observations are moved, not boxed: a queue slot of a few hundred bytes costs less than an
// allocation per step on the sending (realtime) side.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RecorderMsg {
    /// Opens a trajectory directory (closing any open one). `language` goes to lang.txt.
    StartEpisode {
        dir: PathBuf,
        language: Option<String>,
    },
    /// One observation (its JPEG is written at once).
    Observation(RawStep),
    /// The action taken in the latest observation, by a policy.
    Action(BridgeAction),
    /// The action taken in the latest observation, recorded as `kind` (a teleoperated step).
    ActionOf(BridgeAction, StepKind),
    /// The operator acted during the latest action's step (sent before the next observation).
    MarkLastAction(StepKind),
    /// Closes the open episode (final flush) with its end record.
    EndEpisode(Outcome),
}
