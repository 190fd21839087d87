//! The camera thread: pulls frames from a [`FrameSource`] as fast as it delivers them and keeps
//! only the newest (with its capture time) for the policy thread; the control thread watches
//! the capture time for its camera watchdog.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use camera::{Frame, FrameSource};
use crossbeam_channel::Sender;

use crate::mailbox::Mailbox;
use crate::messages::MonitorMsg;

/// The newest frame, shared; the policy thread can wait for the next one. (Between the camera
/// and the policy thread, both at normal priority: the real-time control thread never touches
/// it.)
#[derive(Debug, Clone, Default)]
pub struct FrameSlot {
    slot: Arc<(Mutex<Option<Arc<Frame>>>, Condvar)>,
}

impl FrameSlot {
    pub fn put(&self, frame: Arc<Frame>) {
        let (slot, arrived) = &*self.slot;
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(frame);
        arrived.notify_all();
    }

    /// The newest frame, if any arrived yet.
    pub fn latest(&self) -> Option<Arc<Frame>> {
        self.slot
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The first frame put after `after` (`None`: any frame) that arrives within `timeout`;
    /// `None` when none did. Acting on the next frame instead of the newest one saves up to a
    /// whole frame interval of latency.
    pub fn next_after(&self, after: Option<&Arc<Frame>>, timeout: Duration) -> Option<Arc<Frame>> {
        let (slot, arrived) = &*self.slot;
        // Every put is a new Arc: identity tells frames apart whatever a source numbers them.
        let is_newer = |frame: &Option<Arc<Frame>>| {
            frame
                .as_ref()
                .is_some_and(|f| after.is_none_or(|seen| !Arc::ptr_eq(f, seen)))
        };
        let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = arrived
            .wait_timeout_while(guard, timeout, |frame| !is_newer(frame))
            .unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|_| is_newer(&guard)).cloned()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(sequence: u64) -> Arc<Frame> {
        Arc::new(Frame {
            rgb: vec![0; 3],
            width_px: 1,
            height_px: 1,
            captured_at: Instant::now(),
            sequence,
        })
    }

    #[test]
    fn a_waiter_gets_the_next_frame_not_the_one_it_saw() {
        let slot = FrameSlot::default();
        let seen = frame(7);
        slot.put(Arc::clone(&seen));
        // Nothing newer within the timeout.
        assert!(
            slot.next_after(Some(&seen), Duration::from_millis(20))
                .is_none()
        );
        let camera = slot.clone();
        let putter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            // A source that does not number its frames: identity still tells them apart.
            camera.put(frame(7));
        });
        let next = slot
            .next_after(Some(&seen), Duration::from_secs(5))
            .expect("the next frame");
        assert!(!Arc::ptr_eq(&next, &seen));
        putter.join().unwrap();
        // Without a frame seen, the newest one is newer.
        assert!(slot.next_after(None, Duration::ZERO).is_some());
    }
}
