//! The subcommands: each opens what it needs (port or virtual arm), does one job, and prints.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use widowx::bridge::{bridge_state, bridge_target_pose};
use widowx::control_table::Model;
use widowx::firmware::FirmwareConfig;
use widowx::joints::{ARM_JOINTS, BRIDGE_NEUTRAL_POSE_RAD, Joint};
use widowx::kinematics::{IkConfig, forward, inverse};
use widowx::pose::Pose;
use widowx_driver::{
    Arm, DriverConfig, GOAL_BYTES, INSTRUCTION_OVERHEAD_BYTES, JOINT_STATE_BYTES,
    STATUS_OVERHEAD_BYTES, ports, scan, wire_time,
};
use widowx_sim::{InitialEeprom, SimConfig, VirtualArm};

use crate::{Cli, Command, TorqueState};

/// Where the commands talk: a port, and the virtual arm behind it when --sim.
pub(crate) struct Target {
    port: PathBuf,
    firmware: FirmwareConfig,
    driver: DriverConfig,
    /// Kept alive for the whole command; dropping it stops the virtual arm.
    _sim: Option<VirtualArm>,
}

impl Target {
    /// The firmware config: --config, or the embedded wx250s.
    pub(crate) fn firmware_of(cli: &Cli) -> Result<FirmwareConfig> {
        Ok(match &cli.config {
            Some(path) => FirmwareConfig::load(path)?,
            None => FirmwareConfig::wx250s(),
        })
    }

    fn driver_of(cli: &Cli) -> Result<DriverConfig> {
        match &cli.driver_config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading driver config {}", path.display()))?;
                Ok(toml::from_str(&text)
                    .with_context(|| format!("driver config {}", path.display()))?)
            }
            None => Ok(DriverConfig::default()),
        }
    }

    /// A target on a virtual arm the caller keeps alive (at `port`).
    pub(crate) fn on_virtual_arm(cli: &Cli, port: &Path) -> Result<Target> {
        Ok(Target {
            port: port.to_path_buf(),
            firmware: Target::firmware_of(cli)?,
            driver: Target::driver_of(cli)?
                .with_reply_timeout_at_least(widowx_sim::DRIVER_REPLY_TIMEOUT_S),
            _sim: None,
        })
    }

    pub(crate) fn port(&self) -> &Path {
        &self.port
    }

    pub(crate) fn firmware(&self) -> &FirmwareConfig {
        &self.firmware
    }

    /// Opens the port without requiring every servo to answer.
    pub(crate) fn open_arm(&self) -> Result<Arm> {
        self.open()
    }

    pub(crate) fn new(cli: &Cli, byte_timing: bool) -> Result<Target> {
        let firmware = Target::firmware_of(cli)?;
        let driver = Target::driver_of(cli)?;
        if !cli.sim {
            return Ok(Target {
                port: cli.port.clone(),
                firmware,
                driver,
                _sim: None,
            });
        }
        let driver = if cli.driver_config.is_none() {
            driver.with_reply_timeout_at_least(widowx_sim::DRIVER_REPLY_TIMEOUT_S)
        } else {
            driver
        };
        let mut sim_config = SimConfig::new(firmware.clone());
        sim_config.byte_timing = byte_timing;
        if cli.factory {
            sim_config.initial_eeprom = InitialEeprom::Factory;
        }
        let sim = VirtualArm::spawn(sim_config).context("starting the virtual arm")?;
        let port = sim.port_path().to_path_buf();
        Ok(Target {
            port,
            firmware,
            driver,
            _sim: Some(sim),
        })
    }

    pub(crate) fn connect(&self) -> Result<Arm> {
        Arm::connect(&self.port, self.firmware.clone(), self.driver.clone())
            .with_context(|| format!("connecting to the arm on {}", self.port.display()))
    }

    /// Opens the port without requiring every servo to answer (for repairs).
    fn open(&self) -> Result<Arm> {
        Arm::open(&self.port, self.firmware.clone(), self.driver.clone())
            .with_context(|| format!("opening {}", self.port.display()))
    }
}

/// Runs the command; the exit code is 1 when the command found a problem it reports (verify).
pub fn run(cli: &Cli) -> Result<ExitCode> {
    // The target (and the virtual arm behind --sim) must outlive every Arm opened on it.
    let target = || Target::new(cli, false);
    match &cli.command {
        Command::Ports => list_ports(),
        Command::Fk { joints_rad } => fk(joints_rad),
        Command::Ik { pose, bridge } => ik(pose, *bridge),
        Command::Scan {
            baud,
            ids,
            timeout_ms,
        } => run_scan(&target()?, baud, *ids, *timeout_ms),
        Command::Verify => verify(&target()?),
        Command::Apply { yes, then_verify } => apply(&target()?, *yes, *then_verify),
        Command::Read { id, register } => {
            let target = target()?;
            let mut arm = target.open()?;
            let value = arm.read_register(*id, register)?;
            println!("{} {register} = {value}", arm.servo_ref(*id));
            Ok(ExitCode::SUCCESS)
        }
        Command::Write {
            id,
            register,
            value,
        } => {
            let target = target()?;
            let mut arm = target.open()?;
            arm.write_register(*id, register, *value)?;
            let read_back = arm.read_register(*id, register)?;
            println!("{} {register} = {read_back}", arm.servo_ref(*id));
            Ok(ExitCode::SUCCESS)
        }
        Command::Reboot { id } => {
            let target = target()?;
            let mut arm = target.open()?;
            arm.reboot(*id)?;
            println!(
                "{} rebooted; settings and torque restored",
                arm.servo_ref(*id)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Faults => faults(&target()?),
        Command::Torque { state, id } => {
            let target = target()?;
            let mut arm = target.open()?;
            arm.set_torque(*state == TorqueState::On, *id)?;
            let which = id.map_or("every servo".to_string(), |id| {
                arm.servo_ref(id).to_string()
            });
            println!(
                "torque {} for {which}",
                if *state == TorqueState::On {
                    "on"
                } else {
                    "off"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Joints { count, rate_hz } => joints(&target()?, *count, *rate_hz),
        Command::Bench { cycles } => bench(&Target::new(cli, true)?, *cycles),
        Command::Demo { square_m } => crate::demo::run(&Target::new(cli, true)?, *square_m),
        Command::Doctor {
            camera,
            camera_fps,
            camera_seconds,
        } => crate::doctor::run(
            cli,
            &crate::doctor::DoctorOptions {
                camera: camera.clone(),
                camera_fps: *camera_fps,
                camera_seconds: *camera_seconds,
            },
        ),
    }
}

fn list_ports() -> Result<ExitCode> {
    let found = ports::list_ports()?;
    if found.is_empty() {
        println!("no serial ports found");
    }
    for port in &found {
        println!("{port}");
    }
    Ok(ExitCode::SUCCESS)
}

fn run_scan(
    target: &Target,
    baud_rates: &[u32],
    (first, last): (u8, u8),
    timeout_ms: f64,
) -> Result<ExitCode> {
    let hits = scan(&target.port, baud_rates, first..=last, timeout_ms / 1000.0)
        .with_context(|| format!("scanning {}", target.port.display()))?;
    for hit in &hits {
        let model = hit.model().map_or("unknown model", Model::name);
        let configured = match target.firmware.servo(hit.id) {
            Some(servo) if servo.model.model_number() == hit.model_number => {
                format!("configured: {}", servo.joint)
            }
            Some(servo) => format!(
                "configured as {} ({}): WRONG MODEL",
                servo.joint, servo.model
            ),
            None => "not in the config".to_string(),
        };
        println!(
            "baud {:>7}  ID {:>3}  {model} ({})  firmware {}  {configured}",
            hit.baud_rate_bps, hit.id, hit.model_number, hit.firmware_version
        );
    }
    println!("{} servo(s) found", hits.len());
    Ok(ExitCode::SUCCESS)
}

fn verify(target: &Target) -> Result<ExitCode> {
    let mut arm = target.connect()?;
    let report = arm.verify()?;
    println!("{report}");
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn apply(target: &Target, yes: bool, then_verify: bool) -> Result<ExitCode> {
    let mut arm = target.connect()?;
    let planned = arm.verify()?;
    println!("before: {planned}");
    if !yes && !confirm("Turn torque off and write EEPROM (settings and shadow calibration)?")? {
        println!("nothing written");
        return Ok(ExitCode::from(1));
    }
    let report = arm.apply()?;
    println!("{report}");
    println!("torque is off; `bridge-servo torque on` to hold the arm");
    if then_verify {
        let after = arm.verify()?;
        println!("after: {after}");
        if !after.is_clean() {
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to write EEPROM without confirmation: stdin is not a terminal; pass --yes");
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn faults(target: &Target) -> Result<ExitCode> {
    let mut arm = target.open()?;
    let mut any = false;
    for (servo, errors) in arm.hardware_errors()? {
        any |= !errors.is_empty();
        println!("{servo}: {errors}");
    }
    Ok(if any {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn joints(target: &Target, count: Option<u64>, rate_hz: f64) -> Result<ExitCode> {
    if !(rate_hz.is_finite() && rate_hz > 0.0) {
        bail!("--rate-hz must be positive, got {rate_hz}");
    }
    let mut arm = target.connect()?;
    let period = Duration::from_secs_f64(1.0 / rate_hz);
    let header: Vec<String> = Joint::ALL
        .iter()
        .map(|j| format!("{:>14}", j.name()))
        .collect();
    println!("{}", header.join(""));
    let mut readings = 0u64;
    while count.is_none_or(|n| readings < n) {
        let started = Instant::now();
        let state = *arm.read_joint_state()?;
        let positions: Vec<String> = state
            .positions_rad
            .iter()
            .map(|p| format!("{p:>10.4} rad"))
            .collect();
        let efforts: Vec<String> = state
            .effort
            .iter()
            .map(|e| format!("{:>14}", e.to_string()))
            .collect();
        println!("{}\n{}", positions.join(""), efforts.join(""));
        readings += 1;
        if count.is_none_or(|n| readings < n) {
            std::thread::sleep(period.saturating_sub(started.elapsed()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn six(values: &[f64], what: &str) -> Result<[f64; ARM_JOINTS]> {
    <[f64; ARM_JOINTS]>::try_from(values)
        .map_err(|_| anyhow::anyhow!("{what}: expected 6 numbers, got {}", values.len()))
}

fn fk(joints_rad: &[f64]) -> Result<ExitCode> {
    let joints_rad = six(joints_rad, "joints")?;
    let pose = forward(&joints_rad);
    print_pose(&pose);
    let state = bridge_state(&joints_rad, 1.0);
    println!(
        "bridge state: x {:.6} y {:.6} z {:.6} roll {:.6} pitch {:.6} yaw {:.6}",
        state[0], state[1], state[2], state[3], state[4], state[5]
    );
    Ok(ExitCode::SUCCESS)
}

fn print_pose(pose: &Pose) {
    let [x, y, z] = pose.position_m;
    let [roll, pitch, yaw] = pose.rpy_rad();
    println!(
        "ee_gripper_link in base_link: xyz_m {x:.6} {y:.6} {z:.6}  rpy_rad {roll:.6} {pitch:.6} {yaw:.6}"
    );
}

fn ik(pose: &[f64], bridge: bool) -> Result<ExitCode> {
    let values = six(pose, "pose")?;
    let (xyz_m, rpy_rad) = (
        [values[0], values[1], values[2]],
        [values[3], values[4], values[5]],
    );
    let target = if bridge {
        bridge_target_pose(xyz_m, rpy_rad)
    } else {
        Pose::from_xyz_rpy(xyz_m, rpy_rad)
    };
    let joints_rad = inverse(&target, &BRIDGE_NEUTRAL_POSE_RAD, &IkConfig::default())
        .context("inverse kinematics (seeded from the Bridge neutral pose)")?;
    let named: Vec<String> = Joint::ALL[..ARM_JOINTS]
        .iter()
        .zip(joints_rad)
        .map(|(joint, angle)| format!("{joint} {angle:.6}"))
        .collect();
    println!("joints_rad: {}", named.join("  "));
    print_pose(&forward(&joints_rad));
    Ok(ExitCode::SUCCESS)
}

/// Bytes on the wire in one control cycle: the SYNC_READ instruction to the 7 masters and their
/// 7 status replies, and the SYNC_WRITE to the 6 arm masters (no byte stuffing assumed).
pub fn cycle_wire_bytes() -> (usize, usize) {
    let sync_read = INSTRUCTION_OVERHEAD_BYTES + 4 + (ARM_JOINTS + 1);
    let replies = (ARM_JOINTS + 1) * (STATUS_OVERHEAD_BYTES + usize::from(JOINT_STATE_BYTES));
    let sync_write = INSTRUCTION_OVERHEAD_BYTES + 4 + ARM_JOINTS * (1 + GOAL_BYTES);
    (sync_read + replies, sync_write)
}

fn bench(target: &Target, cycles: usize) -> Result<ExitCode> {
    if cycles == 0 {
        bail!("--cycles must be at least 1");
    }
    let mut arm = target.connect()?;
    arm.set_torque(true, None)?;
    let hold = arm.read_joint_state()?.arm_positions_rad();
    let mut durations_s = Vec::with_capacity(cycles);
    for _ in 0..cycles {
        let started = Instant::now();
        arm.read_joint_state()?;
        arm.write_joint_goals(&hold, 0.25)?;
        durations_s.push(started.elapsed().as_secs_f64());
    }
    arm.set_torque(false, None)?;
    durations_s.sort_by(f64::total_cmp);
    let at = |q: f64| durations_s[((durations_s.len() - 1) as f64 * q).round() as usize] * 1000.0;
    let (read_bytes, write_bytes) = cycle_wire_bytes();
    let baud = target.firmware.baud_rate_bps;
    let bound_ms = |bytes| wire_time(bytes, baud).as_secs_f64() * 1000.0;
    println!(
        "control cycle (read_joint_state + write_joint_goals), {cycles} cycles on {}",
        target.port.display()
    );
    println!("{:<40} {:>10}", "quantity", "ms");
    println!("{:<40} {:>10.3}", "p50", at(0.50));
    println!("{:<40} {:>10.3}", "p99", at(0.99));
    println!("{:<40} {:>10.3}", "max", at(1.0));
    // The SYNC_WRITE has no reply: the caller only waits for it when the next instruction
    // queues behind it on the wire, so the read alone bounds one call sequence from below.
    println!(
        "{:<40} {:>10.3}",
        format!("wire time, sync read + 7 replies ({read_bytes} B)"),
        bound_ms(read_bytes)
    );
    let total = read_bytes + write_bytes;
    println!(
        "{:<40} {:>10.3}",
        format!("wire time, whole cycle ({total} B @ {baud} bps)"),
        bound_ms(total)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycle_byte_count() {
        // 21 (sync read) + 7 x 23 (replies), 92 (sync write).
        assert_eq!(cycle_wire_bytes(), (21 + 161, 92));
    }
}
