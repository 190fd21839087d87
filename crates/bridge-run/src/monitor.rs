//! The monitor thread: turns what the other threads report into the log file, `tracing`
//! events, the per-episode event list and latency samples, and the status line.
//!
//! The control thread sends `Copy` events over a bounded channel (never blocking); this thread
//! does all the formatting and the disk writes, so the servo loop never does.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::clock;
use crate::messages::{
    ControlEvent, ControlStatus, EpisodeLog, MonitorMsg, PolicyStatus, TimedEvent,
};

use crate::mailbox::Mailbox;
use crate::modes::{EpisodeEnd, Input};
use widowx::bridge::gripper_open_fraction;
use widowx::joints::ARM_JOINTS;

/// Where the status line goes.
pub type StatusSink = Box<dyn Write + Send>;

/// Settings of the monitor thread.
pub struct MonitorSetup {
    pub messages: Receiver<MonitorMsg>,
    pub log_file: Option<PathBuf>,
    pub status: Mailbox<ControlStatus>,
    pub policy: Mailbox<PolicyStatus>,
    pub frames: Mailbox<Option<Instant>>,
    /// Status line sink (a terminal); `None`: no status line.
    pub status_line: Option<StatusSink>,
    /// How often the status line is redrawn.
    pub status_interval: Duration,
}

/// Starts the monitor; it ends when every sender of `messages` is gone.
pub fn spawn(setup: MonitorSetup) -> Result<JoinHandle<()>, crate::RunError> {
    let log = match &setup.log_file {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|source| crate::RunError::Log {
                    path: path.clone(),
                    source,
                })?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| crate::RunError::Log {
                    path: path.clone(),
                    source,
                })?;
            Some(file)
        }
        None => None,
    };
    let mut monitor = Monitor {
        started: Instant::now(),
        episode_started: Instant::now(),
        log,
        episode_log: EpisodeLog::default(),
        last_safety: None,
        notice: None,
        episode: EpisodeCount::default(),
        ticks_since_draw: 0,
        setup,
    };
    std::thread::Builder::new()
        .name("bridge-run-monitor".into())
        .spawn(move || monitor.run())
        .map_err(|source| crate::RunError::Thread {
            thread: "monitor",
            source,
        })
}

struct Monitor {
    setup: MonitorSetup,
    started: Instant,
    episode_started: Instant,
    log: Option<File>,
    /// What the current episode produced so far; handed over on `TakeEpisodeLog`.
    episode_log: EpisodeLog,
    last_safety: Option<String>,
    /// The newest operator feedback (an ignored key), shown for [`NOTICE_S`].
    notice: Option<(Instant, String)>,
    episode: EpisodeCount,
    ticks_since_draw: u32,
}

/// How long the status line shows an operator notice.
const NOTICE_S: f64 = 3.0;

/// Episode k of N, for the status line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EpisodeCount {
    /// 0 before the first episode.
    pub current: u64,
    pub planned: Option<u64>,
}

impl Monitor {
    fn run(&mut self) {
        let mut last_draw = Instant::now();
        loop {
            let wait = self
                .setup
                .status_interval
                .saturating_sub(last_draw.elapsed());
            match self.setup.messages.recv_timeout(wait) {
                Ok(MonitorMsg::Exit) => break,
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if last_draw.elapsed() >= self.setup.status_interval {
                let elapsed_s = last_draw.elapsed().as_secs_f64();
                last_draw = Instant::now();
                self.draw_status(elapsed_s);
            }
        }
        if let Some(sink) = self.setup.status_line.as_mut() {
            let _ = write!(sink, "\r\x1b[K");
            let _ = sink.flush();
        }
    }

    fn handle(&mut self, msg: MonitorMsg) {
        match msg {
            MonitorMsg::Tick { period_s } => {
                self.ticks_since_draw += 1;
                self.episode_log.control_period_s.push(period_s);
            }
            MonitorMsg::Control { at, event } => {
                if let ControlEvent::ActionApplied {
                    frame_to_command_s, ..
                } = event
                {
                    self.episode_log.frame_to_command_s.push(frame_to_command_s);
                    return;
                }
                let safety = is_safety(&event);
                let text = describe(&event);
                if let ControlEvent::Ignored { .. } | ControlEvent::ResumeRefused { .. } = event {
                    self.notice = Some((at, text.clone()));
                }
                self.record(at, "control", &text, safety);
            }
            MonitorMsg::Note {
                at,
                source,
                text,
                safety,
            } => self.record(at, source, &text, safety),
            MonitorMsg::TakeEpisodeLog(reply) => {
                let _ = reply.send(std::mem::take(&mut self.episode_log));
            }
            MonitorMsg::Exit => {}
            MonitorMsg::EpisodeStart {
                episode,
                at,
                planned,
            } => {
                self.episode = EpisodeCount {
                    current: episode,
                    planned,
                };
                self.episode_started = at;
                self.episode_log = EpisodeLog::default();
                self.record(
                    Instant::now(),
                    "runtime",
                    &format!("episode {episode} starts"),
                    false,
                );
            }
        }
    }

    /// Writes one event everywhere it belongs.
    fn record(&mut self, at: Instant, source: &str, text: &str, safety: bool) {
        let since_start_s = at.saturating_duration_since(self.started).as_secs_f64();
        let line = format!(
            "{}  +{since_start_s:9.3}s  [{source}] {}{text}",
            clock::log_timestamp(clock::unix_time_s()),
            if safety { "SAFETY " } else { "" }
        );
        if let Some(log) = self.log.as_mut() {
            // The log is best effort once open: a full disk must not stop the arm's monitor.
            let _ = writeln!(log, "{line}");
            let _ = log.flush();
        }
        self.clear_status_line();
        if safety {
            tracing::warn!(target: "bridge_run", "[{source}] {text}");
            self.last_safety = Some(text.to_string());
        } else {
            tracing::info!(target: "bridge_run", "[{source}] {text}");
        }
        let since_episode_s = at
            .saturating_duration_since(self.episode_started)
            .as_secs_f64();
        let entry = format!("+{since_episode_s:.3}s  {text}");
        if safety {
            self.episode_log.safety_events.push(entry.clone());
        }
        self.episode_log.events.push(entry);
        self.episode_log.timed_events.push(TimedEvent {
            at_s: since_episode_s,
            text: text.to_string(),
            safety,
        });
    }

    fn clear_status_line(&mut self) {
        if let Some(sink) = self.setup.status_line.as_mut() {
            let _ = write!(sink, "\r\x1b[K");
            let _ = sink.flush();
        }
    }

    fn draw_status(&mut self, elapsed_s: f64) {
        let rate_hz = f64::from(self.ticks_since_draw) / elapsed_s.max(1e-6);
        self.ticks_since_draw = 0;
        let Some(sink) = self.setup.status_line.as_mut() else {
            return;
        };
        let status = self.setup.status.get();
        let policy = self.setup.policy.get();
        let frame_age = self.setup.frames.get().map_or_else(
            || "-".to_string(),
            |t| format!("{:.2} s", t.elapsed().as_secs_f64()),
        );
        let notice = self
            .notice
            .as_ref()
            .filter(|(at, _)| at.elapsed().as_secs_f64() < NOTICE_S)
            .map(|(_, text)| text.as_str());
        let line = status_line(
            &StatusView {
                status: &status,
                policy: &policy,
                episode: self.episode,
                rate_hz,
                frame_age: &frame_age,
            },
            notice.or(self.last_safety.as_deref()),
        );
        let _ = write!(sink, "\r\x1b[K{line}");
        let _ = sink.flush();
    }
}

/// What the status line shows.
pub struct StatusView<'a> {
    pub status: &'a ControlStatus,
    pub policy: &'a PolicyStatus,
    pub episode: EpisodeCount,
    /// Control ticks per second since the last draw.
    pub rate_hz: f64,
    /// Age of the newest camera frame, in words.
    pub frame_age: &'a str,
}

/// The status line's text; `note` (an ignored key, or the last safety event) goes last.
pub fn status_line(view: &StatusView<'_>, note: Option<&str>) -> String {
    let StatusView { status, policy, .. } = view;
    let episode = match view.episode {
        EpisodeCount { current: 0, .. } => "-".to_string(),
        EpisodeCount {
            current,
            planned: Some(planned),
        } => format!("{current}/{planned}"),
        EpisodeCount { current, .. } => current.to_string(),
    };
    let gripper = gripper_open_fraction(status.state.positions_rad[ARM_JOINTS]);
    let mut line = format!(
        "{:<15} episode {episode}  step {}/{}  dist {}  gripper {:.0}% open  ctl {:5.1} Hz  frame {}  infer {:5.1} ms",
        status.mode.name(),
        policy.steps,
        policy.max_steps,
        significant_3(policy.last_distance),
        gripper * 100.0,
        view.rate_hz,
        view.frame_age,
        policy.last_inference_s * 1e3,
    );
    if let Some(text) = note {
        line.push_str("  | ");
        line.push_str(text);
    }
    // Keep it on one terminal line.
    const MAX_CHARS: usize = 200;
    if line.chars().count() > MAX_CHARS {
        line = line.chars().take(MAX_CHARS - 1).collect::<String>() + "…";
    }
    line
}

/// `value` to 3 significant digits ("-" when not finite): the learned distances span 0.001 to
/// 100, so a fixed number of decimals hides the small ones.
pub fn significant_3(value: f32) -> String {
    if !value.is_finite() {
        return "-".to_string();
    }
    if value == 0.0 {
        return "0".to_string();
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).max(0) as usize;
    format!("{value:.decimals$}")
}

fn is_safety(event: &ControlEvent) -> bool {
    match event {
        ControlEvent::Transition { fault, transition } => {
            fault.is_some() || matches!(transition.input, Input::Fault(_))
        }
        ControlEvent::Fault { .. }
        | ControlEvent::StepRefused { .. }
        | ControlEvent::DriverFailed { .. } => true,
        ControlEvent::Clipped { .. }
        | ControlEvent::ActionApplied { .. }
        | ControlEvent::Gripper { .. }
        | ControlEvent::Rebooted { .. }
        | ControlEvent::NothingToReboot
        | ControlEvent::ResumeRefused { .. }
        | ControlEvent::Ignored { .. } => false,
    }
}

/// One control event in words.
pub fn describe(event: &ControlEvent) -> String {
    match event {
        ControlEvent::Transition { transition, fault } => {
            let cause = match (transition.input, fault) {
                (_, Some(fault)) => fault.to_string(),
                (Input::Operator(command), None) => format!("operator: {command}"),
                (Input::Shutdown, None) => "runtime: shutdown".to_string(),
                (Input::Reset, None) => "runtime: reset to the start pose".to_string(),
                (Input::Begin, None) => "runtime: the policy drives".to_string(),
                (Input::EpisodeComplete, None) => "the policy took its last step".to_string(),
                (Input::Reached, None) => "planned move arrived".to_string(),
                (Input::Fault(response), None) => format!("fault ({response})"),
                (Input::Unattended, None) => {
                    "no operator: the unattended hold ran out, torque off where it stands"
                        .to_string()
                }
            };
            let mut text = if transition.from == transition.to {
                match transition.input {
                    // The command says what was done.
                    Input::Operator(_) => format!("mode {} ({cause})", transition.to),
                    _ => format!("mode {} ({cause}): {}", transition.to, transition.effect),
                }
            } else {
                format!("mode {} -> {} ({cause})", transition.from, transition.to)
            };
            if let Some(end) = transition.episode_end {
                text.push_str(&format!("; episode ends: {}", describe_end(end)));
            }
            text
        }
        ControlEvent::Fault { fault } => fault.to_string(),
        ControlEvent::StepRefused { refused, jog } => format!(
            "{} refused, holding: {refused}",
            if *jog { "jog" } else { "policy step" }
        ),
        ControlEvent::Clipped { step, clipped } => format!(
            "step {step} clipped{}{}",
            if clipped.step {
                " (per-step limit)"
            } else {
                ""
            },
            if clipped.workspace {
                " (workspace box)"
            } else {
                ""
            }
        ),
        ControlEvent::ActionApplied {
            step,
            frame_to_command_s,
            ..
        } => format!(
            "step {step} applied {:.1} ms after its frame",
            frame_to_command_s * 1e3
        ),
        ControlEvent::Gripper { closed } => {
            format!("gripper {}", if *closed { "closes" } else { "opens" })
        }
        ControlEvent::Rebooted { servo, ok } => {
            if *ok {
                format!("{servo} rebooted; its hardware error is cleared")
            } else {
                format!("{servo} did not come back after the reboot; check its power and cable")
            }
        }
        ControlEvent::NothingToReboot => "no servo reports a hardware error".to_string(),
        ControlEvent::ResumeRefused { joint } => format!(
            "not resuming: the {joint} servo still reports a hardware error; press b to reboot it"
        ),
        ControlEvent::Ignored { command, mode } => {
            format!(
                "{command}: {}",
                crate::modes::ignored_because(*mode, *command)
            )
        }
        ControlEvent::DriverFailed { what, servo } => match servo {
            Some(servo) => format!("{what} failed on {servo}"),
            None => format!("{what} failed"),
        },
    }
}

/// An episode end in words.
pub fn describe_end(end: EpisodeEnd) -> String {
    match end {
        EpisodeEnd::Completed => "completed".to_string(),
        EpisodeEnd::Operator(command) => format!("operator ({command})"),
        EpisodeEnd::Fault(response) => format!("safety fault ({response})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modes::{Effect, Mode, OperatorCommand, Transition};
    use crate::supervisor::Fault;

    #[test]
    fn transitions_read_as_sentences() {
        let t = Transition {
            from: Mode::Running,
            to: Mode::Idle,
            input: Input::Fault(crate::modes::Response::Hold),
            effect: Effect::Hold,
            episode_end: Some(EpisodeEnd::Fault(crate::modes::Response::Hold)),
        };
        let fault = Fault::CameraTimeout { frame_age_s: 1.25 };
        let event = ControlEvent::Transition {
            transition: t,
            fault: Some(fault),
        };
        let text = describe(&event);
        assert!(
            text.starts_with("mode running -> idle (camera stalled"),
            "{text}"
        );
        assert!(text.contains("episode ends: safety fault"), "{text}");
        assert!(is_safety(&event));
        let pause = ControlEvent::Transition {
            transition: Transition {
                from: Mode::Running,
                to: Mode::Paused,
                input: Input::Operator(OperatorCommand::TogglePause),
                effect: Effect::Hold,
                episode_end: None,
            },
            fault: None,
        };
        assert_eq!(
            describe(&pause),
            "mode running -> paused (operator: pause/resume)"
        );
        assert!(!is_safety(&pause));
    }

    #[test]
    fn distances_keep_three_significant_digits() {
        assert_eq!(significant_3(0.0123456), "0.0123");
        assert_eq!(significant_3(0.001), "0.00100");
        assert_eq!(significant_3(12.5), "12.5");
        assert_eq!(significant_3(345.6), "346");
        assert_eq!(significant_3(-0.5), "-0.500");
        assert_eq!(significant_3(f32::NAN), "-");
    }

    #[test]
    fn the_status_line_shows_the_essentials() {
        let state = widowx_driver::JointState::default();
        let status = ControlStatus {
            mode: Mode::Paused,
            ..crate::control::tests_support::status(state)
        };
        let policy = PolicyStatus {
            episode: 1,
            steps: 17,
            max_steps: 120,
            last_inference_s: 0.042,
            last_distance: 12.5,
        };
        let view = StatusView {
            status: &status,
            policy: &policy,
            episode: EpisodeCount {
                current: 2,
                planned: Some(5),
            },
            rate_hz: 99.7,
            frame_age: "0.03 s",
        };
        let line = status_line(&view, Some("camera stalled"));
        for part in [
            "paused",
            "episode 2/5",
            "99.7 Hz",
            "0.03 s",
            "42.0 ms",
            "dist 12.5 ",
            "17/120",
            "% open",
            "camera stalled",
        ] {
            assert!(line.contains(part), "{part} missing from {line}");
        }
    }
}
