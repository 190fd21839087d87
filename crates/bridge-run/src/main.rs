//! `bridge-run`: drive the WidowX toward a goal image with a learned policy, with the keyboard
//! override and the safety supervisor.
//!
//! ```text
//! bridge-run --sim                                  # the demo: virtual arm, shipped checkpoint and goal
//! bridge-run --goal goal.png --checkpoint DIR       # the real arm on /dev/ttyDXL, camera /dev/video0
//! bridge-run config [--config FILE]                 # print the resolved configuration
//! bridge-run bench --sim --seconds 60               # control period, frame-to-command, inference
//! bridge-run capture-goal --out goal.png --pose 0.3,0,0.1   # drive to a pose, save a goal image
//! bridge-run teleop --task "put the block in the bowl" --episodes 20   # record demonstrations
//! bridge-run replay recordings/<task>/00/<date>/raw/traj_group0/traj0  # replay, path error
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bridge_data::provenance::Collector;
use bridge_run::config::{RuntimeConfig, WORKSPACE_CALIBRATION_FILE};
use bridge_run::keyboard::{self, Keyboard};
use bridge_run::modes::{EpisodeEnd, Mode, OperatorCommand};
use bridge_run::policy::{GoalImage, MqePolicy, Policy};
use bridge_run::record::RunRecord;
use bridge_run::runtime::{AfterPark, Runtime, RuntimeOptions};
use bridge_run::supervisor::Fault;
use camera::FrameSource;
use candle_core::Device;
use clap::{Parser, Subcommand};
use mqe::{DeviceChoice, select_device};
use widowx::firmware::FirmwareConfig;
use widowx_driver::{Arm, DriverConfig};

mod run_sim;
mod station;
use run_sim::{SimHandle, SimTask};

/// The checkpoint `--sim` uses when none is given.
const DEFAULT_CHECKPOINT: &str = "models/sim-demo";
/// Frame size of the simulated camera (the C920's 640x480).
const SIM_FRAME_PX: (u32, u32) = (640, 480);

#[derive(Parser, Debug)]
#[command(
    name = "bridge-run",
    version,
    about = "Drive the WidowX 250 toward a goal image with a learned policy, with a keyboard safety override",
    after_help = "After a fault or an emergency the arm holds where it stopped until the operator acts \
(h park, q park and quit, e torque off); with --no-keyboard torque goes off where it stands after \
safety.unattended_hold_s.\n\nExit codes: 0 every episode ran to its end, 1 other failure, 2 bad input \
refused before the arm moved, 3 safety fault, 4 emergency stop, 5 operator ended the run early."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Goal image (PNG or JPEG, the camera's frame size). With --sim: default the first image in
    /// <checkpoint>/goals/.
    #[arg(long, global = true)]
    goal: Option<PathBuf>,
    /// Checkpoint directory (model.safetensors + config.toml). With --sim, default models/sim-demo;
    /// required on a real arm.
    #[arg(long, global = true)]
    checkpoint: Option<PathBuf>,
    /// Runtime configuration (TOML); `bridge-run config` prints every key.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Run on the virtual arm and rendered tabletop camera instead of the hardware.
    #[arg(long, global = true)]
    sim: bool,
    /// On a real arm, accept a checkpoint trained on simulator data (refused otherwise).
    #[arg(long, global = true)]
    allow_sim_checkpoint: bool,
    /// Seed of the virtual tabletop (block positions).
    #[arg(long, global = true, default_value_t = 0)]
    sim_seed: u64,
    /// Run without the keyboard override (required when standard input is not a terminal).
    #[arg(long, global = true)]
    no_keyboard: bool,
    /// Episodes to run back to back.
    #[arg(long, default_value_t = 1)]
    episodes: usize,
    /// Serial port of the arm's U2D2 adapter.
    #[arg(long, global = true, default_value = "/dev/ttyDXL")]
    port: PathBuf,
    /// Servo map (firmware-config TOML); default the built-in wx250s.
    #[arg(long, global = true)]
    firmware: Option<PathBuf>,
    /// Driver timeouts and gripper settings (TOML).
    #[arg(long, global = true)]
    driver_config: Option<PathBuf>,
    /// Replay this image folder (or a recording's images0) as the camera.
    #[arg(long, global = true)]
    camera_folder: Option<PathBuf>,
    /// Where the policy runs: auto (a usable GPU, else the CPU), cpu or cuda.
    #[arg(long, global = true, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the resolved configuration (defaults, calibration/workspace.toml, --config).
    Config,
    /// Run episodes for a while and print control-loop period, frame-to-command latency and
    /// inference time (p50/p99/max): four rounds, quiet and beside a CPU-loading neighbour, each
    /// at normal and at real-time priority, then a table of the rounds side by side.
    Bench {
        /// How long each round runs.
        #[arg(long, default_value_t = 15.0)]
        seconds: f64,
        /// Without --checkpoint: input size of the random-weight model benchmarked.
        #[arg(long, default_value_t = 128)]
        size_px: usize,
    },
    /// Save a goal image: a camera frame at the camera's frame size. With --pose the arm first
    /// drives there from the start pose (as BridgeData's eval_gc does). With the keyboard a
    /// preview PNG is refreshed twice a second and Enter saves; with --no-keyboard it saves at once.
    CaptureGoal {
        /// Where the goal image goes (PNG or JPEG by the extension).
        #[arg(long)]
        out: PathBuf,
        /// Drive the gripper to x,y,z[,yaw] (base frame, m; Bridge yaw, rad) first.
        #[arg(long, value_parser = station::parse_pose, allow_hyphen_values = true)]
        pose: Option<station::PoseArg>,
        /// The live preview image; default <out>.preview.png.
        #[arg(long)]
        preview: Option<PathBuf>,
    },
    /// Teleoperate with the keyboard (hold a key to move) and record each episode in the
    /// BridgeData V2 raw layout; after each, a reset period: n keep and go on, r discard and redo,
    /// q keep and quit.
    Teleop {
        /// The language instruction of the episodes (lang.txt), for example "put the block in the bowl".
        #[arg(long)]
        task: String,
        /// Episodes to keep.
        #[arg(long, default_value_t = 10)]
        episodes: usize,
        /// Steps an episode lasts at most (5 Hz); Enter ends it sooner. Default episode.max_steps.
        #[arg(long)]
        steps: Option<usize>,
        /// Also drive with a gamepad (sticks: velocity; South gripper, Start end episode, East
        /// emergency). Needs a build with `--features gamepad`.
        #[arg(long)]
        gamepad: bool,
    },
    /// Drive the arm through a recorded episode's actions from the start pose, with the safety
    /// supervisor on, and print the end-effector path error against the recording.
    Replay {
        /// The recorded episode (a raw-layout traj directory).
        trajectory: PathBuf,
    },
}

fn main() -> ExitCode {
    // SAFETY: the first statement of main: no other thread exists yet.
    unsafe { mqe::threads::prefer_inline_elementwise_ops() };
    let cli = Cli::parse();
    init_tracing();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            say(&format!("bridge-run: error: {}", mqe::error_text(&*e)));
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Prints one line to stderr, also correct while the terminal is in raw mode.
fn say(text: &str) {
    use std::io::IsTerminal;
    let mut err = std::io::stderr().lock();
    if err.is_terminal() {
        // Clear the status line first; raw mode needs \r\n.
        let _ = write!(err, "\r\x1b[K{}\r\n", text.replace('\n', "\r\n"));
    } else {
        let _ = writeln!(err, "{text}");
    }
    let _ = err.flush();
}

/// stderr with `\n` written as `\r\n`, so log lines stay readable in raw mode.
struct RawSafeStderr;

impl Write for RawSafeStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        for chunk in buf.split_inclusive(|&b| b == b'\n') {
            match chunk.strip_suffix(b"\n") {
                Some(line) => {
                    err.write_all(line)?;
                    err.write_all(b"\r\n")?;
                }
                None => err.write_all(chunk)?,
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(|| RawSafeStderr)
        .try_init();
}

fn run(cli: &Cli) -> Result<ExitCode> {
    let config = match RuntimeConfig::load(
        cli.config.as_deref(),
        Some(Path::new(WORKSPACE_CALIBRATION_FILE)),
    ) {
        Ok(config) => config,
        Err(e) => {
            say(&format!("bridge-run: refused: {e}"));
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
    };
    match &cli.command {
        Some(Command::Config) => {
            print!("{}", config.to_toml());
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Bench { seconds, size_px }) => bench(cli, config, *seconds, *size_px),
        Some(Command::CaptureGoal { out, pose, preview }) => station_result(station::capture_goal(
            cli,
            config,
            out,
            *pose,
            preview.as_deref(),
        )),
        Some(Command::Teleop {
            task,
            episodes,
            steps,
            gamepad,
        }) => station_result(station::teleop(
            cli,
            config,
            &station::TeleopArgs {
                task,
                episodes: *episodes,
                steps: *steps,
                gamepad: *gamepad,
            },
        )),
        Some(Command::Replay { trajectory }) => {
            station_result(station::replay(cli, config, trajectory))
        }
        None => drive(cli, config),
    }
}

/// The result of a station command, with its refused input (exit 2) told apart.
fn station_result(result: Result<ExitCode>) -> Result<ExitCode> {
    result.or_else(|e| match e.downcast_ref::<station::Refused>() {
        Some(_) => {
            say(&format!("bridge-run: refused: {}", mqe::error_text(&*e)));
            Ok(ExitCode::from(EXIT_REFUSED))
        }
        None => Err(e),
    })
}

/// Opens the device and logs the one line that says which it is.
fn device(choice: DeviceChoice) -> Result<Device> {
    let selected = select_device(choice)?;
    tracing::info!("{}", selected.summary);
    Ok(selected.device)
}

/// --checkpoint, or with --sim the shipped demo checkpoint. A real arm has no default: the
/// demo was trained in the simulator.
fn checkpoint_dir(cli: &Cli) -> Result<PathBuf> {
    match &cli.checkpoint {
        Some(dir) => Ok(dir.clone()),
        None if cli.sim => Ok(PathBuf::from(DEFAULT_CHECKPOINT)),
        None => bail!(
            "--checkpoint DIR is required on a real arm (the shipped {DEFAULT_CHECKPOINT} was trained \
             in the simulator; `--sim` runs it on the virtual arm)"
        ),
    }
}

fn load_policy(cli: &Cli) -> Result<MqePolicy> {
    let dir = checkpoint_dir(cli)?;
    if !dir.join("config.toml").exists() {
        bail!(
            "no checkpoint at {} (config.toml missing); pass --checkpoint DIR (a directory written by bridge-train){}",
            dir.display(),
            if cli.checkpoint.is_none() {
                "; the demo checkpoint ships in models/sim-demo: run from the repository root"
            } else {
                ""
            }
        );
    }
    let device = device(cli.device)?;
    let policy = MqePolicy::load(&dir, &device)
        .with_context(|| format!("loading checkpoint {}", dir.display()))?;
    refuse_sim_checkpoint_on_a_robot(cli, &dir, policy.data_source())?;
    tracing::info!(
        "checkpoint {}: {} px input from {}, on {}",
        dir.display(),
        policy.input_size_px(),
        camera::preprocess::describe_crop(policy.input_view().crop),
        mqe::device_label(&device)
    );
    Ok(policy)
}

/// On a real arm, a checkpoint trained (even partly) on simulator data is refused unless the
/// operator says `--allow-sim-checkpoint`: it has never seen a real camera or arm.
fn refuse_sim_checkpoint_on_a_robot(cli: &Cli, dir: &Path, source: mqe::DataSource) -> Result<()> {
    if cli.sim || !source.includes_simulator() {
        return Ok(());
    }
    if cli.allow_sim_checkpoint {
        tracing::warn!(
            "checkpoint {} was trained on {source} data; driving the real arm with it because of --allow-sim-checkpoint",
            dir.display()
        );
        return Ok(());
    }
    bail!(
        "checkpoint {} was trained on {source} data (data.data_source in its config.toml) and has \
         never seen a real camera or arm; pass --allow-sim-checkpoint to drive the real arm with it \
         anyway, or --sim to run it on the virtual arm",
        dir.display()
    )
}

/// The goal given, or with --sim the checkpoint's default task's goal image
/// (`default_task` of `<checkpoint>/tasks.toml`), or else the first image in its goals/ folder.
fn goal_path(cli: &Cli) -> Result<PathBuf> {
    if let Some(goal) = &cli.goal {
        return Ok(goal.clone());
    }
    if !cli.sim {
        bail!(
            "--goal IMAGE is required (a PNG or JPEG of the scene you want, as the camera sees it)"
        );
    }
    let checkpoint = checkpoint_dir(cli)?;
    if let Some(goal) = run_sim::default_goal(&checkpoint)? {
        return Ok(goal);
    }
    let goals = checkpoint.join("goals");
    let mut images: Vec<PathBuf> = std::fs::read_dir(&goals)
        .with_context(|| format!("no --goal given and no goal folder {}", goals.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
        })
        .collect();
    images.sort();
    images
        .into_iter()
        .next()
        .with_context(|| format!("no --goal given and no PNG or JPEG in {}", goals.display()))
}

/// The arm, the camera, and the virtual rig behind them with --sim.
struct Rig {
    arm: Arm,
    camera: Box<dyn FrameSource>,
    frame_px: (u32, u32),
    sim: Option<SimHandle>,
}

fn firmware(cli: &Cli) -> Result<FirmwareConfig> {
    match &cli.firmware {
        Some(path) => Ok(FirmwareConfig::load(path)?),
        None => Ok(FirmwareConfig::wx250s()),
    }
}

fn driver_config(cli: &Cli) -> Result<DriverConfig> {
    match &cli.driver_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading driver config {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("driver config {}", path.display()))
        }
        None => Ok(DriverConfig::default()),
    }
}

fn open_rig(cli: &Cli, config: &RuntimeConfig) -> Result<Rig> {
    let folder = |path: &Path| -> Result<Box<dyn FrameSource>> {
        let options = camera::FolderOptions {
            fps: config.camera.folder_fps,
            looping: true,
        };
        Ok(Box::new(
            camera::FolderSource::open(path, options)
                .with_context(|| format!("camera folder {}", path.display()))?,
        ))
    };
    if cli.sim {
        let sim = SimHandle::spawn(cli.sim_seed)?;
        let arm = sim.connect()?;
        let (camera, frame_px): (Box<dyn FrameSource>, _) = match &cli.camera_folder {
            Some(path) => (
                folder(path)?,
                (config.camera.width_px, config.camera.height_px),
            ),
            None => sim.camera(config.camera.sim_fps)?,
        };
        return Ok(Rig {
            arm,
            camera,
            frame_px,
            sim: Some(sim),
        });
    }
    let arm = Arm::connect(&cli.port, firmware(cli)?, driver_config(cli)?)
        .with_context(|| format!("connecting to the arm on {}", cli.port.display()))?;
    let frame_px = (config.camera.width_px, config.camera.height_px);
    let camera = match &cli.camera_folder {
        Some(path) => folder(path)?,
        None => usb_camera(config)?,
    };
    Ok(Rig {
        arm,
        camera,
        frame_px,
        sim: None,
    })
}

#[cfg(feature = "v4l2")]
fn usb_camera(config: &RuntimeConfig) -> Result<Box<dyn FrameSource>> {
    use camera::{PixelFormat, V4l2Camera, V4l2Config, V4l2Device};
    let c = &config.camera;
    let device = match c.device.parse::<u32>() {
        Ok(index) => V4l2Device::Index(index),
        Err(_) => V4l2Device::Name(c.device.clone()),
    };
    let format = if c.pixel_format == "yuyv" {
        PixelFormat::Yuyv
    } else {
        PixelFormat::Mjpeg
    };
    let camera = V4l2Camera::open(V4l2Config {
        device,
        width_px: c.width_px,
        height_px: c.height_px,
        fps: c.fps,
        format,
    })
    .with_context(|| format!("opening camera {}", c.device))?;
    Ok(Box::new(camera))
}

#[cfg(not(feature = "v4l2"))]
fn usb_camera(_config: &RuntimeConfig) -> Result<Box<dyn FrameSource>> {
    bail!(
        "this bridge-run is built without USB camera support: rebuild with `cargo build --release -p bridge-run --features v4l2` \
         (needs `apt install libclang-dev`), or pass --camera-folder DIR or --sim"
    )
}

/// Sends Quit when SIGINT or SIGTERM arrives; a second signal exits at once.
fn watch_signals(commands: crossbeam_channel::Sender<OperatorCommand>) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // A second signal while the first is being handled ends the process (exit status 1).
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&flag))?;
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    std::thread::Builder::new()
        .name("bridge-run-signals".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            tracing::warn!("signal received: parking, then torque off");
            let _ = commands.send(OperatorCommand::Quit);
        })?;
    Ok(())
}

fn status_sink() -> Option<bridge_run::monitor::StatusSink> {
    use std::io::IsTerminal;
    std::io::stderr()
        .is_terminal()
        .then(|| Box::new(std::io::stderr()) as bridge_run::monitor::StatusSink)
}

/// The checked inputs of a run: everything that can be wrong with them is found before the arm
/// is touched.
struct Checked {
    policy: MqePolicy,
    goal: GoalImage,
    rig: Rig,
    /// With --sim and a task's goal image: the task, judged after each episode.
    sim_task: Option<SimTask>,
}

fn check_inputs(cli: &Cli, config: &RuntimeConfig) -> Result<Checked> {
    if !cli.no_keyboard && !keyboard::has_terminal() {
        bail!(
            "standard input is not a terminal: the keyboard override needs one; pass --no-keyboard to run without it (Ctrl-C and SIGTERM still park)"
        );
    }
    if cli.episodes == 0 {
        bail!("--episodes must be at least 1");
    }
    if cli.sim {
        run_sim::available()?;
    }
    let policy = load_policy(cli)?;
    let goal_file = goal_path(cli)?;
    let expected_px = if cli.sim && cli.camera_folder.is_none() {
        Some(SIM_FRAME_PX)
    } else {
        Some((config.camera.width_px, config.camera.height_px))
    };
    let goal = GoalImage::load(&goal_file, policy.input_view(), expected_px)
        .with_context(|| format!("goal image {}", goal_file.display()))?;
    let rig = open_rig(cli, config)?;
    let sim_task = match &rig.sim {
        Some(sim) => SimTask::place(&checkpoint_dir(cli)?, &goal_file, sim)?.map(|(task, line)| {
            say(&line);
            task
        }),
        None => None,
    };
    if Some(rig.frame_px) != expected_px {
        bail!(
            "the camera delivers {}x{} px frames but the goal was checked against {}",
            rig.frame_px.0,
            rig.frame_px.1,
            expected_px.map_or("no frame size".to_string(), |(w, h)| format!("{w}x{h} px"))
        );
    }
    Ok(Checked {
        policy,
        goal,
        rig,
        sim_task,
    })
}

fn drive(cli: &Cli, config: RuntimeConfig) -> Result<ExitCode> {
    let Checked {
        policy,
        goal,
        rig,
        sim_task,
    } = match check_inputs(cli, &config) {
        Ok(checked) => checked,
        Err(e) => {
            say(&format!("bridge-run: refused: {}", mqe::error_text(&*e)));
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
    };
    let max_steps = config.episode.max_steps;
    let options = RuntimeOptions {
        status_line: status_sink().filter(|_| !cli.no_keyboard),
        collector: collector(cli),
        run_record: RunRecord {
            sim_seed: cli.sim.then_some(cli.sim_seed),
            ..RunRecord::of_process(&checkpoint_dir(cli)?)
        },
        episodes_planned: Some(cli.episodes as u64),
        ..RuntimeOptions::default()
    };
    let mut runtime = Runtime::start(config, rig.arm, rig.camera, Box::new(policy), options)?;
    watch_signals(runtime.commands())?;
    let keyboard = if cli.no_keyboard {
        None
    } else {
        say(keyboard::HELP);
        Some(Keyboard::start(runtime.commands()).context("starting the keyboard override")?)
    };
    let episodes = Episodes {
        goal: &goal,
        max_steps,
        sim_task: sim_task.as_ref(),
        keyboard: keyboard.is_some(),
    };
    let end = run_episodes(cli, &mut runtime, &episodes);
    let stopped = settle_and_stop(runtime, keyboard.is_some());
    drop(keyboard);
    let end = end?;
    stopped?;
    Ok(end.exit_code())
}

/// The end of every run: a hold after a fault or an emergency waits for the operator
/// ([`settle_hold`]), then the runtime parks (unless torque is already off) and stops, and the
/// operator is told how the arm was left.
fn settle_and_stop(runtime: Runtime, keyboard: bool) -> Result<()> {
    let unattended_hold_s = runtime.config().safety.unattended_hold_s;
    let settled = settle_hold(&runtime, keyboard, unattended_hold_s);
    let before_stop = runtime.status().mode;
    let stopped = runtime.park_and_stop();
    settled?;
    stopped?;
    say(match before_stop {
        Mode::TorqueOff => "bridge-run: torque off where the arm stands (not parked)",
        _ => "bridge-run: parked, torque off",
    });
    Ok(())
}

/// Who the recordings of this run come from (`collection.toml`): the simulator with --sim.
fn collector(cli: &Cli) -> Collector {
    if cli.sim {
        Collector::Simulator
    } else {
        Collector::Robot
    }
}

/// How a run ended; its exit status tells them apart (README, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunEnd {
    /// Every requested episode ran to its end (and, with --sim on a task, reached its goal): 0.
    Completed,
    /// With --sim on a task: every episode ran to its end, but the simulator judged that at
    /// least one did not reach the goal: 6.
    GoalNotReached,
    /// The safety supervisor stopped an episode: 3.
    Fault,
    /// The operator's emergency stop (e, Esc) ended it: 4.
    Emergency,
    /// The operator ended it early (h, q, Ctrl-C, SIGTERM): 5.
    OperatorAbort,
}

/// Anything else went wrong (the arm could not be parked, a thread died): 1.
const EXIT_ERROR: u8 = 1;
/// Bad input (arguments, configuration, checkpoint, goal), refused before the arm moved: 2.
const EXIT_REFUSED: u8 = 2;

impl RunEnd {
    fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            RunEnd::Completed => 0,
            RunEnd::GoalNotReached => 6,
            RunEnd::Fault => 3,
            RunEnd::Emergency => 4,
            RunEnd::OperatorAbort => 5,
        })
    }

    fn of_episode(end: Option<EpisodeEnd>, faulted: bool) -> RunEnd {
        match end {
            _ if faulted => RunEnd::Fault,
            Some(EpisodeEnd::Completed) => RunEnd::Completed,
            Some(EpisodeEnd::Fault(_)) => RunEnd::Fault,
            Some(EpisodeEnd::Operator(OperatorCommand::Emergency)) => RunEnd::Emergency,
            Some(EpisodeEnd::Operator(_)) | None => RunEnd::OperatorAbort,
        }
    }
}

/// What each episode of a run is asked to do.
struct Episodes<'a> {
    goal: &'a GoalImage,
    max_steps: usize,
    /// With --sim and a task: reset its blocks before each episode but the first, judge after.
    sim_task: Option<&'a SimTask>,
    /// An operator is at the keyboard (after a park they may reboot a servo and resume).
    keyboard: bool,
}

/// Runs the episodes until one does not run to its end; with a sim task, each starts from the
/// task's start scene and is judged at its end. After a servo's hardware error parks the arm,
/// an operator at the keyboard may reboot it and run the episode again; the run still ends
/// with the fault's exit code.
fn run_episodes(cli: &Cli, runtime: &mut Runtime, plan: &Episodes<'_>) -> Result<RunEnd> {
    let mut missed = 0;
    let mut faulted = false;
    let mut completed = 0;
    let mut started = 0;
    while completed < cli.episodes {
        if let Some(task) = plan.sim_task
            && started > 0
        {
            task.reset_blocks()?;
        }
        started += 1;
        let report = match runtime.run_episode(plan.goal, plan.max_steps) {
            Ok(report) => report,
            Err(bridge_run::RunError::Stopped { .. }) => return Ok(RunEnd::OperatorAbort),
            Err(e) => return Err(e.into()),
        };
        say(&report.summary);
        if let Some(dir) = &report.recording {
            say(&format!("  recording: {}", dir.display()));
        }
        if let Some(dir) = &report.report_dir {
            say(&format!("  report:    {}", dir.display()));
        }
        let end = RunEnd::of_episode(report.end, report.fault.is_some());
        if end != RunEnd::Completed {
            if plan.keyboard && parked_by_a_servo_error(runtime, report.fault.as_ref()) {
                faulted = true;
                if offer_reboot(runtime)? == AfterPark::Resume {
                    continue;
                }
            }
            return Ok(end);
        }
        completed += 1;
        if let Some(task) = plan.sim_task {
            let (reached, line) = task.judge();
            say(&line);
            missed += usize::from(!reached);
        }
    }
    Ok(if faulted {
        RunEnd::Fault
    } else if missed > 0 {
        RunEnd::GoalNotReached
    } else {
        RunEnd::Completed
    })
}

/// Whether a servo's hardware error ended the episode and the arm is parked, torque off.
fn parked_by_a_servo_error(runtime: &Runtime, fault: Option<&Fault>) -> bool {
    matches!(fault, Some(Fault::Hardware { .. })) && runtime.status().mode == Mode::Done
}

/// Tells the operator the arm is parked after a servo error and waits for their choice.
fn offer_reboot(runtime: &Runtime) -> Result<AfterPark> {
    say(
        "bridge-run: parked, torque off, after the servo error above. b: reboot the faulted servo; \
         then space: run the episode again, or q: quit",
    );
    let choice = runtime
        .await_operator_after_park()
        .context("waiting for the operator after the park")?;
    if choice == AfterPark::Resume {
        say("bridge-run: resuming: the episode runs again from the start pose");
    }
    Ok(choice)
}

/// After a fault or an emergency the arm holds where it stopped, torque on, and only the
/// operator moves it on: with a keyboard this waits for h (park), q (park and quit) or e;
/// without one it holds `unattended_hold_s`, then cuts torque where the arm stands.
fn settle_hold(runtime: &Runtime, keyboard: bool, unattended_hold_s: f64) -> Result<()> {
    let status = runtime.status();
    if !status.mode.awaits_operator() {
        return Ok(());
    }
    let why = status
        .last_fault
        .map_or_else(|| "emergency stop".to_string(), |f| f.to_string());
    let holds = format!("the arm holds where it stopped, torque on ({why})");
    let awaiting = || runtime.status().mode.awaits_operator();
    if keyboard {
        let e = if status.mode == Mode::EmergencyHold {
            "e: torque off where it stands"
        } else {
            "e: emergency freeze"
        };
        say(&format!(
            "bridge-run: {holds}. Only you move it now: h park, q park and quit, {e}"
        ));
        while awaiting() {
            std::thread::sleep(Duration::from_millis(20));
        }
        return Ok(());
    }
    say(&format!(
        "bridge-run: {holds}; no keyboard: torque goes off where it stands in {unattended_hold_s} s (safety.unattended_hold_s); Ctrl-C parks now"
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(unattended_hold_s);
    while awaiting() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if awaiting() {
        runtime
            .cut_torque_unattended(Duration::from_secs(5))
            .context("cutting torque after the unattended hold")?;
    }
    Ok(())
}

fn bench(cli: &Cli, mut config: RuntimeConfig, seconds: f64, size_px: usize) -> Result<ExitCode> {
    if !cli.sim {
        bail!("bench runs on the virtual arm: pass --sim");
    }
    run_sim::available()?;
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--seconds must be positive, got {seconds}");
    }
    let scratch = std::env::temp_dir().join(format!("bridge-run-bench-{}", std::process::id()));
    config.episode.recording_dir = scratch.join("recordings");
    config.episode.log_file = scratch.join("bridge-run.log");
    config.episode.report = false;
    let random_dir = scratch.join("random-checkpoint");
    if cli.checkpoint.is_none() {
        random_checkpoint(&random_dir, size_px, &device(cli.device)?)?;
    }
    let device_name = mqe::device_label(&device(cli.device)?);
    // Whether this process may have real-time priority at all (asked in a scratch thread).
    let refused = std::thread::spawn(|| {
        bridge_run::realtime::make_current_thread_realtime(80, false).scheduling
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the real-time probe thread panicked"))?
    .err();
    let mut rounds = Vec::new();
    let mut notes = Vec::new();
    let mut input_px = 0;
    for round in bridge_run::bench::Round::ALL {
        config.control.realtime_priority = if round.realtime { 80 } else { 0 };
        config.control.lock_memory = round.realtime;
        let policy = match &cli.checkpoint {
            Some(_) => load_policy(cli)?,
            None => MqePolicy::load(&random_dir, &device(cli.device)?)
                .context("loading the random-weight checkpoint")?,
        };
        input_px = policy.input_size_px();
        say(&format!("bench round: {} for {seconds} s", round.name()));
        let load = round.loaded.then(bridge_run::bench::CpuLoad::start);
        let result = bench_round(cli, &config, policy, seconds);
        drop(load);
        let result = result.with_context(|| format!("bench round {}", round.name()))?;
        for event in result.safety_events.iter().take(5) {
            say(&format!("  safety event: {event}"));
        }
        notes.push(match (&refused, round.realtime) {
            (Some(why), true) => format!("refused: {why}"),
            _ => String::new(),
        });
        rounds.push((round, result));
    }
    println!(
        "bridge-run bench: sim, {seconds} s per round; control {:.0} Hz, policy {:.0} Hz; {input_px} px input on {device_name}",
        1.0 / config.control.control_period_s,
        1.0 / config.policy.policy_period_s,
    );
    print!(
        "{}",
        bridge_run::bench::rounds_table(&rounds, &notes, config.control.control_period_s)
    );
    if let Some(why) = refused {
        println!(
            "real-time priority: {why}. {}",
            bridge_run::realtime::GRANT_ADVICE
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(ExitCode::SUCCESS)
}

/// One bench round on a fresh virtual arm.
fn bench_round(
    cli: &Cli,
    config: &RuntimeConfig,
    policy: MqePolicy,
    seconds: f64,
) -> Result<bridge_run::bench::BenchResult> {
    let mut rig = open_rig(cli, config)?;
    let frame = rig.camera.next_frame().context("the goal frame")?;
    let goal = GoalImage::from_rgb(
        Path::new("(first sim frame)"),
        &frame.rgb,
        frame.width_px,
        frame.height_px,
        policy.input_view(),
    )?;
    let mut runtime = Runtime::start(
        config.clone(),
        rig.arm,
        rig.camera,
        Box::new(policy),
        RuntimeOptions::default(),
    )?;
    let result = bridge_run::bench::run(&mut runtime, &goal, Duration::from_secs_f64(seconds));
    let stopped = runtime.park_and_stop();
    let result = result?;
    stopped?;
    Ok(result)
}

/// A pixel checkpoint with random weights (default architecture) for timing.
fn random_checkpoint(dir: &Path, size_px: usize, device: &Device) -> Result<()> {
    let model = mqe::ModelConfig::pixels(size_px, 3, 7);
    let agent = mqe::Agent::new(model, mqe::TrainConfig::pixels(), device)?;
    let meta = mqe::CheckpointMeta {
        dataset: "random weights (bridge-run bench)".into(),
        episodes: 0,
        rows: 0,
        input_crop_px: None,
        data_source: mqe::DataSource::Unknown,
    };
    agent.save_inference(dir, &meta)?;
    Ok(())
}
