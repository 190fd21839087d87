//! `bridge-sim eval`: closed-loop evaluation on the virtual tabletop, through the same runtime
//! as `bridge-run` ([`bridge_run::Runtime::run_episode`]: camera thread, policy thread, safety
//! supervisor, control thread, real driver over the pseudo-terminal).
//!
//! Each worker owns one virtual arm and one runtime and takes (task, episode) pairs from a
//! queue. An episode sets the task's start scene (each block nudged by up to
//! `--start-jitter-m`, seeded by task and episode, so that episodes differ), renders the goal
//! scene as the goal image, runs the policy for a step budget (`--reach-steps` for a reach task,
//! otherwise proportional to the number of blocks to move), and scores the scene the runtime
//! leaves behind: success when every block rests within 3 cm of its goal
//! ([`widowx_sim::tasks::SUCCESS_TOLERANCE_M`]) and, for a reach task, the gripper is within
//! 3 cm of its goal position and open or closed as in the goal image.
//!
//! Output in `--out`: `episodes.jsonl` (one line per episode), `results.md` (the success table,
//! also printed) and, per episode, the runtime's run report (goal | observation animation,
//! distance-to-goal plot, latencies, events).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use bridge_run::policy::{GoalImage, MqePolicy, Policy};
use bridge_run::sim::SimRig;
use bridge_run::{Runtime, RuntimeConfig, RuntimeOptions};
use camera::preprocess::ModelView;
use candle_core::Device;
use crossbeam_channel::Receiver;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use widowx_sim::render::{CameraModel, RenderStyle, Renderer};
use widowx_sim::tasks::{TaskFile, TaskSpec, Tier, TierCounts};
use widowx_sim::{SceneHandle, TabletopConfig};

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Checkpoint directory (pixels, 7-dimensional Bridge actions).
    #[arg(long, value_name = "DIR")]
    pub checkpoint: PathBuf,
    /// Task file (TOML, see `widowx_sim::tasks`).
    #[arg(long, value_name = "FILE")]
    pub tasks: PathBuf,
    /// Episodes per task.
    #[arg(long, default_value_t = 50)]
    pub episodes: usize,
    /// Output directory (results, per-episode reports).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Virtual arms evaluated at once (each one runtime, in real time).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Policy steps allowed per block to move (a two-block task gets twice as many).
    #[arg(long, default_value_t = 45)]
    pub steps_per_block: usize,
    /// Policy steps allowed for a reach task (T1).
    #[arg(long, default_value_t = 30)]
    pub reach_steps: usize,
    /// Each start block is moved by up to this much, seeded per episode, m.
    #[arg(long, default_value_t = 0.015)]
    pub start_jitter_m: f64,
    /// Only these tasks (by name); default all.
    #[arg(long = "task", value_name = "NAME")]
    pub only: Vec<String>,
    /// Runtime configuration file (as `bridge-run --config`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Write a run report (animation, plots) for the first N episodes of each task.
    #[arg(long, default_value_t = 2)]
    pub reports_per_task: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// One evaluated episode, as written to `episodes.jsonl`.
#[derive(Debug, Clone, Serialize)]
struct EpisodeResult {
    task: String,
    tier: Tier,
    blocks_to_move: usize,
    episode: usize,
    success: bool,
    /// Distance of each block from its goal at the end, m (task block order).
    block_errors_m: Vec<(String, f64)>,
    /// For a reach task: the gripper's distance from its goal position at the end, m.
    arm_error_m: Option<f64>,
    /// Blocks the gripper closed on during the episode (partial progress: reached and grasped).
    grasped: Vec<String>,
    steps: usize,
    /// Learned distance to the goal at the first and the last step.
    first_distance: Option<f32>,
    last_distance: Option<f32>,
    summary: String,
    fault: Option<String>,
    report_dir: Option<PathBuf>,
}

struct Job {
    task: usize,
    episode: usize,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let tasks = TaskFile::load(&args.tasks)
        .with_context(|| format!("task file {}", args.tasks.display()))?;
    let selected = select_tasks(&tasks, &args.only)?;
    if args.episodes == 0 || args.workers == 0 {
        bail!("--episodes and --workers must be at least 1");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    // Fail on a bad checkpoint before any arm starts.
    MqePolicy::load(&args.checkpoint, &Device::Cpu)
        .with_context(|| format!("checkpoint {}", args.checkpoint.display()))?;
    let config =
        RuntimeConfig::load(args.config.as_deref(), None).context("runtime configuration")?;
    let goals = render_goals(&tasks, &selected)?;
    let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
    for &task in &selected {
        for episode in 0..args.episodes {
            jobs_tx.send(Job { task, episode })?;
        }
    }
    drop(jobs_tx);
    let results = Mutex::new(Vec::new());
    let log = Mutex::new(
        std::fs::File::create(args.out.join("episodes.jsonl"))
            .with_context(|| format!("creating {}", args.out.join("episodes.jsonl").display()))?,
    );
    let total = selected.len() * args.episodes;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..args.workers.min(total))
            .map(|worker| {
                let ctx = WorkerContext {
                    args: &args,
                    tasks: &tasks,
                    goals: &goals,
                    config: config.clone(),
                    results: &results,
                    log: &log,
                    total,
                };
                let jobs = jobs_rx.clone();
                scope.spawn(move || ctx.run(worker, jobs))
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(outcome) => outcome?,
                Err(_) => bail!("an evaluation worker panicked"),
            }
        }
        Ok(())
    })?;
    let mut results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
    results.sort_by(|a, b| (&a.task, a.episode).cmp(&(&b.task, b.episode)));
    let table = success_table(&args.checkpoint, &results);
    print!("{table}");
    std::fs::write(args.out.join("results.md"), &table)
        .with_context(|| format!("writing {}", args.out.join("results.md").display()))?;
    Ok(())
}

fn select_tasks(tasks: &TaskFile, only: &[String]) -> anyhow::Result<Vec<usize>> {
    if only.is_empty() {
        return Ok((0..tasks.tasks.len()).collect());
    }
    only.iter()
        .map(|name| {
            tasks
                .tasks
                .iter()
                .position(|t| &t.name == name)
                .with_context(|| format!("no task named `{name}` in the task file"))
        })
        .collect()
}

/// Each task's goal image, 640x480 RGB, rendered with the plain style (as the sim camera).
fn render_goals(tasks: &TaskFile, selected: &[usize]) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
    let mut renderer = Renderer::new(CameraModel::c920_over_shoulder(), RenderStyle::plain());
    let mut goals = vec![None; tasks.tasks.len()];
    for &index in selected {
        let task = &tasks.tasks[index];
        goals[index] = Some(
            tasks
                .render_goal(task, &mut renderer)
                .with_context(|| format!("rendering the goal of task `{}`", task.name))?,
        );
    }
    Ok(goals)
}

struct WorkerContext<'a> {
    args: &'a EvalArgs,
    tasks: &'a TaskFile,
    goals: &'a [Option<Vec<u8>>],
    config: RuntimeConfig,
    results: &'a Mutex<Vec<EpisodeResult>>,
    log: &'a Mutex<std::fs::File>,
    total: usize,
}

impl WorkerContext<'_> {
    fn run(mut self, worker: usize, jobs: Receiver<Job>) -> anyhow::Result<()> {
        let rig = SimRig::spawn_with(TabletopConfig {
            blocks: self.tasks.blocks.clone(),
            block_positions_m: Vec::new(),
            seed: self.args.seed + worker as u64,
            jitter: false,
        })
        .context("starting a virtual arm")?;
        let policy = MqePolicy::load(&self.args.checkpoint, &Device::Cpu)
            .with_context(|| format!("checkpoint {}", self.args.checkpoint.display()))?;
        let view = policy.input_view();
        self.config.episode.record = false;
        self.config.episode.recording_dir = self.args.out.join(format!("worker{worker}"));
        self.config.episode.log_file = self.args.out.join(format!("worker{worker}.log"));
        let arm = rig.connect().context("connecting to the virtual arm")?;
        let camera = rig.camera(self.config.camera.sim_fps)?;
        let mut runtime = Runtime::start(
            self.config.clone(),
            arm,
            Box::new(camera),
            Box::new(policy),
            RuntimeOptions {
                collector: bridge_data::provenance::Collector::Simulator,
                ..RuntimeOptions::default()
            },
        )?;
        let outcome = self.run_jobs(&rig, &mut runtime, view, &jobs);
        let parked = runtime.park_and_stop();
        outcome?;
        parked?;
        Ok(())
    }

    fn run_jobs(
        &self,
        rig: &SimRig,
        runtime: &mut Runtime,
        view: ModelView,
        jobs: &Receiver<Job>,
    ) -> anyhow::Result<()> {
        while let Ok(job) = jobs.recv() {
            let result = self.run_one(rig, runtime, view, &job)?;
            self.record(result)?;
        }
        Ok(())
    }

    fn run_one(
        &self,
        rig: &SimRig,
        runtime: &mut Runtime,
        view: ModelView,
        job: &Job,
    ) -> anyhow::Result<EpisodeResult> {
        let task = &self.tasks.tasks[job.task];
        let goal_rgb = self.goals[job.task]
            .as_deref()
            .context("goal image not rendered")?;
        let label = PathBuf::from(format!("task {} goal", task.name));
        let goal = GoalImage::from_rgb(&label, goal_rgb, 640, 480, view)?;
        let start = jittered_start(task, self.tasks, self.args, job);
        rig.scene()
            .set_block_positions(&start)
            .context("placing the start blocks")?;
        let moved = task.moved_blocks().len();
        let steps = match task.tier() {
            Tier::Reach => self.args.reach_steps,
            _ => self.args.steps_per_block * moved,
        };
        let grasps_before = rig.scene().grasp_counts();
        // Reports of every episode would take time and fill the disk: the first few per task.
        runtime.set_write_reports(job.episode < self.args.reports_per_task);
        let report = runtime.run_episode(&goal, steps)?;
        let outcome = task.outcome(&rig.scene().scene());
        if runtime.status().mode.awaits_operator() {
            // After a fault the runtime holds and waits for the operator; the evaluation plays
            // the operator and parks, so that the next episode starts from the parked arm.
            runtime
                .park_as_operator(Duration::from_secs(60))
                .context("parking after a fault, as the operator")?;
        }
        let grasped = grasped_blocks(rig.scene(), &grasps_before);
        Ok(EpisodeResult {
            task: task.name.clone(),
            tier: task.tier(),
            blocks_to_move: moved,
            episode: job.episode,
            success: outcome.success,
            block_errors_m: outcome
                .blocks
                .iter()
                .map(|b| (b.name.clone(), b.distance_m))
                .collect(),
            arm_error_m: outcome.arm_error_m,
            grasped,
            steps: report.steps,
            first_distance: report.distances.first().copied(),
            last_distance: report.distances.last().copied(),
            summary: report.summary.clone(),
            fault: report.fault.as_ref().map(|f| format!("{f:?}")),
            report_dir: report.report_dir.clone(),
        })
    }

    fn record(&self, result: EpisodeResult) -> anyhow::Result<()> {
        use std::io::Write as _;
        let line = serde_json::to_string(&result)?;
        let done = {
            let mut results = self
                .results
                .lock()
                .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
            results.push(result.clone());
            results.len()
        };
        let mut log = self
            .log
            .lock()
            .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
        writeln!(log, "{line}")?;
        eprintln!(
            "[{done}/{}] {} #{}: {} ({})",
            self.total,
            result.task,
            result.episode,
            if result.success { "success" } else { "failure" },
            result.summary
        );
        Ok(())
    }
}

/// Names of the blocks grasped since `before` (the counts at the episode's start).
fn grasped_blocks(scene: &SceneHandle, before: &[u64]) -> Vec<String> {
    let after = scene.grasp_counts();
    scene
        .block_specs()
        .iter()
        .zip(after.iter().zip(before))
        .filter(|(_, (after, before))| after > before)
        .map(|(spec, _)| spec.name.clone())
        .collect()
}

/// The task's start positions, each block nudged by up to `start_jitter_m` (seeded by task
/// and episode). Episode 0 of every task starts exactly as written.
fn jittered_start(task: &TaskSpec, tasks: &TaskFile, args: &EvalArgs, job: &Job) -> Vec<[f64; 2]> {
    let mut start = task.start_positions(&tasks.blocks);
    if job.episode == 0 || args.start_jitter_m <= 0.0 {
        return start;
    }
    let seed = args.seed ^ ((job.task as u64) << 32) ^ job.episode as u64;
    let mut rng = StdRng::seed_from_u64(seed);
    for xy in &mut start {
        for v in xy.iter_mut() {
            *v += rng.random_range(-args.start_jitter_m..=args.start_jitter_m);
        }
    }
    start
}

/// The per-task success table (Markdown), with a total per tier.
fn success_table(checkpoint: &Path, results: &[EpisodeResult]) -> String {
    let mut table = String::new();
    let _ = writeln!(table, "checkpoint: {}\n", checkpoint.display());
    let _ = writeln!(
        table,
        "| task | tier | episodes | success | episodes with a grasp | mean final block error (m) | mean final gripper error (m) |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|---|");
    let mut names: Vec<&str> = results.iter().map(|r| r.task.as_str()).collect();
    names.dedup();
    for name in names {
        let rows: Vec<&EpisodeResult> = results.iter().filter(|r| r.task == name).collect();
        let _ = writeln!(table, "{}", row(name, &rows));
    }
    for tier in [Tier::Reach, Tier::OneBlock, Tier::TwoBlocks] {
        let rows: Vec<&EpisodeResult> = results.iter().filter(|r| r.tier == tier).collect();
        if !rows.is_empty() {
            let _ = writeln!(
                table,
                "{}",
                row(&format!("**all {}**", tier.label()), &rows)
            );
        }
    }
    table
}

fn row(name: &str, rows: &[&EpisodeResult]) -> String {
    let successes = rows.iter().filter(|r| r.success).count();
    let with_grasp = rows.iter().filter(|r| !r.grasped.is_empty()).count();
    let errors: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.block_errors_m.iter().map(|(_, e)| *e))
        .collect();
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    let arm_errors: Vec<f64> = rows.iter().filter_map(|r| r.arm_error_m).collect();
    let arm = if arm_errors.is_empty() {
        "-".to_string()
    } else {
        format!("{:.3}", mean(&arm_errors))
    };
    format!(
        "| {name} | {} | {} | {:.0}% ({successes}/{}) | {with_grasp}/{} | {:.3} | {arm} |",
        rows.first().map_or("-", |r| r.tier.label()),
        rows.len(),
        100.0 * successes as f64 / rows.len().max(1) as f64,
        rows.len(),
        rows.len(),
        mean(&errors),
    )
}

#[derive(Debug, clap::Args)]
pub struct TasksArgs {
    /// Write the task file here (generated) — or read it, with --from.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Generate this many reach tasks (T1: the first near, the others far).
    #[arg(long, default_value_t = 2)]
    pub reach: usize,
    /// Generate this many single-block tasks (T2).
    #[arg(long, default_value_t = 2)]
    pub single: usize,
    /// Generate this many two-block (compositional) tasks (T3).
    #[arg(long, default_value_t = 2)]
    pub double: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Render each task's goal (and start) image as PNG into this directory.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
}

/// `bridge-sim tasks`: generates a task file and renders its goal and start images.
pub fn tasks(args: TasksArgs) -> anyhow::Result<()> {
    let file = TaskFile::generate(
        widowx_sim::BlockSpec::default_set(),
        args.seed,
        TierCounts {
            reach: args.reach,
            one_block: args.single,
            two_blocks: args.double,
        },
    );
    let text = file.to_toml_string()?;
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    let Some(dir) = &args.images else {
        return Ok(());
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut renderer = Renderer::new(CameraModel::c920_over_shoulder(), RenderStyle::plain());
    for task in &file.tasks {
        let goal = file.render_goal(task, &mut renderer)?;
        save_png(&dir.join(format!("{}-goal.png", task.name)), &goal)?;
        save_png(
            &dir.join(format!("{}-start.png", task.name)),
            &renderer.render_to_vec(&file.start_scene(task)?),
        )?;
    }
    Ok(())
}

fn save_png(path: &Path, rgb: &[u8]) -> anyhow::Result<()> {
    image::save_buffer(path, rgb, 640, 480, image::ExtendedColorType::Rgb8)
        .with_context(|| format!("writing {}", path.display()))
}
