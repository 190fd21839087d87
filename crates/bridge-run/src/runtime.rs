//! The runtime: the thread graph of [`crate::graph`] started, and the episode API used by the
//! `bridge-run` binary and by `bridge-sim eval` (so evaluation runs the same code path).
//!
//! No process-global state: each [`Runtime`] owns its threads and channels, so several can run
//! in one process (tests do) and episodes run back to back on one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bridge_data::Outcome;
use bridge_data::provenance::{Collection, Collector};
use camera::FrameSource;
use camera::preprocess::ModelView;
use crossbeam_channel::{Receiver, Sender};
use widowx_driver::Arm;

use crate::clock;
use crate::config::RuntimeConfig;
use crate::error::RunError;
use crate::frames::FrameSlot;
use crate::graph::{self, Graph, GraphSettings, PartialStart, Threads};
use crate::mailbox::Mailbox;
use crate::messages::{
    ControlRequest, ControlStatus, EpisodeDone, EpisodeLog, MonitorMsg, PolicyReport,
    PolicyRequest, PolicyStatus, RecordingPlan, ResetDone, StepRecord,
};
use crate::modes::{EpisodeEnd, Mode, OperatorCommand};
use crate::monitor::StatusSink;
use crate::policy::{GoalImage, Policy};
use crate::record::{EpisodeRecord, RunRecord, recorded_outcome};
use crate::recorder::Recorder;
use crate::report::{EpisodeTrace, write_report};
use crate::supervisor::Fault;

/// Front-end settings that are not part of the configuration file.
pub struct RuntimeOptions {
    /// Where the status line is drawn (a terminal); `None`: no status line.
    pub status_line: Option<StatusSink>,
    /// How often the status line is redrawn. Default 0.25 s.
    pub status_interval: Duration,
    /// Messages the recorder queue holds before it drops (and closes the episode). Default 256.
    pub recorder_queue_len: usize,
    /// What the recordings come from, written into the session's `collection.toml`
    /// (`bridge_data::provenance`). Default a robot; `--sim` runs say simulator.
    pub collector: Collector,
    /// The checkpoint and command line, saved with every recorded episode.
    pub run_record: RunRecord,
    /// Episodes the run will ask for, shown as "episode k/N" on the status line.
    pub episodes_planned: Option<u64>,
    /// The session's folder under `episode.recording_dir`, Bridge's task level of
    /// `<task>/00/<date_time>/raw/traj_group0/traj<N>`. Default "bridge-run".
    pub session_folder: String,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            status_line: None,
            status_interval: Duration::from_millis(250),
            recorder_queue_len: 256,
            collector: Collector::Robot,
            run_record: RunRecord::default(),
            episodes_planned: None,
            session_folder: "bridge-run".into(),
        }
    }
}

/// What happened in one episode.
#[derive(Debug, Clone)]
pub struct EpisodeReport {
    /// 1-based episode number of this runtime.
    pub episode: u64,
    /// Policy steps taken.
    pub steps: usize,
    /// How it ended; `None` when it never started (the reset did not complete).
    pub end: Option<EpisodeEnd>,
    /// The safety fault that ended it (or stopped the reset).
    pub fault: Option<Fault>,
    /// One sentence for the operator: how it ended and why.
    pub summary: String,
    /// Mode when the episode was over.
    pub final_mode: Mode,
    /// Bridge state `[x, y, z, roll, pitch, yaw, gripper]` at the end.
    pub final_state: [f64; 7],
    /// Learned distance to the goal per step.
    pub distances: Vec<f32>,
    pub inference_s: Vec<f64>,
    pub frame_to_command_s: Vec<f64>,
    pub control_period_s: Vec<f64>,
    /// Every logged event of the episode, `+seconds  text`.
    pub events: Vec<String>,
    /// Safety events only.
    pub safety_events: Vec<String>,
    /// The raw-layout trajectory directory, when recorded.
    pub recording: Option<PathBuf>,
    /// The run report directory, when written.
    pub report_dir: Option<PathBuf>,
}

impl EpisodeReport {
    /// Whether the operator asked to quit (q, Ctrl-C, SIGTERM) during it.
    pub fn quit_requested(&self) -> bool {
        self.end == Some(EpisodeEnd::Operator(OperatorCommand::Quit))
    }
}

/// The running threads (control, camera, policy, monitor, recorder; wired in [`crate::graph`])
/// and the episode API on top of them.
pub struct Runtime {
    config: RuntimeConfig,
    /// How the policy sees a frame; every goal must have been made the same way.
    input_view: camera::preprocess::ModelView,
    operator: Sender<OperatorCommand>,
    requests: Sender<ControlRequest>,
    policy_requests: Sender<PolicyRequest>,
    policy_reports: Receiver<PolicyReport>,
    monitor: Sender<MonitorMsg>,
    control_status: Mailbox<ControlStatus>,
    policy_status: Mailbox<PolicyStatus>,
    camera_stop: Arc<AtomicBool>,
    frames: FrameSlot,
    threads: Threads,
    recorder: Option<Recorder>,
    session_dir: PathBuf,
    collector: Collector,
    run_record: RunRecord,
    episodes_planned: Option<u64>,
    episodes: u64,
    /// When the current (or last) episode started; its trace's times count from here.
    episode_started_at: Instant,
    /// Write a run report for each episode (`episode.report`, or [`Runtime::set_write_reports`]).
    write_reports: bool,
}

/// Longest wait for a reset to the start pose, beyond its planned time.
const RESET_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the policy to take a goal (model upload to a GPU included).
const GOAL_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the park before stopping.
const PARK_TIMEOUT: Duration = Duration::from_secs(60);

impl Runtime {
    /// Starts every thread. The arm's torque goes on, holding where it is; nothing moves until
    /// [`Runtime::run_episode`] (or the operator) says so.
    pub fn start(
        config: RuntimeConfig,
        arm: Arm,
        camera: Box<dyn FrameSource>,
        policy: Box<dyn Policy>,
        options: RuntimeOptions,
    ) -> Result<Runtime, RunError> {
        config.validate().map_err(|reason| RunError::Config {
            path: PathBuf::from("(runtime configuration)"),
            reason,
        })?;
        let input_view = policy.input_view();
        let settings = GraphSettings {
            status_line: options.status_line,
            status_interval: options.status_interval,
            recorder_queue_len: config.episode.record.then_some(options.recorder_queue_len),
        };
        let starting = format!("starting; arm {arm}");
        let note_start = |monitor: &Sender<MonitorMsg>| {
            let _ = monitor.send(MonitorMsg::Note {
                at: Instant::now(),
                source: "runtime",
                text: starting,
                safety: false,
            });
        };
        let front = FrontEnd {
            collector: options.collector,
            run_record: options.run_record,
            episodes_planned: options.episodes_planned,
            session_folder: options.session_folder,
        };
        let runtime = |graph| Runtime::from_graph(config.clone(), input_view, front.clone(), graph);
        match graph::spawn(&config, arm, camera, policy, settings, note_start) {
            Ok(graph) => Ok(runtime(graph)),
            Err(partial) => {
                // Stop (and park) what did start before giving up.
                let PartialStart { error, started } = *partial;
                drop(started.map(runtime));
                Err(error)
            }
        }
    }

    fn from_graph(
        config: RuntimeConfig,
        input_view: ModelView,
        front: FrontEnd,
        graph: Graph,
    ) -> Runtime {
        Runtime {
            session_dir: session_dir(&config.episode.recording_dir, &front.session_folder),
            write_reports: config.episode.report,
            config,
            input_view,
            operator: graph.operator,
            requests: graph.requests,
            policy_requests: graph.policy_requests,
            policy_reports: graph.policy_reports,
            monitor: graph.monitor,
            control_status: graph.control_status,
            policy_status: graph.policy_status,
            camera_stop: graph.camera_stop,
            frames: graph.frames,
            threads: graph.threads,
            recorder: graph.recorder,
            collector: front.collector,
            run_record: front.run_record,
            episodes_planned: front.episodes_planned,
            episodes: 0,
            episode_started_at: Instant::now(),
        }
    }

    /// Where operator commands go (what the keyboard thread sends; tests inject through it).
    pub fn commands(&self) -> Sender<OperatorCommand> {
        self.operator.clone()
    }

    /// The control thread's newest snapshot.
    pub fn status(&self) -> ControlStatus {
        self.control_status.get()
    }

    /// A handle on the control thread's snapshots that other threads can hold while an
    /// episode runs (a watchdog, a test injecting faults, an evaluation harness).
    pub fn status_watch(&self) -> Mailbox<ControlStatus> {
        self.control_status.clone()
    }

    /// The camera's newest frame, waiting up to `wait` for one captured after this call (a
    /// goal capture wants a frame of the scene as it is now); `None` when the camera delivered
    /// none at all.
    pub fn fresh_frame(&self, wait: Duration) -> Option<Arc<camera::Frame>> {
        let newest = self.frames.latest();
        self.frames.next_after(newest.as_ref(), wait).or(newest)
    }

    /// What the policy thread last did.
    pub fn policy_status(&self) -> PolicyStatus {
        self.policy_status.get()
    }

    /// Whether the next episodes get a run report (default: the configuration's
    /// `episode.report`). An evaluation keeps reports of a few episodes only, and saves the
    /// time of the others.
    pub fn set_write_reports(&mut self, on: bool) {
        self.write_reports = on;
    }

    /// The configuration the runtime runs with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Where this runtime's recordings and reports go (`<recording_dir>/<session_folder>/00/<date_time>`).
    pub fn session_dir(&self) -> &Path {
        &self.session_dir
    }

    fn note(&self, source: &'static str, text: String, safety: bool) {
        let _ = self.monitor.send(MonitorMsg::Note {
            at: Instant::now(),
            source,
            text,
            safety,
        });
    }

    /// Resets to the start pose, runs one episode toward `goal` for at most `max_steps` policy
    /// steps (or until the operator or the supervisor stops it), holds, and returns what
    /// happened. The goal must match the policy's input size; nothing moves otherwise.
    pub fn run_episode(
        &mut self,
        goal: &GoalImage,
        max_steps: usize,
    ) -> Result<EpisodeReport, RunError> {
        self.check_goal(goal)?;
        let status = self.status();
        if status.quit_requested {
            return Err(RunError::Stopped { mode: status.mode });
        }
        self.episodes += 1;
        let episode = self.episodes;
        let started_at = Instant::now();
        self.episode_started_at = started_at;
        let _ = self.monitor.send(MonitorMsg::EpisodeStart {
            episode,
            at: started_at,
            planned: self.episodes_planned,
        });
        while self.policy_reports.try_recv().is_ok() {}
        if let Some(report) = self.reset(episode)? {
            return Ok(report);
        }
        let recording = self.recording_plan(episode, goal);
        self.policy_requests
            .send(PolicyRequest::Start {
                episode,
                goal: goal.clone(),
                max_steps,
                recording,
                keep_frames: self.write_reports,
            })
            .map_err(|_| gone("policy"))?;
        self.wait_policy_started(episode, goal)?;
        let (done, ended) = crossbeam_channel::bounded(1);
        self.requests
            .send(ControlRequest::Begin { episode, done })
            .map_err(|_| gone("control"))?;
        let (mut trace, outcome) = self.drive(episode, goal, &ended)?;
        let stopped = self.stop_policy(episode, &mut trace, recorded_outcome(&outcome))?;
        self.finish_episode(episode, trace, stopped, outcome)
    }

    fn check_goal(&self, goal: &GoalImage) -> Result<(), RunError> {
        let expected_len = (goal.size_px as usize).pow(2) * 3;
        if goal.size_px != self.input_view.size_px {
            return Err(RunError::Goal {
                path: goal.path.clone(),
                reason: format!(
                    "squashed to {} px, but the policy's input is {} px; load the goal with the policy's input view",
                    goal.size_px, self.input_view.size_px
                ),
            });
        }
        if goal.crop != self.input_view.crop {
            return Err(RunError::Goal {
                path: goal.path.clone(),
                reason: format!(
                    "made from {}, but the policy was trained on {}; load the goal with the policy's input view",
                    camera::preprocess::describe_crop(goal.crop),
                    camera::preprocess::describe_crop(self.input_view.crop)
                ),
            });
        }
        if goal.model_rgb.len() != expected_len {
            return Err(RunError::Goal {
                path: goal.path.clone(),
                reason: format!(
                    "holds {} bytes, expected {expected_len} ({} x {} x 3)",
                    goal.model_rgb.len(),
                    goal.size_px,
                    goal.size_px
                ),
            });
        }
        Ok(())
    }

    /// Moves to the start pose; `Some(report)` when the reset did not complete.
    fn reset(&mut self, episode: u64) -> Result<Option<EpisodeReport>, RunError> {
        let (done, answer) = crossbeam_channel::bounded(1);
        self.requests
            .send(ControlRequest::Reset { episode, done })
            .map_err(|_| gone("control"))?;
        match self.wait_reply(&answer, "the reset to the start pose", RESET_TIMEOUT)? {
            ResetDone::Ready => Ok(None),
            ResetDone::Failed { mode, fault } => {
                let why =
                    fault.map_or_else(|| format!("the arm is in mode {mode}"), |f| f.to_string());
                let summary = format!(
                    "episode {episode} did not start: reset to the start pose failed: {why}"
                );
                self.note("runtime", summary.clone(), true);
                let status = self.status();
                Ok(Some(self.unstarted_report(episode, summary, status)))
            }
        }
    }

    /// Waits for the control thread's answer on `answer`, checking that the thread lives.
    fn wait_reply<T>(
        &self,
        answer: &Receiver<T>,
        what: &'static str,
        timeout: Duration,
    ) -> Result<T, RunError> {
        let deadline = Instant::now() + timeout;
        loop {
            match answer.recv_timeout(Duration::from_millis(50)) {
                Ok(reply) => return Ok(reply),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(gone("control"));
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
            self.check_control_alive()?;
            if Instant::now() > deadline {
                return Err(RunError::Timeout {
                    what,
                    timeout_s: timeout.as_secs_f64(),
                    mode: self.status().mode,
                });
            }
        }
    }

    fn unstarted_report(
        &mut self,
        episode: u64,
        summary: String,
        status: ControlStatus,
    ) -> EpisodeReport {
        let log = self.take_episode_log();
        EpisodeReport {
            episode,
            steps: 0,
            end: None,
            fault: status.last_fault,
            summary,
            final_mode: status.mode,
            final_state: status.bridge_state(),
            distances: Vec::new(),
            inference_s: Vec::new(),
            frame_to_command_s: log.frame_to_command_s,
            control_period_s: log.control_period_s,
            events: log.events,
            safety_events: log.safety_events,
            recording: None,
            report_dir: None,
        }
    }

    fn recording_plan(&self, episode: u64, goal: &GoalImage) -> Option<RecordingPlan> {
        self.recorder.as_ref()?;
        let marker = Collection {
            source: self.collector,
        };
        if let Err(e) = marker.write(&self.session_dir) {
            // The recording itself may still work; `prepare` would count it as a robot's.
            self.note(
                "recorder",
                format!("provenance marker not written: {e}"),
                true,
            );
        }
        let dir = self
            .session_dir
            .join("raw")
            .join("traj_group0")
            .join(format!("traj{}", episode - 1));
        let record = EpisodeRecord {
            run: &self.run_record,
            config: &self.config,
            goal,
        };
        if let Err(e) = record.write(&dir) {
            self.note("recorder", format!("episode record not written: {e}"), true);
        }
        Some(RecordingPlan {
            dir,
            language: self.config.episode.language.clone(),
        })
    }

    fn wait_policy_started(&mut self, episode: u64, goal: &GoalImage) -> Result<(), RunError> {
        let deadline = Instant::now() + GOAL_TIMEOUT;
        loop {
            match self.policy_reports.recv_deadline(deadline) {
                Ok(PolicyReport::Started { episode: e, result }) if e == episode => {
                    return result.map_err(|reason| RunError::Goal {
                        path: goal.path.clone(),
                        reason,
                    });
                }
                Ok(_) => {}
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    return Err(RunError::Timeout {
                        what: "setting the policy's goal",
                        timeout_s: GOAL_TIMEOUT.as_secs_f64(),
                        mode: self.status().mode,
                    });
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(gone("policy"));
                }
            }
        }
    }

    /// Collects policy steps until the control thread answers that the episode ended (or
    /// never began).
    fn drive(
        &mut self,
        episode: u64,
        goal: &GoalImage,
        ended: &Receiver<EpisodeDone>,
    ) -> Result<(EpisodeTrace, EpisodeDone), RunError> {
        let mut trace = EpisodeTrace {
            goal_model_rgb: goal.model_rgb.clone(),
            size_px: goal.size_px,
            goal_frame: Some(std::sync::Arc::clone(&goal.frame)),
            goal: goal.path.display().to_string(),
            run: self.run_record.clone(),
            ..EpisodeTrace::default()
        };
        loop {
            crossbeam_channel::select! {
                recv(self.policy_reports) -> report => match report {
                    Ok(PolicyReport::Step(step)) if step.episode == episode => {
                        push_step(&mut trace, step, self.episode_started_at);
                    }
                    Ok(PolicyReport::Finished { episode: e, .. }) if e == episode => {
                        // Let the last step's move finish before holding.
                        std::thread::sleep(Duration::from_secs_f64(self.config.control.move_time_s));
                        let _ = self.requests.send(ControlRequest::Complete { episode });
                    }
                    Ok(_) => {}
                    Err(_) => return Err(gone("policy")),
                },
                recv(ended) -> outcome => match outcome {
                    Ok(outcome) => return Ok((trace, outcome)),
                    Err(_) => return Err(gone("control")),
                },
                default(Duration::from_millis(100)) => self.check_control_alive()?,
            }
        }
    }

    fn stop_policy(
        &mut self,
        episode: u64,
        trace: &mut EpisodeTrace,
        outcome: Outcome,
    ) -> Result<Stopped, RunError> {
        self.policy_requests
            .send(PolicyRequest::Stop { episode, outcome })
            .map_err(|_| gone("policy"))?;
        let deadline = Instant::now() + GOAL_TIMEOUT;
        loop {
            match self.policy_reports.recv_deadline(deadline) {
                Ok(PolicyReport::Step(step)) if step.episode == episode => {
                    push_step(trace, step, self.episode_started_at);
                }
                Ok(PolicyReport::Stopped {
                    episode: e,
                    steps,
                    recording,
                }) if e == episode => return Ok(Stopped { steps, recording }),
                Ok(_) => {}
                Err(_) => return Err(gone("policy")),
            }
        }
    }

    /// The monitor's log of the episode so far (every message sent before this is in it).
    fn take_episode_log(&self) -> EpisodeLog {
        let (reply, log) = crossbeam_channel::bounded(1);
        if self
            .monitor
            .send(MonitorMsg::TakeEpisodeLog(reply))
            .is_err()
        {
            return EpisodeLog::default();
        }
        log.recv_timeout(Duration::from_secs(5)).unwrap_or_default()
    }

    fn finish_episode(
        &mut self,
        episode: u64,
        mut trace: EpisodeTrace,
        stopped: Stopped,
        outcome: EpisodeDone,
    ) -> Result<EpisodeReport, RunError> {
        let status = self.status();
        let (end, fault) = match outcome {
            EpisodeDone::Ended(record) => (Some(record.end), record.fault),
            EpisodeDone::NotBegun { .. } => (None, None),
        };
        let summary = episode_summary(episode, stopped.steps, end, fault.as_ref(), status.mode);
        self.note("runtime", summary.clone(), fault.is_some());
        if let Some(recorder) = &self.recorder {
            if !recorder.wait_until_written(Duration::from_secs(10)) {
                self.note(
                    "recorder",
                    "recording not fully written within 10 s".into(),
                    true,
                );
            }
            for e in recorder.take_errors() {
                self.note("recorder", format!("recording: {e}"), true);
            }
        }
        let log = self.take_episode_log();
        trace.frame_to_command_s = log.frame_to_command_s.clone();
        trace.control_period_s = log.control_period_s.clone();
        trace.events = log.timed_events.clone();
        trace.ending = Some(summary.clone());
        let report_dir = self.write_episode_report(episode, &trace);
        Ok(EpisodeReport {
            episode,
            steps: stopped.steps,
            end,
            fault,
            summary,
            final_mode: status.mode,
            final_state: status.bridge_state(),
            distances: trace.distances,
            inference_s: trace.inference_s,
            frame_to_command_s: log.frame_to_command_s,
            control_period_s: log.control_period_s,
            events: log.events,
            safety_events: log.safety_events,
            recording: stopped.recording,
            report_dir,
        })
    }

    fn write_episode_report(&self, episode: u64, trace: &EpisodeTrace) -> Option<PathBuf> {
        if !self.write_reports {
            return None;
        }
        let dir = self
            .session_dir
            .join("reports")
            .join(format!("traj{}", episode - 1));
        match write_report(&dir, trace) {
            Ok(()) => Some(dir),
            Err(e) => {
                self.note("report", format!("run report not written: {e}"), false);
                None
            }
        }
    }

    fn check_control_alive(&self) -> Result<(), RunError> {
        match &self.threads.control {
            Some(handle) if !handle.is_finished() => Ok(()),
            _ => Err(gone("control")),
        }
    }

    /// Parks the arm (unless it is parked, or the operator cut torque), turns torque off, and
    /// stops every thread. An error says why the arm could not be parked.
    pub fn park_and_stop(mut self) -> Result<(), RunError> {
        self.shutdown()
    }

    /// No operator can answer a hold after a fault (no keyboard) and the configured hold time
    /// is over: cut torque where the arm stands (the only way out that does not move it). Waits
    /// until the control thread reports torque off, at most `timeout`.
    pub fn cut_torque_unattended(&self, timeout: Duration) -> Result<(), RunError> {
        self.check_control_alive()?;
        let _ = self.requests.send(ControlRequest::Unattended);
        self.wait_for_mode(Mode::TorqueOff, "cutting torque", timeout)?;
        self.note(
            "runtime",
            "no operator: torque off where the arm stands (not parked)".to_string(),
            true,
        );
        Ok(())
    }

    /// The operator's `h`, for a harness that plays the operator (the simulator's evaluation):
    /// parks from a hold after a fault, and waits until parked, at most `timeout`.
    pub fn park_as_operator(&self, timeout: Duration) -> Result<(), RunError> {
        self.check_control_alive()?;
        let _ = self.commands().send(OperatorCommand::Park);
        self.wait_for_mode(Mode::Done, "parking", timeout)
    }

    /// After a park that ended an episode (a servo's hardware error), waits for the operator:
    /// space (once no servo reports an error; b reboots them) runs again, q quits. Nothing
    /// moves meanwhile. Waits as long as it takes; an error only when the control thread died.
    pub fn await_operator_after_park(&self) -> Result<AfterPark, RunError> {
        loop {
            let status = self.status();
            if status.quit_requested {
                return Ok(AfterPark::Quit);
            }
            if status.resume_requested {
                return Ok(AfterPark::Resume);
            }
            self.check_control_alive()?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the control thread reports `mode`; a timeout names `what` did not finish.
    fn wait_for_mode(
        &self,
        mode: Mode,
        what: &'static str,
        timeout: Duration,
    ) -> Result<(), RunError> {
        let deadline = Instant::now() + timeout;
        while self.status().mode != mode {
            self.check_control_alive()?;
            if Instant::now() > deadline {
                return Err(RunError::Timeout {
                    what,
                    timeout_s: timeout.as_secs_f64(),
                    mode: self.status().mode,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Logs why the arm was not parked, as a safety event, and returns it as the error.
    fn not_parked(&self, text: String) -> RunError {
        self.note("runtime", text.clone(), true);
        RunError::NotParked { reason: text }
    }

    fn shutdown(&mut self) -> Result<(), RunError> {
        let mut result = Ok(());
        let status = self.status();
        if self.threads.control.is_some() && status.mode.awaits_operator() {
            // After a fault only the operator moves the arm: leave it holding, torque on.
            result = Err(self.not_parked(format!(
                "not parked: the arm holds where it stopped with torque on ({}{}); only the operator moves it",
                status.mode,
                fault_suffix(&status, " after: ")
            )));
        } else if self.threads.control.is_some() {
            let _ = self.requests.send(ControlRequest::Shutdown);
            let deadline = Instant::now() + PARK_TIMEOUT;
            let status = loop {
                let status = self.status();
                let alive = self.check_control_alive().is_ok();
                if status.stopped() || !alive || Instant::now() > deadline {
                    break status;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            if status.mode != Mode::Done && status.mode != Mode::TorqueOff {
                result = Err(self.not_parked(format!(
                    "the arm could not be parked; it is in mode {}{}",
                    status.mode,
                    fault_suffix(&status, ": ")
                )));
            } else {
                self.note("runtime", format!("stopped in mode {}", status.mode), false);
            }
        }
        if self.threads.control.is_some() {
            let _ = self.requests.send(ControlRequest::Exit);
            if let Some(handle) = self.threads.control.take()
                && handle.join().is_err()
                && result.is_ok()
            {
                result = Err(gone("control"));
            }
        }
        let _ = self.policy_requests.send(PolicyRequest::Exit);
        if let Some(handle) = self.threads.policy.take() {
            let _ = handle.join();
        }
        self.camera_stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.threads.camera.take() {
            // A camera blocked in its driver may never return: wait a little, then leave it.
            let deadline = Instant::now() + Duration::from_secs(1);
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
        if let Some(recorder) = self.recorder.take() {
            match recorder.shutdown() {
                Ok(summary) => {
                    for e in summary.errors {
                        self.note("recorder", e, true);
                    }
                }
                Err(e) => self.note("recorder", format!("recorder: {e}"), true),
            }
        }
        let _ = self.monitor.send(MonitorMsg::Exit);
        if let Some(handle) = self.threads.monitor.take() {
            let _ = handle.join();
        }
        result
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Not stopped through park_and_stop (an error, a panic): park anyway.
        let _ = self.shutdown();
    }
}

/// The front end's settings a runtime keeps (from [`RuntimeOptions`]).
#[derive(Clone)]
struct FrontEnd {
    collector: Collector,
    run_record: RunRecord,
    episodes_planned: Option<u64>,
    session_folder: String,
}

/// What the operator chose after a park ([`Runtime::await_operator_after_park`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterPark {
    /// Space: run the episode again.
    Resume,
    /// q (or a signal): stop.
    Quit,
}

struct Stopped {
    steps: usize,
    recording: Option<PathBuf>,
}

/// `prefix` and the last fault of `status`, or nothing when there was none.
fn fault_suffix(status: &ControlStatus, prefix: &str) -> String {
    status
        .last_fault
        .map_or_else(String::new, |f| format!("{prefix}{f}"))
}

/// One policy step into the episode's trace.
fn push_step(trace: &mut EpisodeTrace, step: StepRecord, episode_started_at: Instant) {
    trace.distances.push(step.distance);
    trace.inference_s.push(step.inference_s);
    trace.observations_model_rgb.push(step.obs_model_rgb);
    trace.frames_jpeg.push(step.frame_jpeg);
    trace.step_times_s.push(
        step.captured_at
            .saturating_duration_since(episode_started_at)
            .as_secs_f64(),
    );
}

fn gone(thread: &'static str) -> RunError {
    RunError::ThreadGone {
        thread,
        detail: None,
    }
}

fn session_dir(root: &Path, folder: &str) -> PathBuf {
    root.join(folder)
        .join("00")
        .join(clock::folder_timestamp(clock::unix_time_s()))
}

/// One sentence on how an episode ended.
pub fn episode_summary(
    episode: u64,
    steps: usize,
    end: Option<EpisodeEnd>,
    fault: Option<&Fault>,
    mode: Mode,
) -> String {
    let how = match (end, fault) {
        (_, Some(fault)) => format!("stopped by the safety supervisor: {fault}"),
        (Some(EpisodeEnd::Completed), None) => "completed".to_string(),
        (Some(end), None) => format!("ended: {}", crate::monitor::describe_end(end)),
        (None, None) => "ended before the policy started".to_string(),
    };
    format!("episode {episode}: {steps} steps, {how}; arm {mode}")
}
