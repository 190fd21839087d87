//! The recorder thread: episodes on disk in the BridgeData V2 raw layout, written off the
//! realtime threads.
//!
//! Callers send [`RecorderMsg`]s through a [`RecorderSender`], which never blocks: when the
//! bounded queue is full the message is dropped and counted. The thread writes each episode with
//! [`bridge_data::raw::RawEpisodeWriter`] and flushes the pickles after every action, so a crash
//! leaves an episode that loads with every step up to the last action.
//!
//! A dropped message would misalign observations and actions, so an episode that loses one is
//! closed at that point (what is on disk stays consistent and loadable) and the rest of it is
//! skipped; [`RecorderError::Truncated`] says so. Every episode closes with an end record
//! (`agent_data.pkl`): completed only on [`RecorderMsg::EndEpisode`] with
//! [`Outcome::Completed`]; truncated, replaced or shut-down episodes say they were aborted.
//! Write errors (disk full, permission) are reported through [`Recorder::take_errors`] and the
//! summary; the thread never panics on them.
//!
//! ```no_run
//! use bridge_run::messages::RecorderMsg;
//! use bridge_run::recorder::Recorder;
//! let recorder = Recorder::spawn(64);
//! let tx = recorder.sender();
//! tx.try_send(RecorderMsg::StartEpisode { dir: "rec/traj0".into(), language: None });
//! // ... Observation, Action, Observation, Action, ...
//! tx.try_send(RecorderMsg::EndEpisode(bridge_data::Outcome::Completed));
//! let summary = recorder.shutdown().expect("recorder thread");
//! println!("{} episodes, {} messages dropped", summary.episodes.len(), summary.dropped);
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bridge_data::raw::{RawEpisodeWriter, RawError};
use bridge_data::{Outcome, StepKind};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use widowx::bridge::BridgeAction;

use crate::messages::RecorderMsg;

/// What went wrong while recording. None of these stops the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// Creating or writing a trajectory directory failed (disk full, permission, ...).
    #[error("recording {dir}: {source}")]
    Write {
        dir: PathBuf,
        // Boxed: RawError is large and this error travels through channels and results.
        #[source]
        source: Box<RawError>,
    },
    /// Messages of this episode were dropped (queue full); the episode was closed consistently.
    #[error(
        "recording {dir}: stopped after {observations} observations and {actions} actions because \
         the recorder queue was full and messages were dropped; the rest of the episode is not recorded"
    )]
    Truncated {
        dir: PathBuf,
        observations: usize,
        actions: usize,
    },
    /// The recorder thread could not be started.
    #[error("cannot start the recorder thread: {0}")]
    Spawn(std::io::Error),
    /// The recorder thread panicked or vanished.
    #[error("the recorder thread ended unexpectedly")]
    ThreadLost,
}

/// What the recorder did, returned by [`Recorder::shutdown`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecorderSummary {
    /// Trajectory directories written (including truncated ones), in order.
    pub episodes: Vec<PathBuf>,
    /// Observations and actions written.
    pub observations: u64,
    pub actions: u64,
    /// Messages the thread received (written, skipped or ignored).
    pub received: u64,
    /// Messages dropped because the queue was full (never received).
    pub dropped: u64,
    /// Messages skipped: sent outside an open episode, or after the open one failed.
    pub skipped: u64,
    /// Every error reported, in order (also delivered by [`Recorder::take_errors`]).
    pub errors: Vec<String>,
}

#[allow(clippy::large_enum_variant)] // see RecorderMsg
enum Control {
    Msg(RecorderMsg),
    /// Acknowledge once everything queued before it is processed.
    Sync(Sender<()>),
    Shutdown,
}

struct Envelope {
    control: Control,
    /// The drop counter when the message was sent: a change between two messages means
    /// something in between was lost.
    drops_before: u64,
}

/// Queues messages for the recorder thread; cheap to clone, never blocks.
#[derive(Clone)]
pub struct RecorderSender {
    tx: Sender<Envelope>,
    dropped: Arc<AtomicU64>,
}

impl RecorderSender {
    /// Queues `msg`; returns false (and counts it) when the queue is full or the recorder is gone.
    pub fn try_send(&self, msg: RecorderMsg) -> bool {
        let envelope = Envelope {
            control: Control::Msg(msg),
            drops_before: self.dropped.load(Ordering::Acquire),
        };
        match self.tx.try_send(envelope) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::AcqRel);
                false
            }
        }
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Acquire)
    }
}

/// The recorder thread and its queue.
pub struct Recorder {
    sender: RecorderSender,
    errors: Receiver<RecorderError>,
    thread: Option<JoinHandle<RecorderSummary>>,
    spawn_error: Option<std::io::Error>,
}

impl Recorder {
    /// Starts the thread with a queue of `queue_len` messages (at least 1). At 5 Hz with one
    /// observation and one action per step, 64 gives the disk about 6 s of slack.
    pub fn spawn(queue_len: usize) -> Recorder {
        let (tx, rx) = crossbeam_channel::bounded(queue_len.max(1));
        let (errors_tx, errors) = crossbeam_channel::unbounded();
        let sender = RecorderSender {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        let dropped = Arc::clone(&sender.dropped);
        let spawned = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || Worker::new(errors_tx).run(&rx, &dropped));
        // A thread that cannot start leaves a recorder that drops every message and says why
        // at shutdown: recording must not stop the arm.
        let (thread, spawn_error) = match spawned {
            Ok(handle) => (Some(handle), None),
            Err(e) => (None, Some(e)),
        };
        Recorder {
            sender,
            errors,
            thread,
            spawn_error,
        }
    }

    /// A handle for the threads that record.
    pub fn sender(&self) -> RecorderSender {
        self.sender.clone()
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.sender.dropped()
    }

    /// Errors reported since the last call (for the status line and the log).
    pub fn take_errors(&self) -> Vec<RecorderError> {
        self.errors.try_iter().collect()
    }

    /// Waits until every message queued before this call is written; false on timeout or when
    /// the thread is gone. For tests and for reading a recording right after an episode.
    pub fn wait_until_written(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        let envelope = Envelope {
            control: Control::Sync(ack_tx),
            drops_before: self.sender.dropped(),
        };
        self.sender.tx.send_deadline(envelope, deadline).is_ok()
            && ack_rx.recv_deadline(deadline).is_ok()
    }

    /// Closes the open episode (final flush), stops the thread and returns what it did.
    pub fn shutdown(mut self) -> Result<RecorderSummary, RecorderError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<RecorderSummary, RecorderError> {
        if let Some(e) = self.spawn_error.take() {
            return Err(RecorderError::Spawn(e));
        }
        let thread = self.thread.take().ok_or(RecorderError::ThreadLost)?;
        let envelope = Envelope {
            control: Control::Shutdown,
            drops_before: self.sender.dropped(),
        };
        // Blocking is fine here: the thread drains the queue. A send error means it is gone,
        // which the join reports.
        let _ = self.sender.tx.send(envelope);
        let mut summary = thread.join().map_err(|_| RecorderError::ThreadLost)?;
        summary.dropped = self.sender.dropped();
        Ok(summary)
    }
}

impl Drop for Recorder {
    /// A recorder dropped without `shutdown` (an error path in the runtime) still closes its
    /// episode.
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}

enum EpisodeState {
    Idle,
    Recording(RawEpisodeWriter),
    /// The open episode failed or was truncated; its remaining messages are skipped.
    Skipping,
}

struct Worker {
    state: EpisodeState,
    summary: RecorderSummary,
    errors_tx: Sender<RecorderError>,
    drops_seen: u64,
}

impl Worker {
    fn new(errors_tx: Sender<RecorderError>) -> Self {
        Self {
            state: EpisodeState::Idle,
            summary: RecorderSummary::default(),
            errors_tx,
            drops_seen: 0,
        }
    }

    fn run(mut self, rx: &Receiver<Envelope>, dropped: &AtomicU64) -> RecorderSummary {
        // The loop also ends when every sender is gone (the Recorder was leaked).
        while let Ok(envelope) = rx.recv() {
            if envelope.drops_before != self.drops_seen {
                self.drops_seen = envelope.drops_before;
                self.truncate();
            }
            match envelope.control {
                Control::Msg(msg) => {
                    self.summary.received += 1;
                    self.handle(msg);
                }
                Control::Sync(ack) => {
                    let _ = ack.try_send(());
                }
                Control::Shutdown => break,
            }
        }
        self.close(Outcome::aborted(
            "the runtime stopped before the episode ended",
        ));
        self.summary.dropped = dropped.load(Ordering::Acquire);
        self.summary
    }

    fn report(&mut self, error: RecorderError) {
        tracing::warn!("{error}");
        self.summary.errors.push(error.to_string());
        let _ = self.errors_tx.send(error);
    }

    fn handle(&mut self, msg: RecorderMsg) {
        match msg {
            RecorderMsg::StartEpisode { dir, language } => {
                self.close(Outcome::aborted(
                    "a new episode started before this one ended",
                ));
                match RawEpisodeWriter::create(&dir, language.as_deref()) {
                    Ok(writer) => self.state = EpisodeState::Recording(writer),
                    Err(source) => {
                        self.report(RecorderError::Write {
                            dir,
                            source: Box::new(source),
                        });
                        self.state = EpisodeState::Skipping;
                    }
                }
            }
            RecorderMsg::Observation(step) => {
                self.write(|w| w.push_observation(&step));
                self.summary.observations += u64::from(self.is_recording());
            }
            RecorderMsg::Action(action) => self.action(action, StepKind::Policy),
            RecorderMsg::ActionOf(action, kind) => self.action(action, kind),
            RecorderMsg::MarkLastAction(kind) => self.write(|w| w.mark_last_action(kind)),
            RecorderMsg::EndEpisode(outcome) => self.close(outcome),
        }
    }

    fn action(&mut self, action: BridgeAction, kind: StepKind) {
        self.write(|w| {
            w.push_action_of(action.to_array(), kind)
                .and_then(|()| w.flush())
        });
        self.summary.actions += u64::from(self.is_recording());
    }

    fn is_recording(&self) -> bool {
        matches!(self.state, EpisodeState::Recording(_))
    }

    /// Applies `op` to the open episode; on failure reports it and closes the episode.
    fn write(&mut self, op: impl FnOnce(&mut RawEpisodeWriter) -> Result<(), RawError>) {
        let EpisodeState::Recording(writer) = &mut self.state else {
            self.summary.skipped += 1;
            return;
        };
        if let Err(source) = op(writer) {
            let dir = writer.dir().to_path_buf();
            self.report(RecorderError::Write {
                dir,
                source: Box::new(source),
            });
            self.close(Outcome::aborted("the recording failed to write"));
            self.state = EpisodeState::Skipping;
        }
    }

    /// A message was lost: the open episode ends here.
    fn truncate(&mut self) {
        if let EpisodeState::Recording(writer) = &self.state {
            let error = RecorderError::Truncated {
                dir: writer.dir().to_path_buf(),
                observations: writer.observation_count(),
                actions: writer.action_count(),
            };
            self.report(error);
            self.close(Outcome::aborted(
                "recording truncated: the recorder queue was full and messages were dropped",
            ));
            self.state = EpisodeState::Skipping;
        }
    }

    /// Final flush of the open episode, if any, with its end record.
    fn close(&mut self, outcome: Outcome) {
        if let EpisodeState::Recording(writer) =
            std::mem::replace(&mut self.state, EpisodeState::Idle)
        {
            let dir = writer.dir().to_path_buf();
            match writer.finish(&outcome) {
                Ok(dir) => self.summary.episodes.push(dir),
                Err(source) => self.report(RecorderError::Write {
                    dir,
                    source: Box::new(source),
                }),
            }
        }
    }
}
