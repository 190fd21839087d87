//! `bridge-sim`: serve the virtual WidowX 250 on a pseudo-terminal, and collect scripted play
//! data on its virtual tabletop.
//!
//! `bridge-sim serve` prints the pty path (e.g. `/dev/pts/7`) as the first line of stdout, then
//! serves Dynamixel Protocol 2.0 on it until SIGINT/SIGTERM or until stdin is closed (so a
//! parent process that dies takes the arm with it). Point any Dynamixel client at the path at
//! 1 Mbps, as you would at /dev/ttyDXL.
//!
//! `bridge-sim collect --out DIR --episodes N` runs a scripted, noisy play policy at 5 Hz on
//! virtual tabletops through the real driver and records the episodes in the BridgeData V2 raw
//! layout (see [`collect`]).
//!
//! Not for: learned policies (`bridge-run`) or evaluation.
//!
//! ```text
//! $ bridge-sim serve --factory --byte-timing
//! /dev/pts/7
//! $ bridge-sim collect --out data --episodes 100 --workers 8
//! ```

mod collect;
mod commander;
mod coverage;
mod eval;
mod play;

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use widowx::firmware::FirmwareConfig;
use widowx_sim::{InitialEeprom, SimConfig, VirtualArm};

#[derive(Debug, Parser)]
#[command(
    name = "bridge-sim",
    about = "Serve the virtual WidowX 250 on a pseudo-terminal; collect play data on its tabletop"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the pty, print its path on stdout and serve until killed or stdin closes.
    Serve(ServeArgs),
    /// Record scripted play episodes on virtual tabletops (BridgeData V2 raw layout).
    Collect(collect::CollectArgs),
    /// Closed-loop evaluation of a checkpoint on tasks, through the bridge-run runtime.
    Eval(eval::EvalArgs),
    /// Generate a task file and render its goal and start images.
    Tasks(eval::TasksArgs),
    /// How often each task's goal pose occurs in training data as the future of a frame.
    Coverage(coverage::CoverageArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Servo configuration (TOML); default: the shipped wx250s configuration.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Start with factory-default EEPROM (except ID and baud), as an arm fresh from assembly.
    #[arg(long)]
    factory: bool,
    /// Delay replies as a real bus at the configured baud rate would.
    #[arg(long)]
    byte_timing: bool,
    /// Fraction of replies to drop (0..=1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    drop_rate: f64,
    /// Fraction of replies to corrupt (0..=1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    corruption_rate: f64,
    /// Seed for fault injection.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep serving when stdin closes (run in the background until killed).
    #[arg(long)]
    ignore_stdin: bool,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|e| format!("`{text}` is not a number: {e}"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is not a fraction in 0..=1"))
    }
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Collect(args) => collect::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Tasks(args) => eval::tasks(args),
        Command::Coverage(args) => coverage::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Each cause once, in words (anyhow's own report repeats causes and prints Debug).
            eprintln!("bridge-sim: error: {}", mqe::error_text(&*error));
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let firmware = match &args.config {
        Some(path) => FirmwareConfig::load(path)
            .with_context(|| format!("loading servo configuration {}", path.display()))?,
        None => FirmwareConfig::wx250s(),
    };
    let mut config = SimConfig::new(firmware);
    config.initial_eeprom = if args.factory {
        InitialEeprom::Factory
    } else {
        InitialEeprom::Configured
    };
    config.byte_timing = args.byte_timing;
    config.seed = args.seed;
    let arm = VirtualArm::spawn(config).context("starting the virtual arm")?;
    arm.set_reply_drop_rate(args.drop_rate);
    arm.set_reply_corruption_rate(args.corruption_rate);
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", arm.port_path().display()).context("writing the pty path to stdout")?;
    stdout.flush().context("flushing stdout")?;
    tracing::info!(
        "serving the virtual WidowX on {}",
        arm.port_path().display()
    );
    if args.ignore_stdin {
        // SIGINT/SIGTERM end the process; the kernel closes the pty.
        loop {
            std::thread::park();
        }
    }
    wait_for_stdin_eof();
    tracing::info!("stdin closed; stopping");
    Ok(())
}

/// Blocks until stdin reaches end of file (or fails), discarding what it reads.
fn wait_for_stdin_eof() {
    let mut stdin = std::io::stdin().lock();
    let mut buffer = [0u8; 256];
    while matches!(stdin.read(&mut buffer), Ok(n) if n > 0) {}
}
