//! `bridge-sim serve` as a process: prints the pty path, answers a Dynamixel client, exits when
//! stdin closes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn serve_prints_the_path_answers_and_stops_on_stdin_eof() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bridge-sim"))
        .args(["serve", "--factory"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let path = line.trim();
    assert!(path.starts_with("/dev/pts/"), "{path}");
    let mut bus = dynamixel2::Bus::open(path, 1_000_000).unwrap();
    assert_eq!(bus.ping(9).unwrap().data.model, 1060);
    // Factory EEPROM: Return_Delay_Time 250.
    assert_eq!(bus.read_u8(9, 9).unwrap().data, 250);
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "bridge-sim did not stop after stdin closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
}

#[test]
fn bad_config_is_reported_with_the_file_name() {
    let output = Command::new(env!("CARGO_BIN_EXE_bridge-sim"))
        .args(["serve", "--config", "/nonexistent/arm.toml"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/arm.toml"), "{stderr}");
    assert!(output.stdout.is_empty());
}
