//! `bridge-sim collect`: scripted play episodes on the virtual tabletop, recorded in the
//! BridgeData V2 raw layout.
//!
//! Each worker runs its own virtual arm with a tabletop, drives it through the real driver over
//! the pty exactly as `bridge-run` would (5 Hz Bridge actions, non-blocking moves of 1.25 steps),
//! renders the scene camera and records every step with `RawEpisodeWriter`. The simulation runs
//! in real time, so throughput comes from workers in parallel and, optionally, from running the
//! whole world faster (`--time-scale`: every duration, the servo move time, the control period
//! and the gripper's speed scaled together, so each step looks the same as at real time;
//! recorded time stamps and velocities are converted back to real time).

use bridge_data::provenance::{Collection, Collector};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bridge_data::raw::{RawEpisodeWriter, RawStep};
use image::ExtendedColorType;
use image::codecs::jpeg::JpegEncoder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use widowx::bridge::{bridge_state, bridge_target_pose, open_fraction_of_finger_m};
use widowx::firmware::FirmwareConfig;
use widowx::joints::{ARM_JOINTS, BRIDGE_NEUTRAL_POSE_RAD};
use widowx::kinematics::{IkConfig, forward, inverse};
use widowx_driver::{Arm, DriverConfig, Effort, JointState};
use widowx_sim::render::{CameraModel, RenderStyle, Renderer};
use widowx_sim::tabletop::random_block_positions;
use widowx_sim::{SceneHandle, SimConfig, TabletopConfig, VirtualArm};

use crate::commander::Commander;
use crate::play::{Behaviour, PlayObservation, PlayPolicy};

/// Bridge's control period, s, and the servo move time per step (1.25 periods).
const PERIOD_S: f64 = 0.2;
const MOVE_TIME_S: f64 = 0.25;
/// The reset: the Bridge start pose (with a little noise), reached in this long.
const RESET_XYZ_M: [f64; 3] = widowx::bridge::START_XYZ_M;
const RESET_MOVE_S: f64 = 1.0;
/// The reset waits at most this long for the arm to arrive and the gripper to open, s.
const RESET_TIMEOUT_S: f64 = 4.0;
/// The arm has arrived when every joint is this close to its goal, rad.
const ARRIVED_RAD: f64 = 0.01;
/// The gripper counts as open beyond this finger position, m.
const OPEN_FINGER_M: f64 = 0.031;
/// A pick-and-place counts as done when the block rests this close to its target, m.
const PLACED_M: f64 = 0.03;
/// Episodes per `traj_group<k>` directory.
const GROUP_SIZE: usize = 100;
/// Attempts at one episode before the bus counts as dead rather than hiccuping.
const MAX_ATTEMPTS: usize = 3;
/// Slowest world speed-up allowed by the gripper: its PWM (350 at full pressure) scaled by
/// 1 / time_scale must stay within the servo's 885.
const MIN_TIME_SCALE: f64 = 0.4;

#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    /// Root of the recording; episodes go to `OUT/<task>/00/<date_time>/raw/traj_group<k>/traj<i>`.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Number of episodes.
    #[arg(long)]
    pub episodes: usize,
    /// Seed of the start scenes and the policy's choices (episode i uses seed and i).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Policy steps per episode (observations: one more).
    #[arg(long, default_value_t = 35)]
    pub steps: usize,
    /// Virtual arms collecting in parallel (each needs about 6% of a core at real time).
    #[arg(long, default_value_t = 16)]
    pub workers: usize,
    /// Duration of one simulated second in wall seconds (0.4..=1; 1 = real time). Every motion
    /// scales, so the recorded episodes are the same as at real time.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Jitter lighting and colours per episode.
    #[arg(long)]
    pub jitter: bool,
    /// Gripper pressure (0..=1; Goal_PWM 150..350 at real time).
    #[arg(long, default_value_t = 1.0)]
    pub gripper_pressure: f64,
    /// Task directory name.
    #[arg(long, default_value = "sim_play")]
    pub task: String,
    /// Camera calibration (TOML); default: the shipped calibration/camera.toml.
    #[arg(long, value_name = "FILE")]
    pub camera: Option<PathBuf>,
    /// JPEG quality of the frames (1..=100).
    #[arg(long, default_value_t = 85)]
    pub jpeg_quality: u8,
}

/// What one episode did.
#[derive(Debug, Clone)]
struct EpisodeSummary {
    behaviour: Behaviour,
    missed_grasp: bool,
    /// For a pick-and-place: whether the block ended on the table at its target.
    placed: Option<bool>,
    /// Steps that started, or sent their command, more than a quarter period late (a busy
    /// machine).
    late_steps: usize,
}

/// Settings shared by the workers.
struct Plan<'a> {
    args: &'a CollectArgs,
    session_dir: PathBuf,
    camera: CameraModel,
    next_episode: AtomicUsize,
    stop: AtomicBool,
    /// Episode attempts discarded after an error (and recorded again).
    failed: AtomicUsize,
    done: Mutex<Vec<EpisodeSummary>>,
    started: Instant,
}

pub fn run(args: CollectArgs) -> anyhow::Result<()> {
    check_args(&args)?;
    let camera = match &args.camera {
        Some(path) => CameraModel::load(path).context("loading the camera calibration")?,
        None => CameraModel::c920_over_shoulder(),
    };
    let session_dir = args
        .out
        .join(&args.task)
        .join("00")
        .join(bridge_run::clock::folder_timestamp(
            bridge_run::clock::unix_time_s(),
        ))
        .join("raw");
    std::fs::create_dir_all(&session_dir)
        .with_context(|| format!("creating {}", session_dir.display()))?;
    // The session folder (the parent of raw/) says these recordings are a simulator's.
    let marker = Collection {
        source: Collector::Simulator,
    };
    if let Some(session) = session_dir.parent() {
        marker.write(session)?;
    }
    eprintln!(
        "collecting {} episodes of {} steps into {} with {} workers at time scale {}",
        args.episodes,
        args.steps,
        session_dir.display(),
        args.workers,
        args.time_scale
    );
    let plan = Plan {
        args: &args,
        session_dir,
        camera,
        next_episode: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        failed: AtomicUsize::new(0),
        done: Mutex::new(Vec::new()),
        started: Instant::now(),
    };
    let results: Vec<anyhow::Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.workers)
            .map(|worker| {
                let plan = &plan;
                scope.spawn(move || {
                    let result = run_worker(plan, worker);
                    if result.is_err() {
                        plan.stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker panicked")))
            })
            .collect()
    });
    for result in results {
        result?;
    }
    print_summary(&plan);
    Ok(())
}

fn check_args(args: &CollectArgs) -> anyhow::Result<()> {
    if args.episodes == 0 || args.steps == 0 || args.workers == 0 {
        bail!("--episodes, --steps and --workers must be at least 1");
    }
    if !(MIN_TIME_SCALE..=1.0).contains(&args.time_scale) {
        bail!(
            "--time-scale {} is outside {MIN_TIME_SCALE}..=1 (the gripper cannot speed up further)",
            args.time_scale
        );
    }
    if !(0.0..=1.0).contains(&args.gripper_pressure) {
        bail!(
            "--gripper-pressure {} is outside 0..=1",
            args.gripper_pressure
        );
    }
    if !(1..=100).contains(&args.jpeg_quality) {
        bail!("--jpeg-quality {} is outside 1..=100", args.jpeg_quality);
    }
    Ok(())
}

fn print_summary(plan: &Plan<'_>) {
    let done = plan
        .done
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let minutes = plan.started.elapsed().as_secs_f64() / 60.0;
    let count = |b: Behaviour| done.iter().filter(|e| e.behaviour == b).count();
    let missed = done.iter().filter(|e| e.missed_grasp).count();
    let placed = done.iter().filter(|e| e.placed == Some(true)).count();
    let late: usize = done.iter().map(|e| e.late_steps).sum();
    println!(
        "collected {} episodes ({} steps each) in {:.1} min: {:.1} episodes/min; \
         pick-and-place {} ({} placed at the target), lift-and-return {}, reach {}, wander {}; \
         missed grasps {}; late steps {}; episodes recorded again after a bus error {}; in {}",
        done.len(),
        plan.args.steps,
        minutes,
        done.len() as f64 / minutes.max(1e-9),
        count(Behaviour::PickPlace),
        placed,
        count(Behaviour::LiftAndReturn),
        count(Behaviour::Reach),
        count(Behaviour::Wander),
        missed,
        late,
        plan.failed.load(Ordering::Relaxed),
        plan.session_dir.display()
    );
}

/// One virtual arm working through episodes until none are left.
fn run_worker(plan: &Plan<'_>, worker: usize) -> anyhow::Result<()> {
    let args = plan.args;
    let tabletop = TabletopConfig::new(args.seed.wrapping_add(worker as u64));
    let sim = VirtualArm::spawn_tabletop(SimConfig::new(FirmwareConfig::wx250s()), tabletop)
        .context("starting a virtual tabletop")?;
    let scene = sim
        .scene_handle()
        .context("the tabletop arm has no scene")?;
    let mut arm = connect(&sim, args).context("connecting the driver to the virtual arm")?;
    let mut renderer = Renderer::new(plan.camera.clone(), RenderStyle::plain());
    while !plan.stop.load(Ordering::Relaxed) {
        let index = plan.next_episode.fetch_add(1, Ordering::Relaxed);
        if index >= args.episodes {
            break;
        }
        if args.jitter {
            renderer = Renderer::new(
                plan.camera.clone(),
                RenderStyle::jittered(episode_seed(args.seed, index)),
            );
        }
        let dir = plan
            .session_dir
            .join(format!("traj_group{}", index / GROUP_SIZE))
            .join(format!("traj{}", index % GROUP_SIZE));
        let summary = run_with_retries(plan, &mut arm, &scene, &mut renderer, index, &dir)?;
        let mut done = plan
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        done.push(summary);
        if done.len().is_multiple_of(10) || done.len() == args.episodes {
            let minutes = plan.started.elapsed().as_secs_f64() / 60.0;
            eprintln!(
                "{}/{} episodes, {:.1} episodes/min",
                done.len(),
                args.episodes,
                done.len() as f64 / minutes.max(1e-9)
            );
        }
    }
    drop(arm);
    drop(sim);
    Ok(())
}

/// Runs episode `index`; after a bus hiccup (a reply late beyond the driver's timeout on a
/// loaded machine) its partial recording is removed and the same episode recorded again, so the
/// count asked for is the count written. A bus failing [`MAX_ATTEMPTS`] times in a row is dead:
/// the error ends the worker.
fn run_with_retries(
    plan: &Plan<'_>,
    arm: &mut Arm,
    scene: &SceneHandle,
    renderer: &mut Renderer,
    index: usize,
    dir: &Path,
) -> anyhow::Result<EpisodeSummary> {
    let mut attempt = 1;
    loop {
        match run_episode(plan.args, arm, scene, renderer, index, dir) {
            Ok(summary) => return Ok(summary),
            Err(error) if attempt < MAX_ATTEMPTS => {
                let _ = std::fs::remove_dir_all(dir);
                eprintln!(
                    "episode {index} ({}) failed, recording it again: {error:#}",
                    dir.display()
                );
                plan.failed.fetch_add(1, Ordering::Relaxed);
                attempt += 1;
            }
            Err(error) => {
                return Err(error.context(format!(
                    "episode {index} ({}) failed {attempt} times",
                    dir.display()
                )));
            }
        }
    }
}

fn connect(sim: &VirtualArm, args: &CollectArgs) -> anyhow::Result<Arm> {
    let defaults = DriverConfig::default();
    // A faster world needs a proportionally faster gripper (PWM sets its speed).
    let scale_pwm = |pwm: u16| ((f64::from(pwm) / args.time_scale).round() as u16).min(885);
    let driver = DriverConfig {
        gripper_pressure: args.gripper_pressure,
        gripper_pwm_min: scale_pwm(defaults.gripper_pwm_min),
        gripper_pwm_max: scale_pwm(defaults.gripper_pwm_max),
        ..defaults
    }
    .with_reply_timeout_at_least(widowx_sim::DRIVER_REPLY_TIMEOUT_S);
    let mut arm = Arm::connect(sim.port_path(), FirmwareConfig::wx250s(), driver)?;
    arm.apply()
        .context("configuring the servos (shadow calibration)")?;
    arm.set_torque(true, None)?;
    Ok(arm)
}

fn episode_seed(seed: u64, index: usize) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (index as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

fn scaled(seconds: f64, args: &CollectArgs) -> Duration {
    Duration::from_secs_f64(seconds * args.time_scale)
}

/// Resets the scene, runs the policy for `args.steps` steps and records the episode in `dir`.
fn run_episode(
    args: &CollectArgs,
    arm: &mut Arm,
    scene: &SceneHandle,
    renderer: &mut Renderer,
    index: usize,
    dir: &Path,
) -> anyhow::Result<EpisodeSummary> {
    let mut rng = StdRng::seed_from_u64(episode_seed(args.seed, index));
    let mut commander = reset(args, arm, scene, &mut rng)?;
    let mut policy = PlayPolicy::new(
        &scene.scene(),
        StdRng::seed_from_u64(rng.random()),
        args.steps,
    );
    let mut writer = RawEpisodeWriter::create(dir, Some(policy.description()))?;
    let started = Instant::now();
    let mut rgb = vec![0u8; renderer.frame_len()];
    let period = scaled(PERIOD_S, args);
    let mut due = started;
    let mut late_steps = 0;
    for t in 0..=args.steps {
        // A step that starts late pushes the later ones back rather than letting them catch
        // up in a burst: every step keeps at least one period of motion.
        let mut late = push_back_if_late(&mut due, period);
        sleep_until(due);
        let state = *arm.read_joint_state()?;
        let now = scene.scene();
        let time_stamp_s = started.elapsed().as_secs_f64() / args.time_scale;
        // The command goes out before the frame is rendered and encoded, so that the arm moves
        // meanwhile: on a busy machine a slow frame delays the next step, it never shortens the
        // motion a step records.
        let applied = if t < args.steps {
            let action = policy.act(&PlayObservation {
                scene: &now,
                target_xyz_m: commander.xyz_m(),
                target_rpy_rad: commander.rpy_rad(),
            });
            tracing::debug!(
                "episode {index} step {t}: commanded {:?}, action {:?}, fingers {:.4} m, held {:?}",
                commander.xyz_m(),
                action,
                now.finger_position_m(),
                now.blocks.iter().map(|b| b.held).collect::<Vec<_>>()
            );
            Some(commander.step(arm, &action)?)
        } else {
            None
        };
        // Likewise a command sent late (the process stalled) moves the next observation back.
        late |= push_back_if_late(&mut due, period);
        late_steps += usize::from(late);
        due += period;
        renderer.render(&now, &mut rgb)?;
        let jpeg = encode_jpeg(&rgb, renderer, args.jpeg_quality)?;
        let observation = raw_step(args, &state, now.finger_position_m(), jpeg, time_stamp_s);
        writer.push_observation(&observation)?;
        if let Some(applied) = applied {
            writer.push_action(applied.to_array())?;
        }
    }
    writer.finish(&bridge_data::Outcome::Completed)?;
    let placed = policy.place_target().map(|(block, target)| {
        let block = &scene.scene().blocks[block];
        !block.held
            && (block.position_m[0] - target[0]).hypot(block.position_m[1] - target[1]) < PLACED_M
    });
    Ok(EpisodeSummary {
        placed,
        late_steps,
        behaviour: policy.behaviour(),
        missed_grasp: policy.description().contains("missed"),
    })
}

/// Opens the gripper, moves to (near) the Bridge start pose, puts the blocks at random places
/// and waits for the gripper to be open. Returns the commander at the start pose.
fn reset(
    args: &CollectArgs,
    arm: &mut Arm,
    scene: &SceneHandle,
    rng: &mut StdRng,
) -> anyhow::Result<Commander> {
    let start_xyz_m = [
        RESET_XYZ_M[0] + rng.random_range(-0.03..0.03),
        RESET_XYZ_M[1] + rng.random_range(-0.03..0.03),
        RESET_XYZ_M[2] + rng.random_range(-0.02..0.02),
    ];
    // Seeded with the neutral pose, so every episode starts on the same IK branch.
    let joints_rad: [f64; ARM_JOINTS] = inverse(
        &bridge_target_pose(start_xyz_m, [0.0; 3]),
        &BRIDGE_NEUTRAL_POSE_RAD,
        &IkConfig::default(),
    )
    .context("IK of the start pose")?;
    arm.gripper_open()?;
    arm.write_joint_goals(&joints_rad, RESET_MOVE_S * args.time_scale)?;
    std::thread::sleep(scaled(RESET_MOVE_S, args));
    let deadline = Instant::now() + scaled(RESET_TIMEOUT_S, args);
    loop {
        let at = arm.read_joint_state()?.arm_positions_rad();
        let off_rad = at
            .iter()
            .zip(&joints_rad)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let open = scene.scene().finger_position_m() >= OPEN_FINGER_M;
        if off_rad < ARRIVED_RAD && open {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the reset did not finish: {off_rad:.3} rad from the start pose, gripper open: {open}"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let positions = random_block_positions(scene.block_specs(), rng);
    scene.set_block_positions(&positions)?;
    Ok(Commander::new(
        start_xyz_m,
        [0.0; 3],
        joints_rad,
        MOVE_TIME_S * args.time_scale,
    ))
}

/// The observation record of one step, in real-time units. The gripper state is the fingers'
/// position as the scene shows it (a held block stops them at its width, as on the real arm,
/// where the virtual servo itself runs on to its closed stop).
fn raw_step(
    args: &CollectArgs,
    state: &JointState,
    finger_m: f64,
    jpeg: Vec<u8>,
    time_stamp_s: f64,
) -> RawStep {
    let qpos = state.arm_positions_rad();
    let gripper = open_fraction_of_finger_m(finger_m);
    let effort = |e: &Effort| match *e {
        Effort::CurrentMa(ma) => ma,
        Effort::LoadPercent(percent) => percent,
    };
    RawStep {
        jpeg,
        state: bridge_state(&qpos, gripper),
        qpos,
        qvel: std::array::from_fn(|i| state.velocities_rad_s[i] * args.time_scale),
        joint_effort: std::array::from_fn(|i| effort(&state.effort[i])),
        eef_transform: forward(&qpos).to_matrix(),
        time_stamp_s,
    }
}

fn encode_jpeg(rgb: &[u8], renderer: &Renderer, quality: u8) -> anyhow::Result<Vec<u8>> {
    let mut jpeg = Vec::with_capacity(64 * 1024);
    JpegEncoder::new_with_quality(&mut jpeg, quality)
        .encode(
            rgb,
            renderer.width_px(),
            renderer.height_px(),
            ExtendedColorType::Rgb8,
        )
        .context("encoding a frame as JPEG")?;
    Ok(jpeg)
}

/// Moves `due` to now when now is more than a quarter period past it; says whether it did.
fn push_back_if_late(due: &mut Instant, period: Duration) -> bool {
    let now = Instant::now();
    let late = now > *due + period / 4;
    if late {
        *due = now;
    }
    late
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        std::thread::sleep(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        args: CollectArgs,
    }

    fn args(out: &Path, seed: u64) -> CollectArgs {
        let out = out.to_string_lossy().into_owned();
        let argv = [
            "collect",
            "--out",
            &out,
            "--episodes",
            "1",
            "--time-scale",
            "0.5",
            "--seed",
        ];
        TestCli::parse_from(argv.into_iter().map(String::from).chain([seed.to_string()])).args
    }

    #[test]
    fn a_pick_and_place_episode_moves_the_block_to_its_target() {
        let out = tempfile::tempdir().unwrap();
        // Seed 3, episode 0 draws a pick-and-place (the draw is deterministic).
        let args = args(out.path(), 3);
        let sim = VirtualArm::spawn_tabletop(
            SimConfig::new(FirmwareConfig::wx250s()),
            TabletopConfig::new(0),
        )
        .unwrap();
        let scene = sim.scene_handle().unwrap();
        let mut arm = connect(&sim, &args).unwrap();
        let mut renderer = Renderer::new(CameraModel::c920_over_shoulder(), RenderStyle::plain());
        let dir = out.path().join("traj0");
        let summary = run_episode(&args, &mut arm, &scene, &mut renderer, 0, &dir).unwrap();
        assert_eq!(summary.behaviour, Behaviour::PickPlace);
        assert!(!summary.missed_grasp);
        assert_eq!(
            summary.placed,
            Some(true),
            "the block rests within 3 cm of its target"
        );
        assert!(scene.scene().blocks.iter().all(|b| !b.held));
        assert_eq!(std::fs::read_dir(dir.join("images0")).unwrap().count(), 36);
    }

    #[test]
    fn a_late_step_moves_the_next_deadline_and_an_early_one_does_not() {
        let period = Duration::from_millis(200);
        let early = Instant::now() + period;
        let mut due = early;
        assert!(!push_back_if_late(&mut due, period));
        assert_eq!(due, early);
        // Within a quarter period past the deadline: on time.
        let slightly_past = Instant::now() - period / 8;
        let mut due = slightly_past;
        assert!(!push_back_if_late(&mut due, period));
        assert_eq!(due, slightly_past);
        let long_past = Instant::now() - period;
        let mut due = long_past;
        let before = Instant::now();
        assert!(push_back_if_late(&mut due, period));
        assert!(due >= before, "the deadline moves to now");
    }
}
