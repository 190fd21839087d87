//! The station's data commands of the `bridge-run` binary: capture a goal image, teleoperate and
//! record sessions of episodes, replay a recorded episode. Each runs the same runtime (control
//! thread, supervisor, recorder) as a policy run, with a scripted or teleoperated action source
//! from `bridge_run::replay` and `bridge_run::teleop`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bridge_data::raw::{RawOptions, read_trajectory};
use bridge_run::config::RuntimeConfig;
use bridge_run::keyboard::{self, Keyboard};
use bridge_run::record::RunRecord;
use bridge_run::replay::{PoseTarget, ReplayPolicy, path_error};
use bridge_run::runtime::{EpisodeReport, Runtime, RuntimeOptions};
use bridge_run::teleop::{self, Phase, ResetChoice, TeleopKeys, TeleopPolicy};
use crossbeam_channel::Receiver;
use crossterm::event::{KeyCode, KeyEventKind};

use crate::{Cli, RunEnd, collector, open_rig, say, settle_and_stop, status_sink, watch_signals};

/// Steps the drive to `--pose` may take: across the workspace box an axis needs at most 8 steps
/// of 5 cm, a half turn of yaw 13 of 0.25 rad.
const POSE_STEPS_MAX: usize = 40;

/// Bad input found before the arm moved (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Refuses with `text`.
fn refused(text: String) -> anyhow::Error {
    anyhow::Error::new(Refused(text))
}

/// A position (and optionally a yaw) given as `x,y,z[,yaw]`, m and rad.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoseArg {
    pub xyz_m: [f64; 3],
    pub yaw_rad: Option<f64>,
}

/// Parses `x,y,z[,yaw]`.
pub fn parse_pose(text: &str) -> Result<PoseArg, String> {
    let values: Vec<f64> = text
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("`{v}` is not a finite number"))
        })
        .collect::<Result<_, _>>()?;
    match values[..] {
        [x, y, z] => Ok(PoseArg {
            xyz_m: [x, y, z],
            yaw_rad: None,
        }),
        [x, y, z, yaw] => Ok(PoseArg {
            xyz_m: [x, y, z],
            yaw_rad: Some(yaw),
        }),
        _ => Err(format!(
            "`{text}`: expected x,y,z or x,y,z,yaw (metres, radians)"
        )),
    }
}

/// The runtime's front-end options for a station command.
fn options(
    cli: &Cli,
    session_folder: &str,
    planned: Option<u64>,
    keyboard: bool,
) -> RuntimeOptions {
    RuntimeOptions {
        status_line: status_sink().filter(|_| keyboard),
        collector: collector(cli),
        run_record: RunRecord {
            checkpoint: None,
            checkpoint_id: None,
            sim_seed: cli.sim.then_some(cli.sim_seed),
            command_line: std::env::args().collect(),
        },
        episodes_planned: planned,
        session_folder: session_folder.to_string(),
        ..RuntimeOptions::default()
    }
}

fn require_keyboard(cli: &Cli, what: &str) -> Result<()> {
    if cli.no_keyboard {
        return Err(refused(format!(
            "{what} needs the keyboard; run it without --no-keyboard"
        )));
    }
    if !keyboard::has_terminal() {
        return Err(refused(format!(
            "{what} needs a terminal on standard input for the keyboard (or pass --no-keyboard where the command allows it)"
        )));
    }
    Ok(())
}

/// Ends a runtime as `bridge-run` does ([`settle_and_stop`]), with `end`'s exit status.
fn finish(runtime: Runtime, keyboard: bool, end: RunEnd) -> Result<ExitCode> {
    settle_and_stop(runtime, keyboard)?;
    Ok(end.exit_code())
}

/// `bridge-run capture-goal`: optionally drives to `--pose` first, then saves a camera frame at
/// the camera's frame size. With the keyboard it refreshes a preview PNG and saves on Enter;
/// without, it saves at once.
pub fn capture_goal(
    cli: &Cli,
    mut config: RuntimeConfig,
    out: &Path,
    pose: Option<PoseArg>,
    preview: Option<&Path>,
) -> Result<ExitCode> {
    if !cli.no_keyboard {
        require_keyboard(cli, "capture-goal")?;
    }
    if let Some(pose) = pose {
        check_in_workspace(&config, pose)?;
    }
    config.episode.record = false;
    config.episode.report = false;
    let rig = open_rig(cli, &config)?;
    let frame_px = rig.frame_px;
    let limits = config.action.step_limits();
    let source = PoseTarget::new(
        pose.map_or([0.0; 3], |p| p.xyz_m),
        pose.and_then(|p| p.yaw_rad),
        limits,
    );
    let goal = teleop::no_goal(&source, frame_px)?;
    let keyboard = !cli.no_keyboard;
    let mut runtime = Runtime::start(
        config,
        rig.arm,
        rig.camera,
        Box::new(source),
        options(cli, "goals", None, keyboard),
    )?;
    watch_signals(runtime.commands())?;
    if let Some(pose) = pose {
        say(&format!("bridge-run: driving to {}", describe_pose(pose)));
        let report = runtime.run_episode(&goal, POSE_STEPS_MAX)?;
        let end = RunEnd::of_episode(report.end, report.fault.is_some());
        if end != RunEnd::Completed {
            say(&report.summary);
            return finish(runtime, keyboard, end);
        }
        let at = report.final_state;
        say(&format!(
            "bridge-run: at x {:.3} y {:.3} z {:.3} m, yaw {:.2} rad",
            at[0], at[1], at[2], at[5]
        ));
    }
    let saved = if keyboard {
        capture_on_key(&runtime, out, preview.unwrap_or(&default_preview(out)))?
    } else {
        save_frame(&runtime, out)?;
        true
    };
    let stopped = runtime.park_and_stop();
    stopped?;
    if saved {
        say(&format!(
            "bridge-run: goal image {} ({}x{} px); arm parked, torque off",
            out.display(),
            frame_px.0,
            frame_px.1
        ));
        Ok(ExitCode::SUCCESS)
    } else {
        say("bridge-run: no goal image saved (q); arm parked, torque off");
        Ok(RunEnd::OperatorAbort.exit_code())
    }
}

fn describe_pose(pose: PoseArg) -> String {
    let [x, y, z] = pose.xyz_m;
    match pose.yaw_rad {
        Some(yaw) => format!("x {x:.3} y {y:.3} z {z:.3} m, yaw {yaw:.2} rad"),
        None => format!("x {x:.3} y {y:.3} z {z:.3} m"),
    }
}

fn check_in_workspace(config: &RuntimeConfig, pose: PoseArg) -> Result<()> {
    let w = &config.workspace;
    if w.distance_outside_m(pose.xyz_m) > 0.0 {
        return Err(refused(format!(
            "--pose {} lies outside the workspace box x {:.3}..{:.3}, y {:.3}..{:.3}, z {:.3}..{:.3} m ([workspace] of the configuration)",
            describe_pose(pose),
            w.min_m[0],
            w.max_m[0],
            w.min_m[1],
            w.max_m[1],
            w.min_m[2],
            w.max_m[2]
        )));
    }
    Ok(())
}

fn default_preview(out: &Path) -> PathBuf {
    out.with_extension("preview.png")
}

/// Writes the newest camera frame to `out` (PNG or JPEG by its extension).
fn save_frame(runtime: &Runtime, out: &Path) -> Result<()> {
    let frame = runtime
        .fresh_frame(Duration::from_secs(2))
        .context("the camera delivered no frame")?;
    let image = image::RgbImage::from_raw(frame.width_px, frame.height_px, frame.rgb.clone())
        .context("the camera frame does not match its size")?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Written beside the target, then renamed: a reader never sees half an image.
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("png");
    let partial = out.with_extension(format!("partial.{ext}"));
    image
        .save(&partial)
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

/// Refreshes `preview` twice a second until Enter (save to `out`, true) or q (false).
fn capture_on_key(runtime: &Runtime, out: &Path, preview: &Path) -> Result<bool> {
    let (keys, pressed) = crossbeam_channel::bounded(16);
    let _keyboard = Keyboard::start_with(
        move |key| {
            if key.kind == KeyEventKind::Release {
                return true;
            }
            let _ = keys.try_send(key.code);
            true
        },
        runtime.commands(),
    )
    .context("starting the keyboard")?;
    say(&format!(
        "bridge-run: live preview in {} (refreshed twice a second). Enter: save the goal to {} | q: quit without saving",
        preview.display(),
        out.display()
    ));
    loop {
        save_frame(runtime, preview)?;
        match pressed.recv_timeout(Duration::from_millis(500)) {
            Ok(KeyCode::Enter | KeyCode::Char('c')) => {
                save_frame(runtime, out)?;
                return Ok(true);
            }
            Ok(KeyCode::Char('q' | 'Q') | KeyCode::Esc) => return Ok(false),
            _ if runtime.status().quit_requested => return Ok(false),
            _ => {}
        }
    }
}

/// `bridge-run teleop`: sessions of teleoperated episodes recorded in the BridgeData V2 raw
/// layout, with a reset period after each (n keep, r discard and redo, q keep and quit).
/// What `bridge-run teleop` is told.
pub struct TeleopArgs<'a> {
    pub task: &'a str,
    pub episodes: usize,
    pub steps: Option<usize>,
    pub gamepad: bool,
}

pub fn teleop(cli: &Cli, mut config: RuntimeConfig, args: &TeleopArgs<'_>) -> Result<ExitCode> {
    let TeleopArgs {
        task,
        episodes,
        steps,
        gamepad,
    } = *args;
    require_keyboard(cli, "teleop")?;
    if gamepad && !cfg!(feature = "gamepad") {
        return Err(refused(
            "this bridge-run is built without gamepad support: rebuild with `cargo build --release -p bridge-run --features gamepad` (needs apt install libudev-dev pkg-config)".into(),
        ));
    }
    if episodes == 0 {
        return Err(refused("--episodes must be at least 1".into()));
    }
    if task.trim().is_empty() {
        return Err(refused(
            "--task is empty; give the language instruction, for example --task \"put the red block in the bowl\"".into(),
        ));
    }
    config.episode.language = Some(task.trim().to_string());
    config.episode.report = false;
    config.episode.record = true;
    let max_steps = steps.unwrap_or(config.episode.max_steps);
    let rig = open_rig(cli, &config)?;
    let keys = TeleopKeys::new(config.teleop.clone());
    let source = TeleopPolicy::new(keys.clone(), config.policy.policy_period_s);
    let goal = teleop::no_goal(&source, rig.frame_px)?;
    let folder = task_folder(task);
    let mut runtime = Runtime::start(
        config,
        rig.arm,
        rig.camera,
        Box::new(source),
        options(cli, &folder, Some(episodes as u64), true),
    )?;
    watch_signals(runtime.commands())?;
    let (choice_tx, choices) = crossbeam_channel::bounded(16);
    let commands = runtime.commands();
    let handler_keys = keys.clone();
    let mut session = Session::default();
    let result = {
        // Both input threads stop at the end of this block, before the terminal is used again.
        let _pad = gamepad
            .then(|| start_gamepad(&keys, runtime.commands(), choice_tx.clone()))
            .transpose()?;
        let _keyboard = Keyboard::start_with(
            move |key| handler_keys.handle(key, &commands, &choice_tx),
            runtime.commands(),
        )
        .context("starting the keyboard")?;
        say(teleop::HELP);
        record_session(
            &mut runtime,
            &keys,
            &choices,
            &goal,
            episodes,
            max_steps,
            &mut session,
        )
    };
    let renumbered = renumber(runtime.session_dir());
    say(&format!(
        "bridge-run: session {}: {} episode(s) kept, {} discarded",
        runtime.session_dir().display(),
        session.kept,
        session.discarded
    ));
    let end = result?;
    renumbered.context("numbering the kept episodes")?;
    if end != RunEnd::Completed {
        // The arm holds after a fault or an emergency: keys go to the mode machine again.
        let _keyboard = Keyboard::start(runtime.commands()).context("starting the keyboard")?;
        return finish(runtime, true, end);
    }
    finish(runtime, true, end)
}

#[cfg(feature = "gamepad")]
type Pad = bridge_run::gamepad::Gamepad;
/// Without the feature there is never a gamepad ([`start_gamepad`] refuses).
#[cfg(not(feature = "gamepad"))]
struct Pad;

/// Starts the gamepad thread beside the keyboard (checked above: the feature is built).
fn start_gamepad(
    keys: &TeleopKeys,
    commands: crossbeam_channel::Sender<bridge_run::OperatorCommand>,
    choices: crossbeam_channel::Sender<ResetChoice>,
) -> Result<Pad> {
    #[cfg(feature = "gamepad")]
    {
        let pad = bridge_run::gamepad::Gamepad::start(keys.clone(), commands, choices)
            .map_err(|e| refused(format!("--gamepad: {e}")))?;
        say(
            "gamepad: left stick x/y, right stick z/yaw; South gripper, Start end episode, Select pause, East emergency; reset period: South keep, West redo, North keep and quit",
        );
        Ok(pad)
    }
    #[cfg(not(feature = "gamepad"))]
    {
        let _ = (keys, commands, choices);
        Err(refused(
            "--gamepad needs a build with --features gamepad".into(),
        ))
    }
}

#[derive(Debug, Default)]
struct Session {
    kept: usize,
    discarded: usize,
}

/// Records episodes until `episodes` are kept or the operator quits.
fn record_session(
    runtime: &mut Runtime,
    keys: &TeleopKeys,
    choices: &Receiver<ResetChoice>,
    goal: &bridge_run::policy::GoalImage,
    episodes: usize,
    max_steps: usize,
    session: &mut Session,
) -> Result<RunEnd> {
    while session.kept < episodes {
        keys.set_phase(Phase::Episode);
        while choices.try_recv().is_ok() {}
        let report = match runtime.run_episode(goal, max_steps) {
            Ok(report) => report,
            Err(bridge_run::RunError::Stopped { .. }) => return Ok(RunEnd::OperatorAbort),
            Err(e) => return Err(e.into()),
        };
        say(&report.summary);
        let end = RunEnd::of_episode(report.end, report.fault.is_some());
        if end != RunEnd::Completed {
            if let Some(dir) = &report.recording {
                say(&format!("  recorded as aborted: {}", dir.display()));
            }
            return Ok(end);
        }
        keys.set_phase(Phase::Reset);
        say(&format!(
            "bridge-run: episode {} recorded ({} steps). {}",
            session.kept + session.discarded + 1,
            report.steps,
            teleop::RESET_HELP
        ));
        match await_choice(runtime, choices)? {
            Some(ResetChoice::Redo) => {
                discard(&report)?;
                session.discarded += 1;
            }
            Some(ResetChoice::Next) => session.kept += 1,
            Some(ResetChoice::Quit) => {
                session.kept += 1;
                return Ok(RunEnd::Completed);
            }
            None => return Ok(RunEnd::OperatorAbort),
        }
    }
    Ok(RunEnd::Completed)
}

/// The operator's reset-period choice; `None` when they quit another way (Ctrl-C, SIGTERM).
fn await_choice(runtime: &Runtime, choices: &Receiver<ResetChoice>) -> Result<Option<ResetChoice>> {
    loop {
        match choices.recv_timeout(Duration::from_millis(100)) {
            Ok(choice) => return Ok(Some(choice)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                bail!("the keyboard stopped during the reset period")
            }
        }
        let status = runtime.status();
        if status.quit_requested || status.mode.awaits_operator() {
            return Ok(None);
        }
    }
}

/// Deletes a discarded episode's recording: it never reaches the dataset.
fn discard(report: &EpisodeReport) -> Result<()> {
    if let Some(dir) = &report.recording {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("deleting the discarded episode {}", dir.display()))?;
        say(&format!("  discarded: {} deleted", dir.display()));
    }
    Ok(())
}

/// The session's task folder: the instruction in lower case, words joined by `_`.
fn task_folder(task: &str) -> String {
    let words: Vec<String> = task
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if words.is_empty() {
        "teleop".into()
    } else {
        words.join("_")
    }
}

/// Renames the kept `traj<N>` directories of the session to `traj0..trajK-1`, in order, after
/// discards left gaps (Bridge's layout numbers them without gaps).
fn renumber(session: &Path) -> Result<()> {
    let group = session.join("raw").join("traj_group0");
    let Ok(entries) = std::fs::read_dir(&group) else {
        return Ok(()); // nothing recorded
    };
    let mut numbered: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let n = p
                .file_name()?
                .to_str()?
                .strip_prefix("traj")?
                .parse()
                .ok()?;
            Some((n, p))
        })
        .collect();
    numbered.sort();
    for (index, (n, path)) in numbered.into_iter().enumerate() {
        if n != index as u64 {
            let to = group.join(format!("traj{index}"));
            std::fs::rename(&path, &to)
                .with_context(|| format!("renaming {} to {}", path.display(), to.display()))?;
        }
    }
    Ok(())
}

/// `bridge-run replay DIR`: drives the arm through a recorded episode's actions from the start
/// pose, with the supervisor on, and reports the end-effector path error against the recording.
pub fn replay(cli: &Cli, mut config: RuntimeConfig, trajectory: &Path) -> Result<ExitCode> {
    let recorded = read_trajectory(trajectory, &RawOptions::default()).map_err(|e| {
        refused(format!(
            "the recorded episode {}: {}",
            trajectory.display(),
            mqe::error_text(&e)
        ))
    })?;
    if recorded.actions.is_empty() {
        return Err(refused(format!(
            "{} holds no action to replay",
            trajectory.display()
        )));
    }
    config.episode.record = false;
    config.episode.report = false;
    let keyboard = !cli.no_keyboard;
    if keyboard {
        require_keyboard(cli, "replay")?;
    }
    let rig = open_rig(cli, &config)?;
    let limits = config.action.step_limits();
    let first_state = recorded.states[0].map(f64::from);
    let (source, observed) =
        ReplayPolicy::from_start(recorded.actions.clone(), first_state, limits);
    let goal = teleop::no_goal(&source, rig.frame_px)?;
    let steps = recorded.actions.len();
    let mut runtime = Runtime::start(
        config,
        rig.arm,
        rig.camera,
        Box::new(source),
        options(cli, "replay", Some(1), keyboard),
    )?;
    watch_signals(runtime.commands())?;
    let _keyboard = if keyboard {
        say(keyboard::HELP);
        Some(Keyboard::start(runtime.commands()).context("starting the keyboard override")?)
    } else {
        None
    };
    say(&format!(
        "bridge-run: replaying {} ({steps} actions), from its first pose x {:.3} y {:.3} z {:.3} m, yaw {:.2} rad",
        trajectory.display(),
        first_state[0],
        first_state[1],
        first_state[2],
        first_state[5]
    ));
    let started = Instant::now();
    let report = runtime.run_episode(&goal, steps + ReplayPolicy::LEAD_IN_STEPS)?;
    say(&report.summary);
    let end = RunEnd::of_episode(report.end, report.fault.is_some());
    let mut replayed = observed.take();
    if end == RunEnd::Completed {
        replayed.push(report.final_state);
    }
    match path_error(&recorded.states, &replayed) {
        Some(error) => say(&format!(
            "bridge-run: replay of {} in {:.1} s: {error}",
            trajectory.display(),
            started.elapsed().as_secs_f64()
        )),
        None => say("bridge-run: no step was replayed; no path to compare"),
    }
    finish(runtime, keyboard, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poses_parse_with_and_without_yaw() {
        assert_eq!(
            parse_pose("0.3,0,0.1"),
            Ok(PoseArg {
                xyz_m: [0.3, 0.0, 0.1],
                yaw_rad: None
            })
        );
        assert_eq!(
            parse_pose(" 0.3, 0.05 ,0.1,0.5").map(|p| p.yaw_rad),
            Ok(Some(0.5))
        );
        assert!(parse_pose("0.3,0").is_err());
        assert!(parse_pose("0.3,x,0.1").is_err());
        assert!(parse_pose("0.3,0,NaN").is_err());
    }

    #[test]
    fn task_folders_are_plain_words() {
        assert_eq!(
            task_folder("Put the red block, in the BOWL!"),
            "put_the_red_block_in_the_bowl"
        );
        assert_eq!(task_folder("  ...  "), "teleop");
    }

    #[test]
    fn renumbering_closes_the_gaps_discards_leave() {
        let dir = tempfile::tempdir().unwrap();
        let group = dir.path().join("raw").join("traj_group0");
        for n in [0, 2, 3] {
            std::fs::create_dir_all(group.join(format!("traj{n}"))).unwrap();
            std::fs::write(group.join(format!("traj{n}")).join("mark"), n.to_string()).unwrap();
        }
        renumber(dir.path()).unwrap();
        for (index, n) in [(0, 0), (1, 2), (2, 3)] {
            let mark =
                std::fs::read_to_string(group.join(format!("traj{index}")).join("mark")).unwrap();
            assert_eq!(mark, n.to_string());
        }
        assert!(!group.join("traj3").exists());
    }
}
