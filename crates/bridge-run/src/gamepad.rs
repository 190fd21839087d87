//! Gamepad teleoperation (feature `gamepad`): a thread reading a gamepad through gilrs and
//! feeding [`TeleopKeys`]: sticks as proportional velocities, buttons by [`pad_button`].
//!
//! Layout: left stick forward/back x, left/right y; right stick up/down z, left/right yaw.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use gilrs::{Axis, Button, EventType, Gilrs};

use crate::modes::OperatorCommand;
use crate::teleop::{Motion, PadButton, ResetChoice, TeleopKeys, pad_button};

/// The running gamepad thread; dropping it stops the thread.
#[derive(Debug)]
pub struct Gamepad {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How often the gamepad's events are read.
const POLL: Duration = Duration::from_millis(10);

impl Gamepad {
    /// Starts reading gamepads; errors when the gamepad library cannot start or no gamepad is
    /// connected.
    pub fn start(
        keys: TeleopKeys,
        commands: Sender<OperatorCommand>,
        choices: Sender<ResetChoice>,
    ) -> Result<Gamepad, String> {
        let (ready_tx, ready) = crossbeam_channel::bounded(1);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("bridge-run-gamepad".into())
            .spawn(move || {
                // gilrs is not Send: it lives on this thread from the start.
                let gilrs = match Gilrs::new() {
                    Ok(gilrs) if gilrs.gamepads().next().is_some() => gilrs,
                    Ok(_) => {
                        let _ = ready_tx.send(Err("no gamepad is connected".to_string()));
                        return;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot read gamepads: {e}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                read_events(gilrs, &keys, &commands, &choices, &flag);
            })
            .map_err(|e| format!("cannot start the gamepad thread: {e}"))?;
        let started = ready
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| "the gamepad library did not start within 5 s".to_string())?;
        let gamepad = Gamepad {
            stop,
            thread: Some(thread),
        };
        started.map(|()| gamepad)
    }
}

fn read_events(
    mut gilrs: Gilrs,
    keys: &TeleopKeys,
    commands: &Sender<OperatorCommand>,
    choices: &Sender<ResetChoice>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        while let Some(event) = gilrs.next_event() {
            match event.event {
                EventType::AxisChanged(axis, value, _) => {
                    if let Some((motion, sign)) = motion_of(axis) {
                        keys.set_stick(motion, sign * f64::from(value));
                    }
                }
                EventType::ButtonPressed(button, _) => {
                    let meaning = pad_button_of(button).and_then(|b| pad_button(b, keys.phase()));
                    if let Some(meaning) = meaning
                        && !keys.apply(meaning, commands, choices)
                    {
                        return;
                    }
                }
                EventType::Disconnected => {
                    tracing::error!("gamepad disconnected: stopping, the arm holds");
                    for motion in [Motion::X, Motion::Y, Motion::Z, Motion::Yaw] {
                        keys.set_stick(motion, 0.0);
                    }
                }
                _ => {}
            }
        }
        std::thread::sleep(POLL);
    }
}

/// The motion a stick axis drives, and its sign (gilrs: up and right are positive; Bridge: +y
/// is to the arm's left, +yaw counter-clockwise).
fn motion_of(axis: Axis) -> Option<(Motion, f64)> {
    match axis {
        Axis::LeftStickY => Some((Motion::X, 1.0)),
        Axis::LeftStickX => Some((Motion::Y, -1.0)),
        Axis::RightStickY => Some((Motion::Z, 1.0)),
        Axis::RightStickX => Some((Motion::Yaw, -1.0)),
        _ => None,
    }
}

fn pad_button_of(button: Button) -> Option<PadButton> {
    Some(match button {
        Button::South => PadButton::South,
        Button::East => PadButton::East,
        Button::West => PadButton::West,
        Button::North => PadButton::North,
        Button::Start => PadButton::Start,
        Button::Select => PadButton::Select,
        _ => return None,
    })
}

impl Drop for Gamepad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
