//! `bridge-train`: trains MQE / GCBC checkpoints from offline data.
//!
//! ```text
//! bridge-train prepare --input DIR... --out CACHE [--size-px 128] [--camera images0]
//!                      [--binarise-gripper] [--recompute-actions [state-difference|relative-rotation]]
//!                      [--camera-lag auto|correct|keep] [--jobs N] [--commit-interval-s S]
//! bridge-train fit --data D.npz|CACHE --out DIR [--val-fraction F] [--loader-threads N]
//!                  [--config run.toml] [--algo mqe|gcbc] [--steps N] [--batch-size N] [--seed N]
//!                  [--set key=value]... [--resume DIR] [--device cpu|cuda]
//!                  [--eval-every N [--eval-env NAME] [--eval-episodes N] [--eval-python PY]]
//! bridge-train config [--data D.npz|CACHE] [--config run.toml] [--algo ..] [--steps N] [--set key=value]...
//! bridge-train bench [--steps N] [--queries N] [--no-pixels]
//! bridge-train bench-data [--work-dir DIR] [--episodes N] [--batch-size N] [--loader-threads N] ...
//! ```
//!
//! `prepare` decodes BridgeData V2 sources (raw trajectory directories, TFRecord shards, NumPy
//! releases, found under each `--input`) into a memory-mapped training cache (see
//! `bridge_data::cache` and `bridge_train::prepare`); it can be interrupted and rerun, and a
//! rerun with more inputs adds only the new sources.
//!
//! `fit` reads an OGBench `.npz` (and its `-val.npz` companion for validation when present), or
//! a training cache directory (validation: the trajectories held out by `--val-fraction`, chosen
//! by a hash of their path), and writes the checkpoint into `--out DIR` (see `bridge_train::fit`
//! for the layout, the metrics log and exact resume). `--set` takes any `[train]` or `[model]` key of the config file
//! (`gamma=0.99`, `model.latent_dim=128`, `mlp_hidden=[256,256]`); later settings win over
//! earlier ones, and the dedicated flags win over `--set`. `config` prints the resolved
//! configuration as TOML, the same file `--config` accepts. With `--resume DIR` the base
//! configuration is the checkpoint's own; only the steps and intervals may be changed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bridge_data::cache::{Cache, CacheSettings};
use bridge_data::{Dataset, Obs};
use bridge_train::bench::{self, BenchOptions};
use bridge_train::bench_data::{self, DataBenchOptions};
use bridge_train::config::{DataTraits, Override, RunConfig, resolve, resolve_fresh};
use bridge_train::data::action_norm_from_bounds;
use bridge_train::device_check::{self, CheckOptions};
use bridge_train::env_eval::{EnvEvaluator, env_for_dataset};
use bridge_train::fit::{EnvEvalSchedule, FitOptions, Split, fit, resume_base};
use bridge_train::prepare::{PrepareOptions, discover_inputs, parse_camera, prepare};
use candle_core::Device;
use clap::{Args, Parser, Subcommand, ValueEnum};
use mqe::{ActionNorm, DeviceChoice, select_device};

#[derive(Parser)]
#[command(
    name = "bridge-train",
    version,
    about = "Train MQE / GCBC goal-conditioned policies"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode BridgeData sources into a memory-mapped training cache (resumable, incremental).
    Prepare(PrepareArgs),
    /// Train on an OGBench .npz file or a training cache; the output directory becomes the
    /// checkpoint.
    Fit(FitArgs),
    /// Print the resolved configuration as TOML.
    Config {
        /// Data file whose kind (state / pixels, stitch) selects the defaults.
        #[arg(long)]
        data: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Time training steps, actor queries and the sampler on random data at the published sizes.
    Bench {
        /// Timed training steps per configuration.
        #[arg(long, default_value_t = 5)]
        steps: usize,
        /// Timed actor queries (batch 1) per configuration.
        #[arg(long, default_value_t = 200)]
        queries: usize,
        /// Skip the pixel configuration (slow on a CPU).
        #[arg(long)]
        no_pixels: bool,
        /// Batch size of the pixel configuration (the published size is 256).
        #[arg(long, default_value_t = 64)]
        pixel_batch: usize,
        /// Where to train: auto (a usable GPU, else the CPU), cpu or cuda.
        #[arg(long, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
    },
    /// One pixel training step's loss and gradients on --device against the CPU fast kernels
    /// (on the CPU: the portable ops, the code a GPU runs, against the fast kernels). Fails when
    /// a tensor differs by more than --tolerance.
    CheckDevice {
        /// Batch size of the step.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        /// Largest accepted max|device - cpu| / max|cpu| of any tensor.
        #[arg(long, default_value_t = 1e-4)]
        tolerance: f32,
        /// Device to check: auto (a usable GPU, else the CPU), cpu or cuda.
        #[arg(long, default_value_t = DeviceChoice::Auto)]
        device: DeviceChoice,
    },
    /// Time prepare (640x480 JPEG -> 128 px), the batch loader and pixel training steps.
    BenchData(BenchDataArgs),
    /// Write a static HTML report of recordings or a training cache (open <out>/index.html in a
    /// browser, no server): an episode grid with thumbnails, animations on hover and action
    /// plots, counts per task, and the episodes prepare skips or trims.
    Browse {
        /// A recording directory (raw layout), TFRecord shards, or a training cache.
        input: PathBuf,
        /// Where index.html and media/ go.
        #[arg(long)]
        out: PathBuf,
        /// Episodes shown at most (the rest are counted).
        #[arg(long, default_value_t = 200)]
        max_episodes: usize,
    },
}

#[derive(Args)]
struct PrepareArgs {
    /// A directory (or file) to search for sources: raw trajectory directories (obs_dict.pkl),
    /// *.tfrecord* shards, *.npy releases. Repeat for several.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// The cache directory (created, or extended with the sources it does not hold yet).
    #[arg(long)]
    out: PathBuf,
    /// Side of the square training frames, in pixels (64 or 128 in the published setups).
    #[arg(long, default_value_t = 128)]
    size_px: u32,
    /// Camera: images0 (the fixed camera), images1, ... (also 0, 1, ...).
    #[arg(long, default_value = "images0")]
    camera: String,
    /// Crop every frame to X,Y,WIDTH,HEIGHT (pixels of the frame) before squashing it; the
    /// checkpoint records it and bridge-run applies it. Default: the whole frame.
    #[arg(long, value_name = "X,Y,W,H", conflicts_with = "crop_from")]
    crop: Option<camera::preprocess::Crop>,
    /// Take the crop from the `[crop]` table of a camera calibration file
    /// (e.g. calibration/camera.toml).
    #[arg(long, value_name = "FILE")]
    crop_from: Option<PathBuf>,
    /// Map gripper actions to exactly 0 or 1 (below 0.5 -> 0).
    #[arg(long)]
    binarise_gripper: bool,
    /// Keep episodes whose recording says they ended early: an operator stop, a safety fault, or
    /// no end record at all (the recording process was killed). Skipped by default.
    #[arg(long)]
    keep_aborted: bool,
    /// Keep steps in which the operator jogged or paused. By default they are left out and the
    /// episode is split around them.
    #[arg(long)]
    keep_intervened: bool,
    /// Recompute the xyz/rpy actions from consecutive states (Octo's practice:
    /// state-difference).
    #[arg(long, value_enum, num_args = 0..=1, default_value_t = RecomputeArg::Off,
          default_missing_value = "state-difference")]
    recompute_actions: RecomputeArg,
    /// The pre-2021-07-23 one-step camera lag: auto (by the date in a raw path), correct, keep.
    #[arg(long, value_enum, default_value_t = LagArg::Auto)]
    camera_lag: LagArg,
    /// Worker threads (default: every core).
    #[arg(long, default_value_t = 0)]
    jobs: usize,
    /// Seconds between commits (a kill loses at most about this much work).
    #[arg(long, default_value_t = 10.0)]
    commit_interval_s: f64,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum RecomputeArg {
    Off,
    StateDifference,
    RelativeRotation,
}

#[derive(Clone, Copy, ValueEnum)]
enum LagArg {
    Auto,
    Correct,
    Keep,
}

#[derive(Args)]
struct BenchDataArgs {
    /// Where a `bench-data-*` scratch directory for the raw data and caches is made (default:
    /// the system's temporary directory); removed at the end unless --keep-files.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Leave the generated raw data and caches on disk.
    #[arg(long)]
    keep_files: bool,
    /// Raw episodes written and prepared.
    #[arg(long, default_value_t = 40)]
    episodes: usize,
    /// Threads of prepare (default: every core).
    #[arg(long, default_value_t = 0)]
    jobs: usize,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    #[arg(long, default_value_t = 2)]
    loader_threads: usize,
    /// Batches timed per loader measurement.
    #[arg(long, default_value_t = 40)]
    loader_batches: usize,
    /// Training steps timed per encoder.
    #[arg(long, default_value_t = 2)]
    train_steps: usize,
    /// Episodes (of 36 frames) in each synthetic cache.
    #[arg(long, default_value_t = 200)]
    cache_episodes: usize,
    /// Frame sizes to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [64u32, 128])]
    sizes_px: Vec<u32>,
    /// Where to run: auto (a usable GPU, else the CPU), cpu or cuda.
    #[arg(long, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

#[derive(Args)]
struct FitArgs {
    /// OGBench .npz training file, or a training cache directory made by `prepare`.
    #[arg(long)]
    data: PathBuf,
    /// Share of a cache's trajectories held out for validation (by a hash of their path).
    #[arg(long, default_value_t = 0.05)]
    val_fraction: f64,
    /// Background threads sampling batches ahead of the trainer (0: on the training thread).
    #[arg(long, default_value_t = 2)]
    loader_threads: usize,
    /// Output (checkpoint) directory.
    #[arg(long)]
    out: PathBuf,
    /// Continue this checkpoint exactly (may be the same as --out).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Where to run: auto (a usable GPU, else the CPU), cpu or cuda.
    #[arg(long, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    #[command(flatten)]
    env_eval: EnvEvalArgs,
    #[command(flatten)]
    config: ConfigArgs,
}

/// Scoring the checkpoint in OGBench's own environment while training.
#[derive(Args)]
struct EnvEvalArgs {
    /// Every N steps (and at the end), score the checkpoint in an OGBench environment with
    /// tools/ogbench-eval (success goes to metrics.jsonl as "split": "env" and to the progress bar).
    #[arg(long, value_name = "N")]
    eval_every: Option<u64>,
    /// The OGBench environment (default: the dataset's name, e.g. pointmaze-medium-stitch-v0).
    #[arg(long, value_name = "NAME", requires = "eval_every")]
    eval_env: Option<String>,
    /// Episodes per evaluation task.
    #[arg(long, default_value_t = 10, requires = "eval_every")]
    eval_episodes: u32,
    /// Python with tools/ogbench-eval/requirements.txt installed.
    #[arg(long, default_value = "python3", requires = "eval_every")]
    eval_python: String,
    /// The evaluator script.
    #[arg(long, default_value = bridge_train::env_eval::DEFAULT_SCRIPT, requires = "eval_every")]
    eval_script: PathBuf,
    /// The policy-server binary (default: the one beside this bridge-train).
    #[arg(long, requires = "eval_every")]
    eval_server: Option<PathBuf>,
}

impl EnvEvalArgs {
    /// The schedule, checked before any training (script, server, Python packages).
    fn schedule(&self, data: &Path) -> Result<Option<EnvEvalSchedule>> {
        let Some(every_steps) = self.eval_every else {
            return Ok(None);
        };
        anyhow::ensure!(every_steps > 0, "--eval-every must be at least 1");
        let env = match self.eval_env.clone().or_else(|| env_for_dataset(data)) {
            Some(env) => env,
            None => anyhow::bail!(
                "--eval-every: {} is not named like an OGBench dataset; pass --eval-env NAME",
                data.display()
            ),
        };
        let mut evaluator = EnvEvaluator::new(env, self.eval_episodes);
        evaluator.python = self.eval_python.clone();
        evaluator.script = self.eval_script.clone();
        if let Some(server) = &self.eval_server {
            evaluator.server = server.clone();
        }
        evaluator.preflight()?;
        Ok(Some(EnvEvalSchedule {
            every_steps,
            evaluator,
        }))
    }
}

#[derive(Args)]
struct ConfigArgs {
    /// TOML file with [model] and [train] sections.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Method (model.algo).
    #[arg(long, value_enum)]
    algo: Option<AlgoArg>,
    /// Total training steps (train.steps).
    #[arg(long)]
    steps: Option<u64>,
    /// Batch size (train.batch_size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Seed of initialisation and sampling (train.seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Any setting: key=value, key being a [train] or [model] field, optionally section-qualified.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<Override>,
}

#[derive(Clone, Copy, ValueEnum)]
enum AlgoArg {
    Mqe,
    Gcbc,
}

impl ConfigArgs {
    /// `--set` overrides followed by the dedicated flags.
    fn overrides(&self) -> Vec<Override> {
        let mut all = self.set.clone();
        let mut push = |key: &str, value: toml::Value| {
            all.push(Override {
                key: key.into(),
                value,
            })
        };
        if let Some(algo) = self.algo {
            let name = match algo {
                AlgoArg::Mqe => "mqe",
                AlgoArg::Gcbc => "gcbc",
            };
            push("model.algo", toml::Value::String(name.into()));
        }
        let int = |v: u64| toml::Value::Integer(i64::try_from(v).unwrap_or(i64::MAX));
        if let Some(steps) = self.steps {
            push("train.steps", int(steps));
        }
        if let Some(batch) = self.batch_size {
            push("train.batch_size", int(batch as u64));
        }
        if let Some(seed) = self.seed {
            push("train.seed", int(seed));
        }
        all
    }

    fn resolve(&self, base: RunConfig) -> Result<RunConfig> {
        resolve(base, self.config.as_deref(), &self.overrides())
            .context("resolving the training configuration")
    }

    /// A new run's configuration: defaults for `traits` and the chosen algorithm.
    fn resolve_fresh(&self, traits: DataTraits) -> Result<RunConfig> {
        resolve_fresh(traits, self.config.as_deref(), &self.overrides())
            .context("resolving the training configuration")
    }
}

/// Opens the device and logs the one line that says which it is.
fn device(choice: DeviceChoice) -> Result<Device> {
    let selected = select_device(choice)?;
    tracing::info!("{}", selected.summary);
    Ok(selected.device)
}

fn main() -> std::process::ExitCode {
    // SAFETY: first statement of main: no other thread has been started yet.
    unsafe { mqe::threads::prefer_inline_elementwise_ops() };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Each cause once, in words (anyhow's own report repeats causes and prints Debug).
            eprintln!("bridge-train: error: {}", mqe::error_text(&*error));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Prepare(args) => run_prepare(&args),
        Command::Fit(args) => run_fit(&args),
        Command::BenchData(args) => run_bench_data(&args),
        Command::Config { data, config } => print_config(data.as_deref(), &config),
        Command::Browse {
            input,
            out,
            max_episodes,
        } => run_browse(&input, &out, max_episodes),
        Command::Bench {
            steps,
            queries,
            no_pixels,
            pixel_batch,
            device: dev,
        } => {
            let options = BenchOptions {
                train_steps: steps,
                act_queries: queries,
                pixels: !no_pixels,
                pixel_batch,
                ..BenchOptions::default()
            };
            run_bench(options, dev)
        }
        Command::CheckDevice {
            batch_size,
            tolerance,
            device: dev,
        } => run_check_device(batch_size, tolerance, dev),
    }
}

fn run_browse(input: &Path, out: &Path, max_episodes: usize) -> Result<()> {
    let view = bridge_train::browse::load(input, max_episodes)?;
    let page = bridge_train::browse::write_report(&view, out)?;
    println!(
        "{}: {} episode(s) shown, {} skipped or unreadable; open {} in a browser",
        view.kind,
        view.episodes.len(),
        view.skipped.len(),
        page.display()
    );
    Ok(())
}

fn run_check_device(batch_size: usize, tolerance: f32, dev: DeviceChoice) -> Result<()> {
    let dev = device(dev)?;
    let options = CheckOptions {
        batch_size,
        ..CheckOptions::default()
    };
    let rows = device_check::compare_with_cpu(options, &dev)
        .context("computing the pixel step on both devices")?;
    print!("{}", device_check::format_table(&rows));
    let worst = rows.iter().map(|r| r.rel_diff).fold(0f32, f32::max);
    println!(
        "{} tensors, worst relative difference {worst:.2e} (tolerance {tolerance:.0e})",
        rows.len()
    );
    // A NaN anywhere fails too.
    if worst.is_nan() || rows.iter().any(|r| r.rel_diff.is_nan()) || worst > tolerance {
        bail!("the {dev:?} step differs from the CPU fast path by {worst:.2e} > {tolerance:.0e}");
    }
    Ok(())
}

fn print_config(data: Option<&Path>, args: &ConfigArgs) -> Result<()> {
    let traits = match data {
        Some(path) if Cache::is_cache(path) => {
            let manifest = bridge_data::cache::Manifest::read(path)
                .with_context(|| format!("reading training cache {}", path.display()))?;
            DataTraits::bridge(manifest.settings.size_px as usize)
        }
        Some(path) => {
            let dataset = bridge_data::ogbench::load(path)
                .with_context(|| format!("reading data file {}", path.display()))?;
            DataTraits::of(path, matches!(dataset.obs(), Obs::Pixels { .. }))
        }
        None => DataTraits::default(),
    };
    let config = args.resolve_fresh(traits)?;
    print!("{}", config.to_toml()?);
    Ok(())
}

/// The crop of `--crop` or `--crop-from`.
fn prepare_crop(args: &PrepareArgs) -> Result<Option<camera::preprocess::Crop>> {
    match &args.crop_from {
        Some(path) => {
            let crop = camera::preprocess::Crop::from_calibration(path)
                .with_context(|| format!("reading the crop of {}", path.display()))?;
            crop.map(Some).with_context(|| {
                format!(
                    "--crop-from {}: the file has no [crop] table (x_px, y_px, width_px, height_px)",
                    path.display()
                )
            })
        }
        None => Ok(args.crop),
    }
}

fn run_prepare(args: &PrepareArgs) -> Result<()> {
    if args.commit_interval_s.is_nan() || args.commit_interval_s < 0.0 {
        bail!(
            "--commit-interval-s {}: expected a number of seconds >= 0",
            args.commit_interval_s
        );
    }
    let settings = CacheSettings {
        size_px: args.size_px,
        camera: parse_camera(&args.camera)?,
        binarise_gripper: args.binarise_gripper,
        recompute_actions: match args.recompute_actions {
            RecomputeArg::Off => "off",
            RecomputeArg::StateDifference => "state-difference",
            RecomputeArg::RelativeRotation => "relative-rotation",
        }
        .into(),
        camera_lag: match args.camera_lag {
            LagArg::Auto => "auto",
            LagArg::Correct => "correct",
            LagArg::Keep => "keep",
        }
        .into(),
        crop_px: prepare_crop(args)?.map(camera::preprocess::Crop::to_array),
        keep_aborted: args.keep_aborted,
        keep_intervened: args.keep_intervened,
    };
    let sources = discover_inputs(&args.input, &settings).context("finding sources")?;
    tracing::info!(
        "{} sources under {}",
        sources.len(),
        args.input
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let options = PrepareOptions {
        jobs: args.jobs,
        progress: !args.no_progress,
        commit_interval_s: args.commit_interval_s,
        ..PrepareOptions::new(settings)
    };
    let report = prepare(&sources, &args.out, &options)
        .with_context(|| format!("preparing the cache {}", args.out.display()))?;
    println!("{}", report.summary());
    Ok(())
}

/// Training and validation data of `--data`, what the defaults depend on, and, for a cache, the
/// action map over its training trajectories.
struct LoadedData {
    train: Dataset,
    val: Option<Dataset>,
    traits: DataTraits,
    action_norm: Option<ActionNorm>,
    /// The cache's frame crop.
    input_crop_px: Option<[u32; 4]>,
    /// Where the data came from (a cache counts its simulator episodes; an OGBench file is a
    /// benchmark's).
    data_source: mqe::DataSource,
}

fn load_data(args: &FitArgs) -> Result<LoadedData> {
    let path = &args.data;
    if Cache::is_cache(path) {
        if !(0.0..1.0).contains(&args.val_fraction) {
            bail!(
                "--val-fraction {}: expected a share in [0, 1)",
                args.val_fraction
            );
        }
        let cache = Cache::open(path)
            .with_context(|| format!("opening training cache {}", path.display()))?;
        if cache.action_bounds().is_none() {
            bail!("training cache {} holds no transition yet", path.display());
        }
        let split = cache.split(args.val_fraction)?;
        // Over the training trajectories only: the validation actions stay unseen.
        let action_norm = action_norm_from_bounds(&split.train_action_bounds)?;
        if split.val.is_none() && args.val_fraction > 0.0 {
            tracing::warn!(
                "no trajectory of {} falls in the validation share {}; training without validation",
                path.display(),
                args.val_fraction
            );
        }
        return Ok(LoadedData {
            train: split.train,
            val: split.val,
            traits: DataTraits::bridge(cache.manifest().settings.size_px as usize),
            action_norm: Some(action_norm),
            input_crop_px: cache.manifest().settings.crop_px,
            data_source: mqe::DataSource::of_episodes(
                cache.manifest().counts.simulated_episodes,
                cache.manifest().counts.episodes,
            ),
        });
    }
    if !path.is_file() {
        bail!(
            "data {} is neither a file nor a training cache directory (no {})",
            path.display(),
            bridge_data::cache::MANIFEST_FILE
        );
    }
    let split = bridge_data::ogbench::load_with_val(path)
        .with_context(|| format!("reading data file {}", path.display()))?;
    let pixels = matches!(split.train.obs(), Obs::Pixels { .. });
    Ok(LoadedData {
        train: split.train,
        val: split.val,
        traits: DataTraits::of(path, pixels),
        action_norm: None,
        input_crop_px: None,
        data_source: mqe::DataSource::Benchmark,
    })
}

fn run_fit(args: &FitArgs) -> Result<()> {
    let path = &args.data;
    let data = load_data(args)?;
    let config = match &args.resume {
        Some(dir) => args.config.resolve(
            resume_base(dir)
                .with_context(|| format!("reading checkpoint {} to resume", dir.display()))?,
        )?,
        None => args.config.resolve_fresh(data.traits)?,
    };
    let env_eval = args.env_eval.schedule(path)?;
    let summary = data.train.summary();
    tracing::info!(
        "data {}: {} rows, {} episodes, obs {:?}, action_dim {}; validation: {}",
        path.display(),
        summary.rows,
        summary.episodes,
        summary.obs_shape,
        summary.action_dim,
        data.val.as_ref().map_or("none".to_string(), |v| format!(
            "{} rows, {} episodes",
            v.len(),
            v.num_episodes()
        ))
    );
    let options = FitOptions {
        out_dir: args.out.clone(),
        resume: args.resume.clone(),
        dataset_name: path.display().to_string(),
        progress: !args.no_progress,
        action_norm: data.action_norm,
        loader_threads: args.loader_threads,
        input_crop_px: data.input_crop_px,
        data_source: data.data_source,
        env_eval,
    };
    let dev = device(args.device)?;
    let outcome = fit(&data.train, data.val.as_ref(), &config, &options, &dev)
        .with_context(|| format!("training into {}", args.out.display()))?;
    let last = |s: Split| outcome.records.iter().rev().find(|r| r.split == s);
    if let Some(r) = last(Split::Train) {
        tracing::info!("step {} train: {}", r.step, r.summary());
    }
    if let Some(r) = last(Split::Val) {
        tracing::info!("step {} val: {}", r.step, r.summary());
    }
    if let Some(r) = outcome.env_records.last() {
        tracing::info!("step {} {}: {}", r.step, r.env, r.summary());
    }
    tracing::info!(
        "checkpoint at step {} written to {} (metrics in {})",
        outcome.agent.step(),
        args.out.display(),
        args.out.join(bridge_train::fit::METRICS_FILE).display()
    );
    Ok(())
}

fn run_bench_data(args: &BenchDataArgs) -> Result<()> {
    let dev = device(args.device)?;
    let work_dir = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let options = DataBenchOptions {
        keep_files: args.keep_files,
        prepare_episodes: args.episodes,
        jobs: args.jobs,
        batch_size: args.batch_size,
        loader_threads: args.loader_threads,
        loader_batches: args.loader_batches,
        train_steps: args.train_steps,
        cache_episodes: args.cache_episodes,
        sizes_px: args.sizes_px.clone(),
        ..DataBenchOptions::new(work_dir)
    };
    let rows = bench_data::run(&options, &dev).context("running the data benchmark")?;
    println!(
        "device: {dev:?}, cores: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    print!("{}", bench_data::format_table(&rows));
    Ok(())
}

fn run_bench(options: BenchOptions, dev: DeviceChoice) -> Result<()> {
    let dev = device(dev)?;
    let rows = bench::run(options, &dev).context("running the benchmark")?;
    println!(
        "device: {dev:?}, threads: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    print!("{}", bench::format_table(&rows));
    for (name, rate) in bench::sampler_rates(&rows) {
        println!("{name}: {rate:.0} batches/s (from the median)");
    }
    Ok(())
}
