//! `bridge-train`: trains MQE / GCBC checkpoints from offline data.
//!
//! ```text
//! bridge-train fit --data D.npz --out DIR [--config run.toml] [--algo mqe|gcbc] [--steps N]
//!                  [--batch-size N] [--seed N] [--set key=value]... [--resume DIR] [--device cpu|cuda]
//! bridge-train config [--data D.npz] [--config run.toml] [--algo ..] [--steps N] [--set key=value]...
//! bridge-train bench [--steps N] [--queries N] [--no-pixels]
//! ```
//!
//! `fit` reads an OGBench `.npz` (and its `-val.npz` companion for validation when present) and
//! writes the checkpoint into `--out DIR` (see `bridge_train::fit` for the layout, the metrics
//! log and exact resume). `--set` takes any `[train]` or `[model]` key of the config file
//! (`gamma=0.99`, `model.latent_dim=128`, `mlp_hidden=[256,256]`); later settings win over
//! earlier ones, and the dedicated flags win over `--set`. `config` prints the resolved
//! configuration as TOML, the same file `--config` accepts. With `--resume DIR` the base
//! configuration is the checkpoint's own; only the steps and intervals may be changed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use bridge_data::Obs;
use bridge_train::bench::{self, BenchOptions};
use bridge_train::config::{DataTraits, Override, RunConfig, resolve};
use bridge_train::fit::{FitOptions, Split, fit, resume_base};
use candle_core::Device;
use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Train on an OGBench .npz file; the output directory becomes the checkpoint.
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
        #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
        device: DeviceArg,
    },
}

#[derive(Args)]
struct FitArgs {
    /// OGBench .npz training file.
    #[arg(long)]
    data: PathBuf,
    /// Output (checkpoint) directory.
    #[arg(long)]
    out: PathBuf,
    /// Continue this checkpoint exactly (may be the same as --out).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,
    #[command(flatten)]
    config: ConfigArgs,
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

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    /// CUDA device 0 when built with `--features cuda` and one is present, else the CPU.
    Auto,
    Cpu,
    Cuda,
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
}

fn device(arg: DeviceArg) -> Result<Device> {
    match arg {
        DeviceArg::Cpu => Ok(Device::Cpu),
        DeviceArg::Auto => Device::cuda_if_available(0).context("probing for a CUDA device"),
        DeviceArg::Cuda => Device::new_cuda(0)
            .context("opening CUDA device 0 (was bridge-train built with --features cuda?)"),
    }
}

fn main() -> Result<()> {
    // SAFETY: first statement of main: no other thread has been started yet.
    unsafe { mqe::threads::prefer_inline_elementwise_ops() };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Fit(args) => run_fit(&args),
        Command::Config { data, config } => print_config(data.as_deref(), &config),
        Command::Bench {
            steps,
            queries,
            no_pixels,
            device: dev,
        } => run_bench(steps, queries, !no_pixels, dev),
    }
}

fn print_config(data: Option<&Path>, args: &ConfigArgs) -> Result<()> {
    let traits = match data {
        Some(path) => {
            let dataset = bridge_data::ogbench::load(path)
                .with_context(|| format!("reading data file {}", path.display()))?;
            DataTraits::of(path, matches!(dataset.obs(), Obs::Pixels { .. }))
        }
        None => DataTraits::default(),
    };
    let config = args.resolve(RunConfig::defaults_for(traits))?;
    print!("{}", config.to_toml()?);
    Ok(())
}

fn run_fit(args: &FitArgs) -> Result<()> {
    let path = &args.data;
    if !path.is_file() {
        bail!(
            "data file {} does not exist or is not a file",
            path.display()
        );
    }
    let split = bridge_data::ogbench::load_with_val(path)
        .with_context(|| format!("reading data file {}", path.display()))?;
    let pixels = matches!(split.train.obs(), Obs::Pixels { .. });
    let base = match &args.resume {
        Some(dir) => resume_base(dir)
            .with_context(|| format!("reading checkpoint {} to resume", dir.display()))?,
        None => RunConfig::defaults_for(DataTraits::of(path, pixels)),
    };
    let config = args.config.resolve(base)?;
    let summary = split.train.summary();
    tracing::info!(
        "data {}: {} rows, {} episodes, obs {:?}, action_dim {}; validation: {}",
        path.display(),
        summary.rows,
        summary.episodes,
        summary.obs_shape,
        summary.action_dim,
        split
            .val
            .as_ref()
            .map_or("none".to_string(), |v| format!("{} rows", v.len()))
    );
    let options = FitOptions {
        out_dir: args.out.clone(),
        resume: args.resume.clone(),
        dataset_name: path.display().to_string(),
        progress: !args.no_progress,
    };
    let dev = device(args.device)?;
    let outcome = fit(&split.train, split.val.as_ref(), &config, &options, &dev)
        .with_context(|| format!("training into {}", args.out.display()))?;
    let last = |s: Split| outcome.records.iter().rev().find(|r| r.split == s);
    if let Some(r) = last(Split::Train) {
        tracing::info!("step {} train: {}", r.step, r.summary());
    }
    if let Some(r) = last(Split::Val) {
        tracing::info!("step {} val: {}", r.step, r.summary());
    }
    tracing::info!(
        "checkpoint at step {} written to {} (metrics in {})",
        outcome.agent.step(),
        args.out.display(),
        args.out.join(bridge_train::fit::METRICS_FILE).display()
    );
    Ok(())
}

fn run_bench(steps: usize, queries: usize, pixels: bool, dev: DeviceArg) -> Result<()> {
    let dev = device(dev)?;
    let options = BenchOptions {
        train_steps: steps,
        act_queries: queries,
        pixels,
        ..BenchOptions::default()
    };
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
