//! `bridge-servo doctor`: checks a station's set-up in one table, each failing row with its fix:
//! the serial port and its permissions (the `dialout` group), the udev rule that names the
//! U2D2 `/dev/ttyDXL`, the FTDI latency timer, the servos found compared with the firmware
//! configuration (IDs, models, registers, hardware errors), and the camera's measured frame
//! rate. With `--sim` it checks the virtual arm and the rendered camera; the host's udev rule
//! and latency timer do not apply to a pseudo-terminal and are marked so.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use camera::FrameSource;
use widowx_driver::ports::{self, LatencyTimer};
use widowx_driver::{Arm, scan};
use widowx_sim::{SimCamera, SimCameraConfig, TabletopConfig, VirtualArm};

use crate::Cli;
use crate::commands::Target;

/// The udev rule Interbotix ships (`99-interbotix-udev.rules`) for the U2D2: the
/// `/dev/ttyDXL` name and a 1 ms FTDI latency timer.
pub const U2D2_UDEV_RULE: &str = r#"SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6014", ENV{ID_MM_DEVICE_IGNORE}="1", ATTR{device/latency_timer}="1", SYMLINK+="ttyDXL""#;

/// Where udev reads rules from.
const UDEV_RULE_DIRS: [&str; 3] = [
    "/etc/udev/rules.d",
    "/lib/udev/rules.d",
    "/usr/lib/udev/rules.d",
];

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Fail,
    /// Does not apply here (a pseudo-terminal has no latency timer).
    NotApplicable,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Fail => "FAIL",
            Verdict::NotApplicable => "n/a",
        })
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do about a failure.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn not_applicable(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            verdict: Verdict::NotApplicable,
            detail: detail.into(),
            fix: None,
        }
    }
}

/// The table, one row per check, the fixes under the failing rows.
pub fn table(checks: &[Check]) -> String {
    let name_width = checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{:<name_width$}  result  detail\n", "check");
    for check in checks {
        out += &format!(
            "{:<name_width$}  {:<6}  {}\n",
            check.name,
            check.verdict.to_string(),
            check.detail
        );
        if let Some(fix) = &check.fix {
            for (i, line) in fix.lines().enumerate() {
                let label = if i == 0 { "fix: " } else { "     " };
                out += &format!("{:<name_width$}          {label}{line}\n", "");
            }
        }
    }
    out
}

/// What `doctor` is told besides the global options.
pub struct DoctorOptions {
    /// The V4L2 camera: an index ("0") or part of its name.
    pub camera: String,
    /// The frame rate the camera should deliver.
    pub camera_fps: f64,
    /// How long the frame rate is measured.
    pub camera_seconds: f64,
}

/// Runs every check and prints the table; exit status 1 when any row failed.
pub fn run(cli: &Cli, options: &DoctorOptions) -> Result<ExitCode> {
    let mut checks = Vec::new();
    if cli.sim {
        let mut sim_config = widowx_sim::SimConfig::new(Target::firmware_of(cli)?);
        if cli.factory {
            sim_config.initial_eeprom = widowx_sim::InitialEeprom::Factory;
        }
        let sim = VirtualArm::spawn_tabletop(sim_config, TabletopConfig::new(0))
            .context("starting the virtual arm")?;
        let target = Target::on_virtual_arm(cli, sim.port_path())?;
        checks.push(port_exists(sim.port_path()));
        checks.push(port_access(sim.port_path()));
        checks.push(Check::not_applicable(
            "udev rule",
            "virtual arm on a pseudo-terminal (a station needs /dev/ttyDXL; see the README)",
        ));
        checks.push(Check::not_applicable(
            "latency timer",
            "a pseudo-terminal has no FTDI latency timer",
        ));
        checks.extend(servo_checks(&target));
        let scene = sim
            .scene_handle()
            .context("the tabletop arm has no scene")?;
        let camera = SimCamera::new(
            scene,
            SimCameraConfig {
                fps: options.camera_fps,
                ..SimCameraConfig::default()
            },
        )?;
        checks.push(frame_rate(Box::new(camera), "rendered camera", options));
    } else {
        let target = Target::new(cli, false)?;
        let port = &cli.port;
        let exists = port_exists(port);
        let reachable = exists.verdict == Verdict::Ok;
        checks.push(exists);
        if reachable {
            checks.push(port_access(port));
        }
        checks.push(udev_rule(port, &rule_dirs()));
        if reachable {
            checks.push(latency_timer(port));
            checks.extend(servo_checks(&target));
        } else {
            checks.push(Check::not_applicable("servos", "not checked: no port"));
        }
        checks.push(usb_camera(options));
    }
    print!("{}", table(&checks));
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    if failed == 0 {
        println!("every check passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{failed} check(s) failed; the fixes are listed under them");
        Ok(ExitCode::from(1))
    }
}

fn rule_dirs() -> Vec<PathBuf> {
    UDEV_RULE_DIRS.iter().map(PathBuf::from).collect()
}

fn port_exists(port: &Path) -> Check {
    const NAME: &str = "serial port";
    match port.canonicalize() {
        Ok(resolved) if resolved != port => Check::ok(
            NAME,
            format!("{} -> {}", port.display(), resolved.display()),
        ),
        Ok(_) => Check::ok(NAME, port.display().to_string()),
        Err(e) => Check::fail(
            NAME,
            format!("{}: {e}", port.display()),
            "plug in the U2D2 and power the arm; `bridge-servo ports` lists the adapters \
             (USB 0403:6014); pass --port /dev/ttyUSB0 until the udev rule below names it /dev/ttyDXL",
        ),
    }
}

fn port_access(port: &Path) -> Check {
    const NAME: &str = "port access";
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(port)
    {
        Ok(_) => Check::ok(NAME, "read and write allowed"),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let group = device_group(port).unwrap_or_else(|| "dialout".into());
            Check::fail(
                NAME,
                format!(
                    "{}: permission denied (the device belongs to group {group})",
                    port.display()
                ),
                format!("sudo usermod -aG {group} $USER, then log out and in again"),
            )
        }
        Err(e) => Check::fail(
            NAME,
            format!("{}: {e}", port.display()),
            "close the program that holds the port (another bridge-run, a ROS driver)",
        ),
    }
}

/// The name of the group that owns `path`, from /etc/group.
fn device_group(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let gid = std::fs::metadata(path).ok()?.gid();
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    group_name(&groups, gid)
}

/// The group with `gid` in /etc/group's text.
fn group_name(etc_group: &str, gid: u32) -> Option<String> {
    etc_group.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == gid).then(|| name.to_string())
    })
}

/// The udev rule that names the port: the port's own name when it is /dev/ttyDXL, and a rule
/// file that creates it.
fn udev_rule(port: &Path, dirs: &[PathBuf]) -> Check {
    const NAME: &str = "udev rule";
    let fix = format!(
        "put this line in /etc/udev/rules.d/99-interbotix-udev.rules:\n{U2D2_UDEV_RULE}\n\
         then: sudo udevadm control --reload-rules && sudo udevadm trigger"
    );
    match find_ttydxl_rule(dirs) {
        Some(file) if Path::new("/dev/ttyDXL").exists() => {
            Check::ok(NAME, format!("{} names /dev/ttyDXL", file.display()))
        }
        Some(file) => Check::fail(
            NAME,
            format!(
                "{} names ttyDXL, but /dev/ttyDXL is absent (U2D2 unplugged?)",
                file.display()
            ),
            "plug in the U2D2; if it is, reload the rules: sudo udevadm control --reload-rules && sudo udevadm trigger",
        ),
        None if port != Path::new("/dev/ttyDXL") => Check::fail(
            NAME,
            format!("no rule names /dev/ttyDXL (using {})", port.display()),
            fix,
        ),
        None => Check::fail(NAME, "no rule names /dev/ttyDXL", fix),
    }
}

/// The first rule file in `dirs` that creates the `ttyDXL` link.
fn find_ttydxl_rule(dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "rules"))
        .find(|path| {
            std::fs::read_to_string(path).is_ok_and(|text| {
                text.lines()
                    .filter(|line| !line.trim_start().starts_with('#'))
                    .any(|line| line.contains("SYMLINK+=\"ttyDXL\""))
            })
        })
}

fn latency_timer(port: &Path) -> Check {
    const NAME: &str = "latency timer";
    match ports::check_latency_timer(Path::new("/sys"), port, 1) {
        LatencyTimer::Ok { tty, latency_ms } => Check::ok(NAME, format!("{tty}: {latency_ms} ms")),
        LatencyTimer::TooHigh {
            tty,
            latency_ms,
            sysfs_path,
        } => Check::fail(
            NAME,
            format!("{tty}: {latency_ms} ms, so every bus transaction may wait that long"),
            format!(
                "echo 1 | sudo tee {} (the udev rule above sets it at every plug-in)",
                sysfs_path.display()
            ),
        ),
        LatencyTimer::NotFtdi => Check::not_applicable(NAME, "not an FTDI USB serial port"),
    }
}

/// Every configured servo answers with its model, no other ID answers, the registers match the
/// configuration, and no servo reports a hardware error.
fn servo_checks(target: &Target) -> Vec<Check> {
    let firmware = target.firmware();
    let baud = firmware.baud_rate_bps;
    let mut checks = vec![scan_check(target, baud)];
    match target.open_arm() {
        Ok(mut arm) => {
            checks.push(register_check(&mut arm));
            checks.push(fault_check(&mut arm));
        }
        Err(e) => checks.push(Check::fail(
            "servo registers",
            format!("cannot open the port: {}", causes(&e)),
            "see the rows above",
        )),
    }
    checks
}

fn scan_check(target: &Target, baud: u32) -> Check {
    const NAME: &str = "servos";
    let firmware = target.firmware();
    let hits = match scan(target.port(), &[baud], 0..=252, 0.005) {
        Ok(hits) => hits,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("cannot scan {}: {e}", target.port().display()),
                "see the rows above",
            );
        }
    };
    let mut problems = Vec::new();
    for servo in &firmware.servos {
        match hits.iter().find(|h| h.id == servo.id) {
            None => problems.push(format!("ID {} ({}) missing", servo.id, servo.joint)),
            Some(hit) if hit.model_number != servo.model.model_number() => problems.push(format!(
                "ID {} ({}) is model {}, configured {}",
                servo.id, servo.joint, hit.model_number, servo.model
            )),
            Some(_) => {}
        }
    }
    for hit in &hits {
        if firmware.servo(hit.id).is_none() {
            problems.push(format!("ID {} answers but is not configured", hit.id));
        }
    }
    if problems.is_empty() {
        return Check::ok(
            NAME,
            format!(
                "{} of {} configured servos answer at {baud} baud with their models",
                hits.len(),
                firmware.servos.len()
            ),
        );
    }
    Check::fail(
        NAME,
        problems.join("; "),
        "check the daisy-chain cables and the 12 V supply; `bridge-servo scan` tries every baud \
         rate and finds a servo with another ID or baud; set IDs with Dynamixel Wizard",
    )
}

fn register_check(arm: &mut Arm) -> Check {
    const NAME: &str = "servo registers";
    match arm.verify() {
        Ok(report) if report.is_clean() => Check::ok(NAME, report.to_string()),
        Ok(report) => Check::fail(
            NAME,
            format!(
                "{} register(s) differ from the configuration",
                report.diffs.len()
            ),
            "bridge-servo verify lists them; bridge-servo apply --then-verify writes them",
        ),
        Err(e) => Check::fail(NAME, format!("cannot read them: {e}"), "see the servos row"),
    }
}

fn fault_check(arm: &mut Arm) -> Check {
    const NAME: &str = "hardware errors";
    match arm.hardware_errors() {
        Ok(errors) => {
            let faulted: Vec<String> = errors
                .iter()
                .filter(|(_, e)| !e.is_empty())
                .map(|(servo, e)| format!("{servo}: {e}"))
                .collect();
            if faulted.is_empty() {
                Check::ok(NAME, "none")
            } else {
                Check::fail(
                    NAME,
                    faulted.join("; "),
                    "find the cause (overload: a collision or a blocked joint), then bridge-servo reboot ID",
                )
            }
        }
        Err(e) => Check::fail(NAME, format!("cannot read them: {e}"), "see the servos row"),
    }
}

fn causes(error: &anyhow::Error) -> String {
    error
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// Captures frames for `options.camera_seconds` and compares the rate with `camera_fps`: below
/// 80% of it fails.
fn frame_rate(mut camera: Box<dyn FrameSource>, what: &str, options: &DoctorOptions) -> Check {
    const NAME: &str = "camera";
    let first = match camera.next_frame() {
        Ok(frame) => frame,
        Err(e) => {
            return Check::fail(
                NAME,
                format!("{what}: no frame: {e}"),
                "check the cable; `v4l2-ctl --list-devices` lists cameras",
            );
        }
    };
    let started = Instant::now();
    let mut frames = 0u32;
    while started.elapsed() < Duration::from_secs_f64(options.camera_seconds) {
        if let Err(e) = camera.next_frame() {
            return Check::fail(
                NAME,
                format!("{what}: stopped after {frames} frames: {e}"),
                "check the cable and the USB port (USB 2 or better)",
            );
        }
        frames += 1;
    }
    let fps = f64::from(frames) / started.elapsed().as_secs_f64();
    let detail = format!(
        "{what}: {}x{} px at {fps:.1} frames/s (expected {})",
        first.width_px, first.height_px, options.camera_fps
    );
    if fps >= 0.8 * options.camera_fps {
        Check::ok(NAME, detail)
    } else {
        Check::fail(
            NAME,
            detail,
            "turn off auto exposure priority (v4l2-ctl -c exposure_dynamic_framerate=0) and light the scene; use MJPEG",
        )
    }
}

#[cfg(feature = "v4l2")]
fn usb_camera(options: &DoctorOptions) -> Check {
    use camera::{PixelFormat, V4l2Camera, V4l2Config, V4l2Device};
    let device = match options.camera.parse::<u32>() {
        Ok(index) => V4l2Device::Index(index),
        Err(_) => V4l2Device::Name(options.camera.clone()),
    };
    let config = V4l2Config {
        device,
        width_px: 640,
        height_px: 480,
        fps: options.camera_fps.round() as u32,
        format: PixelFormat::Mjpeg,
    };
    match V4l2Camera::open(config) {
        Ok(camera) => frame_rate(
            Box::new(camera),
            &format!("camera {}", options.camera),
            options,
        ),
        Err(e) => Check::fail(
            "camera",
            format!("camera {}: {e}", options.camera),
            "plug in the camera; `v4l2-ctl --list-devices` lists them; add yourself to group video",
        ),
    }
}

#[cfg(not(feature = "v4l2"))]
fn usb_camera(options: &DoctorOptions) -> Check {
    Check::fail(
        "camera",
        format!(
            "camera {}: this bridge-servo is built without USB camera support",
            options.camera
        ),
        "cargo build --release -p bridge-servo --features v4l2 (needs apt install libclang-dev)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_fixes_under_failing_rows() {
        let checks = [
            Check::ok("serial port", "/dev/ttyDXL -> /dev/ttyUSB0"),
            Check::fail("latency timer", "ttyUSB0: 16 ms", "echo 1 | sudo tee x"),
            Check::not_applicable("udev rule", "pseudo-terminal"),
        ];
        let text = table(&checks);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("check"));
        assert!(lines[1].contains("ok") && lines[1].contains("/dev/ttyUSB0"));
        assert!(lines[2].contains("FAIL") && lines[2].contains("16 ms"));
        assert!(lines[3].trim_start().starts_with("fix: echo 1"));
        assert!(lines[4].contains("n/a"));
    }

    #[test]
    fn a_rule_file_naming_ttydxl_is_found_and_comments_do_not_count() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10-other.rules"), "# SYMLINK+=\"ttyDXL\"\n").unwrap();
        let dirs = [dir.path().to_path_buf(), PathBuf::from("/nonexistent")];
        assert_eq!(find_ttydxl_rule(&dirs), None);
        std::fs::write(
            dir.path().join("99-interbotix-udev.rules"),
            format!("{U2D2_UDEV_RULE}\n"),
        )
        .unwrap();
        assert_eq!(
            find_ttydxl_rule(&dirs),
            Some(dir.path().join("99-interbotix-udev.rules"))
        );
        let check = udev_rule(Path::new("/dev/ttyUSB0"), &[PathBuf::from("/nonexistent")]);
        assert_eq!(check.verdict, Verdict::Fail);
        assert!(
            check
                .fix
                .unwrap()
                .contains("ATTR{device/latency_timer}=\"1\"")
        );
    }

    #[test]
    fn group_names_come_from_etc_group() {
        let etc_group = "root:x:0:\ndialout:x:20:alice\nvideo:x:44:\n";
        assert_eq!(group_name(etc_group, 20).as_deref(), Some("dialout"));
        assert_eq!(group_name(etc_group, 7), None);
    }
}
