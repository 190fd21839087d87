//! The `bridge-servo` binary end to end, every command against its own in-process virtual arm
//! (`--sim`): each invocation is a fresh arm.

use std::process::{Command, Output};

fn bridge_servo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bridge-servo"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn scan_finds_the_nine_servos() {
    let out = bridge_servo(&[
        "--sim",
        "scan",
        "--baud",
        "1000000",
        "--ids",
        "0-20",
        "--timeout-ms",
        "20",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("9 servo(s) found"), "{}", describe(&out));
    assert!(
        text.lines().any(|l| l.contains("ID   8")
            && l.contains("XL430-W250")
            && l.contains("wrist_rotate")),
        "{text}"
    );
}

#[test]
fn verify_configured_arm_is_clean() {
    let out = bridge_servo(&["--sim", "verify"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout(&out).contains("configured registers of 9 servos match"),
        "{}",
        describe(&out)
    );
}

#[test]
fn verify_factory_arm_shows_diffs() {
    let out = bridge_servo(&["--sim", "--factory", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("configured registers differ"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("servo 3 (shoulder)") && l.contains("Secondary_ID")),
        "{text}"
    );
}

#[test]
fn apply_fixes_a_factory_arm() {
    let out = bridge_servo(&["--sim", "--factory", "apply", "--yes", "--then-verify"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("registers written"), "{text}");
    assert!(text.contains("Homing_Offset"), "{text}");
    assert!(text.contains("after: all"), "{text}");
}

#[test]
fn apply_without_yes_and_no_terminal_refuses() {
    let out = bridge_servo(&["--sim", "--factory", "apply"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --yes"),
        "{}",
        describe(&out)
    );
}

#[test]
fn read_and_write_a_register() {
    let out = bridge_servo(&["--sim", "read", "4", "Min_Position_Limit"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        stdout(&out).trim(),
        "servo 4 (elbow) Min_Position_Limit = 648"
    );
    let out = bridge_servo(&["--sim", "write", "4", "Position_P_Gain", "900"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(stdout(&out).trim(), "servo 4 (elbow) Position_P_Gain = 900");
    let out = bridge_servo(&["--sim", "write", "4", "Position_P_Gain", "-3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outside the valid range"),
        "{}",
        describe(&out)
    );
}

#[test]
fn torque_reboot_and_faults() {
    let out = bridge_servo(&["--sim", "torque", "on", "4"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout(&out).contains("torque on for servo 4 (elbow)"));
    let out = bridge_servo(&["--sim", "reboot", "4"]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = bridge_servo(&["--sim", "faults"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.ends_with("no hardware error"))
            .count(),
        9
    );
}

#[test]
fn joints_prints_readings() {
    let out = bridge_servo(&["--sim", "joints", "--count", "2", "--rate-hz", "20"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout(&out);
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.contains("waist") && l.contains("gripper")),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.contains(" rad")).count(),
        2,
        "{text}"
    );
    assert!(text.contains(" mA") && text.contains(" %"), "{text}");
}

#[test]
fn fk_of_zeros_is_the_home_pose() {
    let out = bridge_servo(&["fk", "0", "0", "0", "0", "0", "0"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("xyz_m 0.458325 0.000000 0.360650"), "{text}");
    assert!(text.contains("bridge state"), "{text}");
}

#[test]
fn ik_reaches_a_fk_pose() {
    let out = bridge_servo(&["fk", "0.1", "-0.5", "0.6", "0", "1.2", "0"]);
    let text = stdout(&out);
    let line = text.lines().find(|l| l.contains("xyz_m")).unwrap();
    let numbers: Vec<String> = line
        .split_whitespace()
        .filter(|w| w.parse::<f64>().is_ok())
        .map(String::from)
        .collect();
    assert_eq!(numbers.len(), 6, "{line}");
    let mut args = vec!["ik"];
    args.extend(numbers.iter().map(String::as_str));
    let out = bridge_servo(&args);
    assert!(out.status.success(), "{}", describe(&out));
    let reached = stdout(&out);
    assert!(reached.contains("joints_rad: waist"), "{reached}");
    // The pose of the joints found is the target, to the IK tolerance (1 mm).
    let line = reached.lines().find(|l| l.contains("xyz_m")).unwrap();
    let got: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    for axis in 0..3 {
        let want: f64 = numbers[axis].parse().unwrap();
        assert!((got[axis] - want).abs() < 1e-3, "{line} vs {numbers:?}");
    }
}

#[test]
fn bad_input_is_explained() {
    let out = bridge_servo(&["fk", "0", "0"]);
    assert!(!out.status.success());
    let out = bridge_servo(&["--sim", "read", "4", "Min_Postion_Limit"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no register named `Min_Postion_Limit`"),
        "{}",
        describe(&out)
    );
}

/// The README's first command: the whole arm path (IK -> sync write -> virtual servos -> sync read)
/// reaches every Bridge target to within IK tolerance plus servo resolution, then parks.
#[test]
fn demo_reaches_every_target_and_parks() {
    let out = bridge_servo(&["--sim", "demo", "--square-m", "0.06"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("9 servos answered"), "{}", describe(&out));
    assert!(text.contains("0 differences"), "{}", describe(&out));
    let errors_mm: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("target"))
        .filter_map(|l| l.split("error ").nth(1))
        .map(|e| e.trim_end_matches(" mm").parse().unwrap())
        .collect();
    assert_eq!(errors_mm.len(), 5, "{}", describe(&out));
    assert!(errors_mm.iter().all(|&e| e < 3.0), "{errors_mm:?}");
    assert!(
        text.contains("parked in the sleep pose, torque off"),
        "{}",
        describe(&out)
    );
}

#[test]
fn doctor_prints_its_table_and_a_fix_for_each_failure() {
    let out = bridge_servo(&["--sim", "doctor", "--camera-seconds", "1"]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout(&out);
    for row in [
        "serial port",
        "port access",
        "udev rule",
        "latency timer",
        "servo registers",
        "hardware errors",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(row)),
            "no {row} row:\n{text}"
        );
    }
    assert!(text.contains("9 of 9 configured servos answer"), "{text}");
    let camera = text.lines().find(|l| l.starts_with("camera")).unwrap();
    assert!(
        camera.contains("ok") && camera.contains("640x480 px"),
        "{text}"
    );
    assert!(text.contains("every check passed"), "{text}");

    // An arm fresh from assembly: its registers differ, and the fix says how to write them.
    let out = bridge_servo(&["--sim", "--factory", "doctor", "--camera-seconds", "0.5"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = stdout(&out);
    let registers = text
        .lines()
        .position(|l| l.starts_with("servo registers"))
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[registers].contains("FAIL"), "{text}");
    assert!(
        lines[registers + 1].contains("fix: bridge-servo verify lists them"),
        "{text}"
    );

    // No adapter on the port: the first row fails and says what to do.
    let out = bridge_servo(&["--port", "/dev/ttyNOTHERE", "doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.lines().next().unwrap().starts_with("check"), "{text}");
    assert!(text.contains("fix: plug in the U2D2"), "{text}");
    assert!(text.contains(r#"SYMLINK+="ttyDXL""#), "{text}");
}
