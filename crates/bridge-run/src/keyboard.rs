//! The keyboard override: a thread reading keys from the terminal in raw mode (crossterm; works
//! the same over SSH) and sending [`OperatorCommand`]s to the control thread.
//!
//! Keys: space pause/resume; while holding, w/s x, a/d y, r/f z jog the gripper in the base frame
//! and g toggles the gripper; e or Esc emergency hold, pressed again torque off; h park; q (or
//! Ctrl-C) park and quit; b reboot servos with a hardware error (when parked).

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::modes::{Axis, OperatorCommand};

/// One line of help for the keys.
pub const HELP: &str = "keys: space pause/resume | paused: w/s x, a/d y, r/f z, g gripper | e/Esc emergency (twice: torque off) | h park | q park+quit | b reboot faulted servo";

/// The command a key press stands for, if any.
pub fn command_for_key(key: &KeyEvent) -> Option<OperatorCommand> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        // Raw mode turns Ctrl-C into a key: it means what SIGINT means, park and quit.
        return matches!(key.code, KeyCode::Char('c' | 'C')).then_some(OperatorCommand::Quit);
    }
    let jog = |axis, positive| Some(OperatorCommand::Jog { axis, positive });
    match key.code {
        KeyCode::Char(' ') => Some(OperatorCommand::TogglePause),
        KeyCode::Char(c) => match c.to_ascii_lowercase() {
            'w' => jog(Axis::X, true),
            's' => jog(Axis::X, false),
            'a' => jog(Axis::Y, true),
            'd' => jog(Axis::Y, false),
            'r' => jog(Axis::Z, true),
            'f' => jog(Axis::Z, false),
            'g' => Some(OperatorCommand::ToggleGripper),
            'e' => Some(OperatorCommand::Emergency),
            'h' => Some(OperatorCommand::Park),
            'q' => Some(OperatorCommand::Quit),
            'b' => Some(OperatorCommand::RebootFaulted),
            _ => None,
        },
        KeyCode::Esc => Some(OperatorCommand::Emergency),
        _ => None,
    }
}

/// Whether this process has a terminal to read keys from.
pub fn has_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// The running keyboard thread; dropping it stops the thread and restores the terminal.
#[derive(Debug)]
pub struct Keyboard {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How long one wait for a key lasts before the stop flag is looked at again.
const POLL: Duration = Duration::from_millis(50);

impl Keyboard {
    /// Puts the terminal in raw mode and starts reading keys. Errors when there is no terminal.
    pub fn start(commands: Sender<OperatorCommand>) -> Result<Keyboard, std::io::Error> {
        let quit = commands.clone();
        Keyboard::start_with(
            move |key| match command_for_key(key) {
                Some(command) => commands.send(command).is_ok(),
                None => true,
            },
            quit,
        )
    }

    /// [`Keyboard::start`] with another meaning for the keys: `handle` gets every key and
    /// returns false to stop reading. `on_error` gets a Quit when the terminal cannot be read.
    pub fn start_with(
        handle: impl FnMut(&KeyEvent) -> bool + Send + 'static,
        on_error: Sender<OperatorCommand>,
    ) -> Result<Keyboard, std::io::Error> {
        if !has_terminal() {
            return Err(std::io::Error::other(
                "standard input is not a terminal; the keyboard override needs one (pass --no-keyboard to run without it)",
            ));
        }
        crossterm::terminal::enable_raw_mode()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("bridge-run-keyboard".into())
            .spawn(move || read_keys(handle, &on_error, &flag));
        match thread {
            Ok(thread) => Ok(Keyboard {
                stop,
                thread: Some(thread),
            }),
            Err(e) => {
                let _ = crossterm::terminal::disable_raw_mode();
                Err(e)
            }
        }
    }
}

fn read_keys(
    mut handle: impl FnMut(&KeyEvent) -> bool,
    on_error: &Sender<OperatorCommand>,
    stop: &AtomicBool,
) {
    let fail = |e: std::io::Error| {
        tracing::error!("keyboard: cannot read the terminal ({e}); parking and quitting");
        let _ = on_error.send(OperatorCommand::Quit);
    };
    while !stop.load(Ordering::Relaxed) {
        match crossterm::event::poll(POLL) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => return fail(e),
        }
        match crossterm::event::read() {
            Ok(Event::Key(key)) => {
                if !handle(&key) {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => return fail(e),
        }
    }
}

impl Drop for Keyboard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn every_documented_key_maps_to_its_command() {
        let cases = [
            (KeyCode::Char(' '), OperatorCommand::TogglePause),
            (
                KeyCode::Char('w'),
                OperatorCommand::Jog {
                    axis: Axis::X,
                    positive: true,
                },
            ),
            (
                KeyCode::Char('s'),
                OperatorCommand::Jog {
                    axis: Axis::X,
                    positive: false,
                },
            ),
            (
                KeyCode::Char('a'),
                OperatorCommand::Jog {
                    axis: Axis::Y,
                    positive: true,
                },
            ),
            (
                KeyCode::Char('d'),
                OperatorCommand::Jog {
                    axis: Axis::Y,
                    positive: false,
                },
            ),
            (
                KeyCode::Char('r'),
                OperatorCommand::Jog {
                    axis: Axis::Z,
                    positive: true,
                },
            ),
            (
                KeyCode::Char('F'),
                OperatorCommand::Jog {
                    axis: Axis::Z,
                    positive: false,
                },
            ),
            (KeyCode::Char('g'), OperatorCommand::ToggleGripper),
            (KeyCode::Char('e'), OperatorCommand::Emergency),
            (KeyCode::Esc, OperatorCommand::Emergency),
            (KeyCode::Char('h'), OperatorCommand::Park),
            (KeyCode::Char('q'), OperatorCommand::Quit),
            (KeyCode::Char('b'), OperatorCommand::RebootFaulted),
        ];
        for (code, command) in cases {
            assert_eq!(command_for_key(&key(code)), Some(command), "{code:?}");
        }
        assert_eq!(command_for_key(&key(KeyCode::Char('x'))), None);
        assert_eq!(command_for_key(&key(KeyCode::Enter)), None);
    }

    #[test]
    fn ctrl_c_quits_and_releases_are_ignored() {
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(command_for_key(&ctrl_c), Some(OperatorCommand::Quit));
        let ctrl_e = KeyEvent::new(KeyCode::Char('e'), KeyModifiers::CONTROL);
        assert_eq!(command_for_key(&ctrl_e), None);
        let mut release = key(KeyCode::Char('e'));
        release.kind = KeyEventKind::Release;
        assert_eq!(command_for_key(&release), None);
    }
}
