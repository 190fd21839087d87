//! The control thread: the servo loop and the safety supervisor.
//!
//! Every tick (default 100 Hz): one SYNC_READ of the joint state, the operator's commands and
//! the runtime's requests, the policy's newest action (through a freshest-value [`Mailbox`], so
//! the loop never waits on the policy), the supervisor's checks, one step of the setpoint toward
//! its target (limited per tick), one SYNC_WRITE of the goals, and the status snapshot. A tick
//! allocates nothing and touches no disk: events go to the monitor thread over a bounded
//! channel (dropped, and counted, if it is ever full). Gripper commands are written only when
//! the gripper state changes.
//!
//! Motion: a target (joints) is approached by linear interpolation over a number of ticks (a
//! policy step over `move_time_s`, a jog over `jog_move_time_s`, resets and parking at
//! `reset_speed_rad_s`), each tick's step clamped by the supervisor. Each tick's goal is written
//! with a short time-based profile (`servo_move_time_s`) so the servos glide between setpoints.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use widowx::joints::{ARM_JOINTS, BRIDGE_NEUTRAL_POSE_RAD, SLEEP_POSE_RAD};
use widowx_driver::{Arm, DriverError};

use crate::action::{ActionMapper, Clipped, CommandedPose, StepRefused, StickyGripper};
use crate::config::RuntimeConfig;
use crate::mailbox::Mailbox;
use crate::messages::{
    ControlEvent, ControlRequest, ControlStatus, EpisodeDone, EpisodeEndRecord, MonitorMsg,
    PolicyAction, ResetDone,
};
use crate::modes::{Axis, Effect, Input, Mode, ModeMachine, OperatorCommand, Transition};

use crate::supervisor::{Fault, Supervisor, TickView};

/// The control thread's ends of its channels.
#[derive(Debug)]
pub struct ControlLinks {
    pub operator: Receiver<OperatorCommand>,
    pub requests: Receiver<ControlRequest>,
    pub monitor: Sender<MonitorMsg>,
    pub actions: Mailbox<Option<PolicyAction>>,
    /// Capture time of the newest camera frame.
    pub frames: Mailbox<Option<Instant>>,
    pub status: Mailbox<ControlStatus>,
}

/// A planned move (reset or park): arrival is checked, and once the setpoint has arrived the
/// arm must follow within `reach_timeout_s` (timed from there, so a slow control loop, which
/// slows the setpoint down, is not mistaken for an arm that does not follow).
#[derive(Debug, Clone, Copy)]
struct PlannedMove {
    deadline: Option<Instant>,
}

/// Replies to the runtime's requests, held until the tick's status snapshot is out.
#[derive(Default)]
struct Answers {
    reset: Option<(Sender<ResetDone>, ResetDone)>,
    episode: Option<(Sender<EpisodeDone>, EpisodeDone)>,
}

struct Control {
    arm: Arm,
    config: RuntimeConfig,
    links: ControlLinks,
    machine: ModeMachine,
    supervisor: Supervisor,
    mapper: ActionMapper,
    gripper: StickyGripper,
    gripper_written: Option<bool>,
    torque_on: bool,
    bus_lost: bool,
    /// Arm joints whose servo reported a hardware error (not expected to follow).
    faulted: [bool; ARM_JOINTS],
    setpoint: [f64; ARM_JOINTS],
    target: [f64; ARM_JOINTS],
    ticks_left: u32,
    planned: Option<PlannedMove>,
    commanded: CommandedPose,
    commanded_joints: [f64; ARM_JOINTS],
    last_action_version: u64,
    last_action_at: Instant,
    running_since: Instant,
    /// The reset in progress and where its answer goes.
    pending_reset: Option<(u64, Sender<ResetDone>)>,
    /// The episode whose reset to the start pose completed.
    episode_ready: u64,
    /// Where the running episode's end goes.
    episode_done: Option<Sender<EpisodeDone>>,
    /// Replies decided during this tick, sent at its end.
    answers: Answers,
    status: ControlStatus,
    last_reported_fault: Option<&'static str>,
}

/// Starts the control thread on `arm` (torque goes on, holding where the arm is). Returns the
/// arm when the loop ends.
pub fn spawn(
    mut arm: Arm,
    config: RuntimeConfig,
    links: ControlLinks,
) -> Result<JoinHandle<Arm>, crate::RunError> {
    arm.set_torque(true, None)?;
    let state = *arm.read_joint_state()?;
    let supervisor = Supervisor::new(
        config.safety.clone(),
        config.workspace.clone(),
        arm.joint_limits(),
    );
    let setpoint = supervisor.clamp_to_limits(&state.arm_positions_rad());
    let now = Instant::now();
    let status = ControlStatus::initial(now, state, setpoint);
    links.status.put(status);
    let control = Control {
        supervisor,
        mapper: ActionMapper::new(config.action.clone(), config.workspace.clone()),
        gripper: StickyGripper::new(
            config.action.gripper_threshold,
            config.action.gripper_sticky_steps,
        ),
        gripper_written: None,
        torque_on: true,
        bus_lost: false,
        faulted: [false; ARM_JOINTS],
        setpoint,
        target: setpoint,
        ticks_left: 0,
        planned: None,
        commanded: status.commanded,
        commanded_joints: setpoint,
        last_action_version: links.actions.get_versioned().0,
        last_action_at: now,
        running_since: now,
        pending_reset: None,
        episode_ready: 0,
        episode_done: None,
        answers: Answers::default(),
        status,
        last_reported_fault: None,
        machine: ModeMachine::new(),
        arm,
        config,
        links,
    };
    std::thread::Builder::new()
        .name("bridge-run-control".into())
        .spawn(move || control.run())
        .map_err(|source| crate::RunError::Thread {
            thread: "control",
            source,
        })
}

impl Control {
    fn run(mut self) -> Arm {
        self.become_realtime();
        let period = Duration::from_secs_f64(self.config.control.control_period_s);
        let mut next_tick = Instant::now();
        let mut last_tick: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if let Some(last) = last_tick {
                self.send(MonitorMsg::Tick {
                    period_s: (now - last).as_secs_f64(),
                });
            }
            last_tick = Some(now);
            if !self.tick(now) {
                break;
            }
            next_tick += period;
            let after = Instant::now();
            if after > next_tick + period {
                // More than a period behind: start afresh instead of racing to catch up.
                self.status.overruns += 1;
                next_tick = after;
            } else if next_tick > after {
                std::thread::sleep(next_tick - after);
            }
        }
        self.arm
    }

    /// Asks for SCHED_FIFO and locked memory, and says once what it got (with how to grant
    /// what was refused).
    fn become_realtime(&mut self) {
        let c = &self.config.control;
        let report =
            crate::realtime::make_current_thread_realtime(c.realtime_priority, c.lock_memory);
        self.send(MonitorMsg::Note {
            at: Instant::now(),
            source: "control",
            text: report.to_string(),
            safety: report.refused(),
        });
    }

    /// One control cycle; false when the loop must end.
    fn tick(&mut self, now: Instant) -> bool {
        let fresh = self.read(now);
        if !self.drain_requests(now) {
            return false;
        }
        self.drain_operator(now);
        if self.machine.mode() == Mode::Running {
            self.take_action(now);
        }
        if fresh {
            self.supervise(now);
        }
        self.check_planned_move(now, fresh);
        self.advance_setpoint();
        self.write();
        self.publish(now, fresh);
        self.send_answers();
        true
    }

    /// Sends the replies this tick produced, after its status snapshot is out: a runtime woken
    /// by a reply reads a status that already shows what the reply reports.
    fn send_answers(&mut self) {
        if let Some((done, answer)) = self.answers.reset.take() {
            let _ = done.send(answer);
        }
        if let Some((done, answer)) = self.answers.episode.take() {
            let _ = done.send(answer);
        }
    }

    fn send(&mut self, msg: MonitorMsg) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.links.monitor.try_send(msg)
        {
            self.status.dropped_events += 1;
        }
    }

    fn event(&mut self, event: ControlEvent) {
        self.send(MonitorMsg::Control {
            at: Instant::now(),
            event,
        });
    }

    /// Reads the joint state; true when it is fresh. Bus problems become faults.
    fn read(&mut self, now: Instant) -> bool {
        if self.bus_lost {
            self.on_fault(Fault::BusLost, now);
            return false;
        }
        let result = self.arm.read_joint_state().map(|_| ());
        match result {
            Ok(()) => {
                self.supervisor.bus_ok();
                true
            }
            Err(DriverError::Alert { servo, faults }) => {
                // The state was decoded before the alert was raised: it is fresh.
                self.supervisor.bus_ok();
                if let Some(index) = servo.joint.and_then(|j| j.arm_index()) {
                    self.faulted[index] = true;
                }
                self.on_fault(Fault::Hardware { servo, faults }, now);
                true
            }
            Err(DriverError::Io { .. } | DriverError::Open { .. }) => {
                self.bus_lost = true;
                self.on_fault(Fault::BusLost, now);
                false
            }
            Err(_) => {
                if let Some(fault) = self.supervisor.bus_failed(now) {
                    self.on_fault(fault, now);
                }
                false
            }
        }
    }

    fn drain_requests(&mut self, now: Instant) -> bool {
        while let Ok(request) = self.links.requests.try_recv() {
            match request {
                ControlRequest::Reset { episode, done } => self.reset(episode, done, now),
                ControlRequest::Begin { episode, done } => self.begin(episode, done, now),
                ControlRequest::Complete { episode } => {
                    if episode == self.status.episode {
                        self.input(Input::EpisodeComplete, None, now);
                    }
                }
                ControlRequest::Shutdown => {
                    self.input(Input::Shutdown, None, now);
                }
                ControlRequest::Unattended => {
                    self.input(Input::Unattended, None, now);
                }
                ControlRequest::Exit => return false,
            }
        }
        true
    }

    /// Starts the move to the start pose; the answer goes on `done` when the move is over
    /// ([`Control::answer_reset`]), or at once when the mode refuses a reset.
    fn reset(&mut self, episode: u64, done: Sender<ResetDone>, now: Instant) {
        // Set first: the move's first tick may already end it (a fault, an IK failure).
        self.pending_reset = Some((episode, done));
        if !self.input(Input::Reset, None, now)
            && let Some((_, done)) = self.pending_reset.take()
        {
            let failed = ResetDone::Failed {
                mode: self.machine.mode(),
                fault: self.status.last_fault,
            };
            self.answers.reset = Some((done, failed));
        }
    }

    /// Hands control to the policy when `episode`'s reset completed and the mode allows it;
    /// otherwise answers at once that it did not begin.
    fn begin(&mut self, episode: u64, done: Sender<EpisodeDone>, now: Instant) {
        if episode == self.episode_ready {
            self.status.episode = episode;
            self.status.steps_applied = 0;
            self.episode_done = Some(done);
            if self.input(Input::Begin, None, now) {
                return;
            }
            if let Some(done) = self.episode_done.take() {
                let not_begun = EpisodeDone::NotBegun {
                    mode: self.machine.mode(),
                };
                self.answers.episode = Some((done, not_begun));
            }
            return;
        }
        let not_begun = EpisodeDone::NotBegun {
            mode: self.machine.mode(),
        };
        self.answers.episode = Some((done, not_begun));
    }

    /// A transition out of MovingToStart ends the pending reset: ready when it arrived (back to
    /// Idle on `Reached`), failed otherwise.
    fn answer_reset(&mut self, transition: &Transition, input: Input, fault: Option<Fault>) {
        if transition.from != Mode::MovingToStart {
            return;
        }
        let Some((episode, done)) = self.pending_reset.take() else {
            return;
        };
        let answer = if input == Input::Reached && transition.to == Mode::Idle {
            self.episode_ready = episode;
            ResetDone::Ready
        } else {
            ResetDone::Failed {
                mode: transition.to,
                fault,
            }
        };
        self.answers.reset = Some((done, answer));
    }

    fn drain_operator(&mut self, now: Instant) {
        while let Ok(command) = self.links.operator.try_recv() {
            let mode = self.machine.mode();
            if !self.input(Input::Operator(command), None, now) {
                self.event(ControlEvent::Ignored { command, mode });
            }
        }
    }

    /// Feeds the mode machine and carries out the transition's effect.
    fn input(&mut self, input: Input, fault: Option<Fault>, now: Instant) -> bool {
        let Some(transition) = self.machine.handle(input) else {
            return false;
        };
        if transition.from == Mode::Running && transition.to == Mode::Paused {
            self.status.interventions.pauses += 1;
        }
        if transition.to == Mode::Running && transition.from != Mode::Running {
            // The watchdogs start counting when the policy (re)gains control.
            self.running_since = now;
            self.last_action_at = now;
        }
        if let Some(end) = transition.episode_end
            && let Some(done) = self.episode_done.take()
        {
            let record = EpisodeEndRecord {
                episode: self.status.episode,
                end,
                fault,
            };
            self.answers.episode = Some((done, EpisodeDone::Ended(record)));
        }
        self.event(ControlEvent::Transition { transition, fault });
        self.answer_reset(&transition, input, fault);
        self.apply(transition.effect, now);
        true
    }

    fn on_fault(&mut self, fault: Fault, now: Instant) {
        self.status.last_fault = Some(fault);
        let changed = self.input(Input::Fault(fault.response()), Some(fault), now);
        if changed {
            self.last_reported_fault = Some(fault.kind());
        } else if self.last_reported_fault != Some(fault.kind()) {
            self.last_reported_fault = Some(fault.kind());
            self.event(ControlEvent::Fault { fault });
        }
    }

    fn apply(&mut self, effect: Effect, now: Instant) {
        match effect {
            Effect::None => {}
            Effect::Hold => self.hold(),
            Effect::FreezeAtMeasured => {
                self.setpoint = self
                    .supervisor
                    .clamp_to_limits(&self.arm.joint_state().arm_positions_rad());
                self.hold();
            }
            Effect::TorqueOff => self.torque(false),
            Effect::MoveToStart => self.move_to_start(now),
            Effect::MoveToPark => {
                self.ensure_torque();
                self.plan_move(SLEEP_POSE_RAD);
            }
            Effect::Jog { axis, positive } => self.jog(axis, positive),
            Effect::ToggleGripper => {
                let closed = !self.gripper.is_closed();
                self.gripper.set_closed(closed);
                self.status.interventions.jogs += 1;
            }
            Effect::RebootFaulted => self.reboot_faulted(),
            Effect::Resume => self.resume_after_park(),
        }
    }

    fn hold(&mut self) {
        self.target = self.setpoint;
        self.ticks_left = 0;
        self.planned = None;
        if self.setpoint != self.commanded_joints {
            // Stopped short of the commanded pose: the next delta applies to where we hold.
            self.commanded_joints = self.setpoint;
            self.commanded = CommandedPose::from_joints(&self.setpoint);
        }
    }

    fn torque(&mut self, enabled: bool) {
        if self.bus_lost {
            return;
        }
        match self.arm.set_torque(enabled, None) {
            Ok(()) => self.torque_on = enabled,
            Err(e @ widowx_driver::DriverError::TorqueOffUnconfirmed { .. }) => {
                // Every servo but the named ones is off: the arm is no longer held.
                self.torque_on = false;
                self.event(ControlEvent::DriverFailed {
                    what: "torque off",
                    servo: e.servo(),
                });
            }
            Err(e) => {
                // Torque-off errors from a faulted servo are warnings in the driver; anything
                // else is reported and the state assumed unchanged.
                let servo = e.servo();
                self.event(ControlEvent::DriverFailed {
                    what: if enabled { "torque on" } else { "torque off" },
                    servo,
                });
            }
        }
        if enabled {
            // Torque-on sets each goal to where the servo is: hold exactly there.
            self.setpoint = self
                .supervisor
                .clamp_to_limits(&self.arm.joint_state().arm_positions_rad());
            self.hold();
            self.gripper_written = None;
        }
    }

    fn ensure_torque(&mut self) {
        if !self.torque_on {
            let _ = self.arm.read_joint_state();
            self.torque(true);
        }
    }

    fn move_to_start(&mut self, now: Instant) {
        self.status.resume_requested = false;
        self.ensure_torque();
        self.faulted = [false; ARM_JOINTS];
        self.gripper.set_closed(false);
        let w = &self.config.workspace;
        let start = CommandedPose::from_xyz_rpy(w.start_xyz_m, w.start_rpy_rad);
        match self.mapper.solve(&start, &BRIDGE_NEUTRAL_POSE_RAD) {
            Ok(joints) => {
                self.plan_move(joints);
                self.commanded = start;
                self.commanded_joints = joints;
            }
            Err(_) => self.on_fault(Fault::StartUnreachable, now),
        }
    }

    /// A joint-space move to `goal` at the reset speed, checked for arrival.
    fn plan_move(&mut self, goal: [f64; ARM_JOINTS]) {
        let (_, distance_rad) = crate::action::largest_change(&self.setpoint, &goal);
        let duration_s = (distance_rad / self.config.control.reset_speed_rad_s).max(0.2);
        self.set_target(goal, duration_s);
        self.planned = Some(PlannedMove { deadline: None });
    }

    fn set_target(&mut self, goal: [f64; ARM_JOINTS], duration_s: f64) {
        self.target = self.supervisor.clamp_to_limits(&goal);
        let ticks = (duration_s / self.config.control.control_period_s).round();
        self.ticks_left = ticks.clamp(1.0, 1e6) as u32;
    }

    fn jog(&mut self, axis: Axis, positive: bool) {
        let step_m = self.mapper.jog_step_m() * if positive { 1.0 } else { -1.0 };
        let mut delta_m = [0.0; 3];
        delta_m[axis as usize] = step_m;
        match self
            .mapper
            .jog(&self.commanded, &self.commanded_joints, delta_m)
        {
            Ok(step) => {
                self.commanded = step.pose;
                self.commanded_joints = step.joints_rad;
                self.set_target(step.joints_rad, self.config.control.jog_move_time_s);
                self.status.interventions.jogs += 1;
            }
            Err(refused) => self.event(ControlEvent::StepRefused { refused, jog: true }),
        }
    }

    /// Space after a park: the runtime may run again, unless a servo still reports a hardware
    /// error (b reboots it first).
    fn resume_after_park(&mut self) {
        let still_faulted = self.faulted.iter().position(|&f| f);
        match still_faulted {
            Some(index) => self.event(ControlEvent::ResumeRefused {
                joint: widowx::joints::Joint::ALL[index],
            }),
            None => self.status.resume_requested = true,
        }
    }

    fn reboot_faulted(&mut self) {
        let errors = match self.arm.hardware_errors() {
            Ok(errors) => errors,
            Err(e) => {
                self.event(ControlEvent::DriverFailed {
                    what: "reading Hardware_Error_Status",
                    servo: e.servo(),
                });
                return;
            }
        };
        let mut any = false;
        for (servo, faults) in errors {
            if faults.is_empty() {
                continue;
            }
            any = true;
            let ok = self.arm.reboot(servo.id).is_ok();
            if ok && let Some(index) = servo.joint.and_then(|j| j.arm_index()) {
                self.faulted[index] = false;
            }
            self.event(ControlEvent::Rebooted { servo, ok });
        }
        if !any {
            self.event(ControlEvent::NothingToReboot);
        }
    }

    /// Applies the policy's newest action if it is new and for this episode.
    fn take_action(&mut self, now: Instant) {
        let (version, action) = self.links.actions.get_versioned();
        if version == self.last_action_version {
            return;
        }
        self.last_action_version = version;
        let Some(action) = action else { return };
        if action.episode != self.status.episode || action.frame_captured_at < self.running_since {
            return; // stale: from another episode, or computed before a pause
        }
        self.last_action_at = now;
        match self
            .mapper
            .apply(&self.commanded, &self.commanded_joints, &action.action)
        {
            Ok(step) => {
                self.commanded = step.pose;
                self.commanded_joints = step.joints_rad;
                self.set_target(step.joints_rad, self.config.control.move_time_s);
                if step.clipped != Clipped::default() {
                    self.event(ControlEvent::Clipped {
                        step: action.step,
                        clipped: step.clipped,
                    });
                }
            }
            Err(StepRefused::NonFinite { index }) => {
                self.on_fault(Fault::NonFiniteAction { index }, now);
                return;
            }
            Err(refused) => self.event(ControlEvent::StepRefused {
                refused,
                jog: false,
            }),
        }
        // The gripper follows even when the arm part was refused (it needs no IK).
        self.gripper.update(action.action.gripper);
        self.status.steps_applied += 1;
        self.event(ControlEvent::ActionApplied {
            episode: action.episode,
            step: action.step,
            frame_to_command_s: now
                .saturating_duration_since(action.frame_captured_at)
                .as_secs_f64(),
        });
    }

    fn supervise(&mut self, now: Instant) {
        let mode = self.machine.mode();
        let last_frame_at = self
            .links
            .frames
            .get()
            .map_or(self.running_since, |t| t.max(self.running_since));
        let state = *self.arm.joint_state();
        let mut setpoint = self.setpoint;
        for (i, faulted) in self.faulted.iter().enumerate() {
            if *faulted {
                setpoint[i] = state.positions_rad[i]; // a faulted joint is not expected to follow
            }
        }
        let view = TickView {
            mode,
            now,
            state: &state,
            setpoint_rad: &setpoint,
            last_action_at: self.last_action_at,
            last_frame_at,
        };
        if let Some(fault) = self.supervisor.check(&view) {
            self.on_fault(fault, now);
        }
    }

    fn check_planned_move(&mut self, now: Instant, fresh: bool) {
        let Some(mut planned) = self.planned else {
            return;
        };
        if !matches!(self.machine.mode(), Mode::MovingToStart | Mode::Parking) {
            self.planned = None;
            return;
        }
        let state = self.arm.joint_state();
        let (joint, error_rad) = (0..ARM_JOINTS)
            .filter(|&i| !self.faulted[i])
            .map(|i| (i, (state.positions_rad[i] - self.target[i]).abs()))
            .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
        let setpoint_arrived = self.ticks_left == 0 && self.setpoint == self.target;
        if setpoint_arrived && planned.deadline.is_none() {
            let timeout = Duration::from_secs_f64(self.config.control.reach_timeout_s);
            planned.deadline = Some(now + timeout);
            self.planned = Some(planned);
        }
        let arrived = setpoint_arrived && error_rad <= self.config.control.reached_tolerance_rad;
        if fresh && arrived {
            self.planned = None;
            self.input(Input::Reached, None, now);
        } else if planned.deadline.is_some_and(|deadline| now > deadline) {
            self.planned = None;
            let joint = widowx::joints::Joint::ALL[joint];
            self.on_fault(Fault::NotReached { joint, error_rad }, now);
        }
    }

    fn advance_setpoint(&mut self) {
        let interpolated: [f64; ARM_JOINTS] = if self.ticks_left > 0 {
            let n = f64::from(self.ticks_left);
            self.ticks_left -= 1;
            std::array::from_fn(|i| self.setpoint[i] + (self.target[i] - self.setpoint[i]) / n)
        } else {
            self.target
        };
        let (next, _) = self.supervisor.limit_step(&self.setpoint, &interpolated);
        self.setpoint = next;
    }

    fn write(&mut self) {
        if self.bus_lost || !self.torque_on || !self.machine.mode().torque_on() {
            return;
        }
        let now = Instant::now();
        match self
            .arm
            .write_joint_goals(&self.setpoint, self.config.control.servo_move_time_s)
        {
            Ok(()) => {}
            Err(DriverError::GoalOutOfRange { servo, .. }) => {
                let joint = servo.joint.unwrap_or(widowx::joints::Joint::Waist);
                self.setpoint = self
                    .supervisor
                    .clamp_to_limits(&self.arm.joint_state().arm_positions_rad());
                self.on_fault(Fault::GoalRefused { joint }, now);
            }
            Err(DriverError::Io { .. } | DriverError::Open { .. }) => {
                self.bus_lost = true;
                self.on_fault(Fault::BusLost, now);
            }
            Err(e) => self.event(ControlEvent::DriverFailed {
                what: "goal write",
                servo: e.servo(),
            }),
        }
        self.write_gripper();
    }

    fn write_gripper(&mut self) {
        let closed = self.gripper.is_closed();
        if self.gripper_written == Some(closed) {
            return;
        }
        self.gripper_written = Some(closed);
        let result = if closed {
            self.arm.gripper_close()
        } else {
            self.arm.gripper_open()
        };
        match result {
            Ok(()) => self.event(ControlEvent::Gripper { closed }),
            Err(e) => self.event(ControlEvent::DriverFailed {
                what: if closed {
                    "gripper close"
                } else {
                    "gripper open"
                },
                servo: e.servo(),
            }),
        }
    }

    fn publish(&mut self, now: Instant, fresh: bool) {
        let s = &mut self.status;
        s.mode = self.machine.mode();
        s.quit_requested = self.machine.quit_requested();
        s.at = now;
        s.state = *self.arm.joint_state();
        s.state_fresh = fresh;
        s.setpoint_rad = self.setpoint;
        s.commanded = self.commanded;
        s.gripper_closed = self.gripper.is_closed();
        s.ticks += 1;
        self.links.status.put(self.status);
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use widowx_driver::JointState;

    /// A status snapshot for formatting tests.
    pub fn status(state: JointState) -> ControlStatus {
        ControlStatus::initial(Instant::now(), state, [0.0; ARM_JOINTS])
    }
}
