//! # bridge-servo
//!
//! Set-up and repair of the WidowX 250's Dynamixel servos: find the adapter (`ports`), find
//! servos at any ID and baud rate (`scan`), compare and write the register settings of a
//! firmware config (`verify`, `apply`), read and write single registers, reboot a faulted servo,
//! switch torque, watch the joints, and the kinematics at hand (`fk`, `ik`); `doctor` checks a
//! station's set-up (port, permissions, udev rule, latency timer, servos, camera) in one table. `--sim` runs every
//! command against an in-process virtual arm instead of hardware; `bench` times a control cycle.
//!
//! Not for: running policies or recording data (that is `bridge-run`).
//!
//! ```text
//! bridge-servo ports
//! bridge-servo --port /dev/ttyDXL verify
//! bridge-servo --sim --factory apply --yes --then-verify
//! bridge-servo read 4 Hardware_Error_Status
//! bridge-servo fk 0 0 0 0 0 0
//! bridge-servo doctor
//! ```

mod commands;
mod demo;
mod doctor;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "bridge-servo",
    version,
    about = "WidowX 250 servo set-up and repair over Dynamixel Protocol 2.0"
)]
pub struct Cli {
    /// Serial port of the U2D2 adapter.
    #[arg(long, global = true, default_value = "/dev/ttyDXL")]
    pub port: PathBuf,
    /// Firmware config (servo map and register settings); default: the embedded wx250s config.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Driver settings (timeouts, retries, gripper pressure) as TOML; default: built-in defaults.
    #[arg(long, global = true)]
    pub driver_config: Option<PathBuf>,
    /// Use an in-process virtual arm instead of --port.
    #[arg(long, global = true)]
    pub sim: bool,
    /// With --sim: an arm fresh from assembly (factory register values).
    #[arg(long, global = true, requires = "sim")]
    pub factory: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List serial ports, marking U2D2 adapters (USB 0403:6014).
    Ports,
    /// Ping every ID at each baud rate: finds servos whatever their settings.
    Scan {
        /// Baud rates to try, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "57600,1000000,2000000,3000000,4000000"
        )]
        baud: Vec<u32>,
        /// IDs to ping, as FIRST-LAST.
        #[arg(long, default_value = "0-252", value_parser = parse_id_range)]
        ids: (u8, u8),
        /// Wait for each reply beyond its wire time, in ms.
        #[arg(long, default_value_t = 5.0)]
        timeout_ms: f64,
    },
    /// Read back every configured register and list the differences (exit status 1 if any).
    Verify,
    /// Write the configured settings (EEPROM, shadow calibration, RAM); torque is left off.
    Apply {
        /// Do not ask before writing EEPROM.
        #[arg(long)]
        yes: bool,
        /// Verify afterwards, in the same session.
        #[arg(long)]
        then_verify: bool,
    },
    /// Read a register by control-table name, e.g. `read 4 Present_Position`.
    Read { id: u8, register: String },
    /// Write a register by control-table name (range-checked; EEPROM needs torque off).
    Write {
        id: u8,
        register: String,
        #[arg(allow_negative_numbers = true)]
        value: i64,
    },
    /// Reboot a servo (clears its hardware error) and restore its torque and settings.
    Reboot { id: u8 },
    /// Show Hardware_Error_Status of every servo.
    Faults,
    /// Switch torque of every servo, or of one.
    Torque { state: TorqueState, id: Option<u8> },
    /// Print the joint state a few times a second until Ctrl-C (or --count readings).
    Joints {
        #[arg(long)]
        count: Option<u64>,
        #[arg(long, default_value_t = 4.0)]
        rate_hz: f64,
    },
    /// Forward kinematics: pose of ee_gripper_link for joints waist..wrist_rotate (rad).
    Fk {
        #[arg(num_args = 6, allow_negative_numbers = true, value_names = ["J1", "J2", "J3", "J4", "J5", "J6"])]
        joints_rad: Vec<f64>,
    },
    /// Inverse kinematics from the Bridge neutral pose: joints for a pose (m, rad).
    Ik {
        #[arg(num_args = 6, allow_negative_numbers = true, value_names = ["X", "Y", "Z", "ROLL", "PITCH", "YAW"])]
        pose: Vec<f64>,
        /// Angles are Bridge state angles (relative to the gripper pointing down), not base-frame.
        #[arg(long)]
        bridge: bool,
    },
    /// The whole arm path end to end: ping, verify, torque on, drive the gripper through Bridge
    /// targets with IK at 5 Hz while reading the joints at 100 Hz, work the gripper, park, torque off.
    Demo {
        /// Side of the square traced around the Bridge start pose, in metres.
        #[arg(long, default_value_t = 0.08)]
        square_m: f64,
    },
    /// Time control cycles (read_joint_state + write_joint_goals); with --sim the virtual arm
    /// delays replies as a real bus would.
    Bench {
        #[arg(long, default_value_t = 500)]
        cycles: usize,
    },
    /// Check the station's set-up in one table, each failing row with its fix: the port and
    /// its permissions, the udev rule for /dev/ttyDXL, the FTDI latency timer, the servos
    /// against the firmware config, and the camera's frame rate. Exit status 1 if any fails.
    Doctor {
        /// The camera: a V4L2 index ("0" for /dev/video0) or part of its name.
        #[arg(long, default_value = "0")]
        camera: String,
        /// The frame rate the camera should deliver at 640x480.
        #[arg(long, default_value_t = 30.0)]
        camera_fps: f64,
        /// How long the frame rate is measured, s.
        #[arg(long, default_value_t = 2.0)]
        camera_seconds: f64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TorqueState {
    On,
    Off,
}

fn parse_id_range(text: &str) -> Result<(u8, u8), String> {
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let parse = |s: &str| {
        s.trim()
            .parse::<u8>()
            .map_err(|e| format!("`{s}` is not an ID 0..=252: {e}"))
    };
    let (first, last) = (parse(first)?, parse(last)?);
    if first > last || last > 252 {
        return Err(format!(
            "`{text}`: expected FIRST-LAST with FIRST <= LAST <= 252"
        ));
    }
    Ok((first, last))
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match commands::run(&cli).context("bridge-servo") {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_ranges() {
        assert_eq!(parse_id_range("0-252"), Ok((0, 252)));
        assert_eq!(parse_id_range("7"), Ok((7, 7)));
        assert!(parse_id_range("9-3").is_err());
        assert!(parse_id_range("0-253").is_err());
        assert!(parse_id_range("x").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
