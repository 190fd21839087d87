//! The camera thread: pulls frames from a [`FrameSource`] as fast as it delivers them and keeps
//! only the newest (with its capture time) for the policy thread; the control thread watches
//! the capture time for its camera watchdog.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use camera::{Frame, FrameSource};
use crossbeam_channel::Sender;

use crate::mailbox::Mailbox;
use crate::messages::MonitorMsg;

/// The newest frame, shared.
#[derive(Debug, Clone, Default)]
pub struct FrameSlot {
    slot: Arc<Mutex<Option<Arc<Frame>>>>,
}

impl FrameSlot {
    pub fn put(&self, frame: Arc<Frame>) {
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(frame);
    }

    /// The newest frame, if any arrived yet.
    pub fn latest(&self) -> Option<Arc<Frame>> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Pause after a failed frame before asking again.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Starts the camera thread. It stops when `stop` is set (after the frame it is waiting for).
pub fn spawn(
    mut source: Box<dyn FrameSource>,
    slot: FrameSlot,
    captured: Mailbox<Option<Instant>>,
    monitor: Sender<MonitorMsg>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, crate::RunError> {
    let describe = source.describe();
    let _ = monitor.send(MonitorMsg::Note {
        at: Instant::now(),
        source: "camera",
        text: format!("camera: {describe}"),
        safety: false,
    });
    std::thread::Builder::new()
        .name("bridge-run-camera".into())
        .spawn(move || {
            let mut failing = false;
            while !stop.load(Ordering::Relaxed) {
                match source.next_frame() {
                    Ok(frame) => {
                        captured.put(Some(frame.captured_at));
                        slot.put(Arc::new(frame));
                        failing = false;
                    }
                    Err(e) => {
                        if !failing {
                            let _ = monitor.send(MonitorMsg::Note {
                                at: Instant::now(),
                                source: "camera",
                                text: format!("camera {describe}: {e}; retrying"),
                                safety: true,
                            });
                        }
                        failing = true;
                        std::thread::sleep(RETRY_AFTER);
                    }
                }
            }
        })
        .map_err(|source| crate::RunError::Thread {
            thread: "camera",
            source,
        })
}
