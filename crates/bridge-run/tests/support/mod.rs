//! Shared pieces of the runtime tests: fast settings, a scripted policy (constant, NaN, slow),
//! a synthetic camera that can stall, a tiny random-weight pixel checkpoint, and the sim rig.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bridge_run::RuntimeConfig;
use bridge_run::policy::{GoalImage, Policy, PolicyError, PolicyOutput};
use bridge_run::runtime::{Runtime, RuntimeOptions};
use bridge_run::sim::SimRig;
use camera::{CameraError, Frame, FrameSource};

/// Defaults with quicker resets and parking, everything written under `dir`.
pub fn test_config(dir: &Path) -> RuntimeConfig {
    let mut config = RuntimeConfig::default();
    config.control.reset_speed_rad_s = 1.8;
    config.episode.recording_dir = dir.join("recordings");
    config.episode.log_file = dir.join("bridge-run.log");
    config.episode.report = false;
    config
}

/// A policy returning scripted actions: `actions` in turn (cycled), NaN from step `nan_at`,
/// each call taking at least `delay`.
pub struct ScriptedPolicy {
    pub size_px: u32,
    pub actions: Vec<[f32; 7]>,
    pub nan_at: Option<usize>,
    pub delay: Duration,
    pub calls: Arc<AtomicUsize>,
}

impl ScriptedPolicy {
    pub fn constant(action: [f32; 7]) -> ScriptedPolicy {
        ScriptedPolicy {
            size_px: 32,
            actions: vec![action],
            nan_at: None,
            delay: Duration::ZERO,
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Policy for ScriptedPolicy {
    fn input_size_px(&self) -> u32 {
        self.size_px
    }

    fn set_goal(&mut self, goal: &GoalImage) -> Result<(), PolicyError> {
        assert_eq!(goal.size_px, self.size_px);
        Ok(())
    }

    fn act(&mut self, obs_model_rgb: &[u8]) -> Result<PolicyOutput, PolicyError> {
        let started = Instant::now();
        assert_eq!(obs_model_rgb.len(), (self.size_px as usize).pow(2) * 3);
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        let mut action = self.actions[call % self.actions.len()];
        if self.nan_at.is_some_and(|at| call >= at) {
            action[2] = f32::NAN;
        }
        Ok(PolicyOutput {
            action,
            distance: 10.0 - call as f32,
            inference_s: started.elapsed().as_secs_f64(),
        })
    }
}

/// Frames of one colour at `fps`; while `stall` is set it delivers nothing (blocks).
pub struct SyntheticCamera {
    pub fps: f64,
    pub width_px: u32,
    pub height_px: u32,
    pub stall: Arc<AtomicBool>,
    sequence: u64,
    next_at: Instant,
}

impl SyntheticCamera {
    pub fn new(fps: f64) -> SyntheticCamera {
        SyntheticCamera {
            fps,
            width_px: 640,
            height_px: 480,
            stall: Arc::new(AtomicBool::new(false)),
            sequence: 0,
            next_at: Instant::now(),
        }
    }
}

impl FrameSource for SyntheticCamera {
    fn next_frame(&mut self) -> Result<Frame, CameraError> {
        while self.stall.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let now = Instant::now();
        if self.next_at > now {
            std::thread::sleep(self.next_at - now);
        }
        self.next_at = Instant::now() + Duration::from_secs_f64(1.0 / self.fps);
        let shade = (self.sequence % 200) as u8;
        let frame = Frame {
            rgb: vec![shade; (self.width_px * self.height_px * 3) as usize],
            width_px: self.width_px,
            height_px: self.height_px,
            captured_at: Instant::now(),
            sequence: self.sequence,
        };
        self.sequence += 1;
        Ok(frame)
    }

    fn describe(&self) -> String {
        format!(
            "synthetic {}x{} @{}",
            self.width_px, self.height_px, self.fps
        )
    }
}

/// A goal of one colour for a policy of `size_px`.
pub fn flat_goal(size_px: u32) -> GoalImage {
    let rgb = vec![90u8; 640 * 480 * 3];
    GoalImage::from_rgb(Path::new("(test goal)"), &rgb, 640, 480, size_px).unwrap()
}

/// A random-weight pixel checkpoint (impala-small at 64 px, narrow nets) in `dir`.
pub fn tiny_checkpoint(dir: &Path) -> PathBuf {
    test_support::checkpoint::tiny_pixel_checkpoint(dir, "random weights (bridge-run tests)")
}

/// The sim rig, a runtime on it with `camera` and `policy`.
pub fn start_on_sim(
    config: RuntimeConfig,
    camera: Box<dyn FrameSource>,
    policy: Box<dyn Policy>,
) -> (SimRig, Runtime) {
    let rig = SimRig::spawn(7).unwrap();
    let arm = rig.connect().unwrap();
    let runtime = Runtime::start(config, arm, camera, policy, RuntimeOptions::default()).unwrap();
    (rig, runtime)
}

/// The log file's text.
pub fn log_text(config: &RuntimeConfig) -> String {
    std::fs::read_to_string(&config.episode.log_file).unwrap_or_default()
}

/// Waits until `condition` holds, up to `timeout`; false if it never did.
pub fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    condition()
}

/// Waits until the log file holds `text` (the monitor writes it a moment after the fact).
pub fn wait_log(config_log: &Path, text: &str) -> String {
    let mut log = String::new();
    wait_for(Duration::from_secs(5), || {
        log = std::fs::read_to_string(config_log).unwrap_or_default();
        log.contains(text)
    });
    log
}

/// A child process on a pseudo-terminal: keys typed through [`PtyChild::send`] arrive on its
/// standard input as a terminal's would, and everything it writes collects in the screen.
pub struct PtyChild {
    pub child: std::process::Child,
    master: std::fs::File,
    screen: Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl PtyChild {
    /// Starts `command` with the slave end of a new pseudo-terminal as stdin, stdout and stderr.
    pub fn spawn(mut command: std::process::Command) -> PtyChild {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        use std::io::Read;
        use std::process::Stdio;
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        let master = std::fs::File::from(master);
        let child = command
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap();
        let screen = Arc::new(std::sync::Mutex::new(String::new()));
        let mut output = master.try_clone().unwrap();
        let sink = Arc::clone(&screen);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        PtyChild {
            child,
            master,
            screen,
            reader: Some(reader),
        }
    }

    /// Types `keys`.
    pub fn send(&mut self, keys: &[u8]) {
        use std::io::Write;
        self.master.write_all(keys).unwrap();
    }

    /// Everything the child wrote so far.
    pub fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for the child to exit; its status, or `None` if it still runs.
    /// After the exit, the screen holds everything the child wrote.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = &mut self.child;
        wait_for(timeout, || child.try_wait().unwrap().is_some());
        let status = self.child.try_wait().unwrap()?;
        if let Some(reader) = &self.reader {
            // The reader sees end of file once the child's end of the terminal is closed.
            wait_for(Duration::from_secs(5), || reader.is_finished());
        }
        Some(status)
    }
}

impl Drop for PtyChild {
    fn drop(&mut self) {
        // A test that failed half-way leaves no process behind; the reader thread ends when
        // the child's end of the terminal closes.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
