//! The runtime's thread graph, wired in one function (`spawn`): which thread holds which end
//! of which hand-off. The messages themselves are in [`crate::messages`].
//!
//! | thread | module | receives | sends |
//! |---|---|---|---|
//! | camera | `frames` | frames from the `FrameSource` | newest frame (slot), its capture time (mailbox) |
//! | policy | `policy_loop` | `PolicyRequest`s; newest frame; control status | action (mailbox), `PolicyReport`s, policy status (mailbox), `RecorderMsg`s |
//! | control | `control` | operator commands; `ControlRequest`s (with reply channels); action; frame time | control status (mailbox), `ResetDone` / `EpisodeDone` replies |
//! | recorder | [`crate::recorder`] | `RecorderMsg`s | files in the Bridge raw layout |
//! | monitor | [`crate::monitor`] | `MonitorMsg`s from every thread; both statuses; frame time | log file, status line, each episode's log (on request) |
//!
//! The runtime (the caller's thread) holds the other ends: it sends operator commands and
//! requests, reads the reports and the statuses, and waits on the replies. Every thread also
//! sends `MonitorMsg`s. Nothing on the control thread's path blocks: its inputs are mailboxes
//! and `try_recv`, its outputs mailboxes and `try_send`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::Instant;

use camera::FrameSource;
use crossbeam_channel::{Receiver, Sender};
use widowx_driver::Arm;

use crate::config::RuntimeConfig;
use crate::control::{self, ControlLinks};
use crate::error::RunError;
use crate::frames::{self, FrameSlot};
use crate::mailbox::Mailbox;
use crate::messages::{
    ControlRequest, ControlStatus, MonitorMsg, PolicyAction, PolicyReport, PolicyRequest,
    PolicyStatus,
};
use crate::modes::OperatorCommand;
use crate::monitor::{self, MonitorSetup, StatusSink};
use crate::policy::Policy;
use crate::policy_loop::{self, PolicyLinks};
use crate::recorder::Recorder;

/// Capacities of the bounded channels.
const MONITOR_QUEUE: usize = 4096;
const OPERATOR_QUEUE: usize = 64;
const CONTROL_REQUEST_QUEUE: usize = 16;
const POLICY_QUEUE: usize = 64;

/// How the graph is built, besides the configuration.
pub(crate) struct GraphSettings {
    pub status_line: Option<StatusSink>,
    pub status_interval: std::time::Duration,
    /// Recorder queue length; `None`: no recorder.
    pub recorder_queue_len: Option<usize>,
}

/// The runtime's ends of the graph, and the threads.
pub(crate) struct Graph {
    pub operator: Sender<OperatorCommand>,
    pub requests: Sender<ControlRequest>,
    pub policy_requests: Sender<PolicyRequest>,
    pub policy_reports: Receiver<PolicyReport>,
    pub monitor: Sender<MonitorMsg>,
    pub control_status: Mailbox<ControlStatus>,
    pub policy_status: Mailbox<PolicyStatus>,
    pub camera_stop: Arc<AtomicBool>,
    /// The newest camera frame (the policy thread holds the other handle).
    pub frames: FrameSlot,
    pub recorder: Option<Recorder>,
    pub threads: Threads,
}

/// The threads, taken one by one as the runtime stops them.
#[derive(Default)]
pub(crate) struct Threads {
    pub control: Option<JoinHandle<Arm>>,
    pub policy: Option<JoinHandle<()>>,
    pub camera: Option<JoinHandle<()>>,
    pub monitor: Option<JoinHandle<()>>,
}

/// A thread failed to start: why, and what did start (the caller stops it, parking the arm).
pub(crate) struct PartialStart {
    pub error: RunError,
    pub started: Option<Graph>,
}

impl PartialStart {
    fn of(error: RunError, started: Graph) -> Box<PartialStart> {
        Box::new(PartialStart {
            error,
            started: Some(started),
        })
    }
}

/// Creates every channel and mailbox and starts the threads: monitor first (so the others can
/// report from their first moment), then the recorder, control (the arm's torque goes on,
/// holding where it is), camera and policy. When one fails to start, the error carries the
/// threads already running, for the caller to stop.
pub(crate) fn spawn(
    config: &RuntimeConfig,
    arm: Arm,
    camera: Box<dyn FrameSource>,
    policy: Box<dyn Policy>,
    settings: GraphSettings,
    on_monitor_ready: impl FnOnce(&Sender<MonitorMsg>),
) -> Result<Graph, Box<PartialStart>> {
    let (monitor_tx, monitor_rx) = crossbeam_channel::bounded(MONITOR_QUEUE);
    let (operator_tx, operator_rx) = crossbeam_channel::bounded(OPERATOR_QUEUE);
    let (requests_tx, requests_rx) = crossbeam_channel::bounded(CONTROL_REQUEST_QUEUE);
    let (policy_req_tx, policy_req_rx) = crossbeam_channel::bounded(POLICY_QUEUE);
    // Unbounded: one report per policy step, drained by the runtime while an episode runs.
    let (policy_rep_tx, policy_rep_rx) = crossbeam_channel::unbounded();
    let frame_times: Mailbox<Option<Instant>> = Mailbox::new(None);
    let actions: Mailbox<Option<PolicyAction>> = Mailbox::new(None);
    let policy_status = Mailbox::new(PolicyStatus::default());
    // A placeholder until the control thread publishes the real state.
    let control_status = Mailbox::new(ControlStatus::placeholder(Instant::now()));
    let slot = FrameSlot::default();
    let camera_stop = Arc::new(AtomicBool::new(false));

    let mut graph = Graph {
        operator: operator_tx,
        requests: requests_tx,
        policy_requests: policy_req_tx,
        policy_reports: policy_rep_rx,
        monitor: monitor_tx.clone(),
        control_status: control_status.clone(),
        policy_status: policy_status.clone(),
        camera_stop: Arc::clone(&camera_stop),
        frames: slot.clone(),
        recorder: settings.recorder_queue_len.map(Recorder::spawn),
        threads: Threads::default(),
    };
    let monitor = monitor::spawn(MonitorSetup {
        messages: monitor_rx,
        log_file: Some(config.episode.log_file.clone()),
        status: control_status.clone(),
        policy: policy_status.clone(),
        frames: frame_times.clone(),
        status_line: settings.status_line,
        status_interval: settings.status_interval,
    });
    graph.threads.monitor = Some(monitor.map_err(|error| {
        Box::new(PartialStart {
            error,
            started: None,
        })
    })?);
    on_monitor_ready(&monitor_tx);
    let control_links = ControlLinks {
        operator: operator_rx,
        requests: requests_rx,
        monitor: monitor_tx.clone(),
        actions: actions.clone(),
        frames: frame_times.clone(),
        status: control_status.clone(),
    };
    match control::spawn(arm, config.clone(), control_links) {
        Ok(handle) => graph.threads.control = Some(handle),
        Err(error) => return Err(PartialStart::of(error, graph)),
    }
    let camera_thread = frames::spawn(
        camera,
        slot.clone(),
        frame_times,
        monitor_tx.clone(),
        camera_stop,
    );
    match camera_thread {
        Ok(handle) => graph.threads.camera = Some(handle),
        Err(error) => return Err(PartialStart::of(error, graph)),
    }
    let policy_links = PolicyLinks {
        requests: policy_req_rx,
        reports: policy_rep_tx,
        monitor: monitor_tx,
        frames: slot,
        control: control_status,
        actions,
        status: policy_status,
        recorder: graph.recorder.as_ref().map(Recorder::sender),
    };
    match policy_loop::spawn(policy, config, policy_links) {
        Ok(handle) => graph.threads.policy = Some(handle),
        Err(error) => return Err(PartialStart::of(error, graph)),
    }
    Ok(graph)
}
