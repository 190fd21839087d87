//! Keys typed into a real pseudo-terminal running `bridge-run --sim`: space pauses, q parks and
//! quits; the exit status, the terminal output and the log show it.

mod support;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use support::*;

/// A pseudo-terminal: the master end for the test, the slave for the child's stdio.
fn pty() -> (File, File) {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    let slave = OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    (File::from(master), slave)
}

fn log_contains(path: &Path, text: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|log| log.contains(text))
}

#[test]
fn space_pauses_and_q_parks_and_quits_in_a_real_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = tiny_checkpoint(dir.path());
    let goal = dir.path().join("goal.png");
    image::RgbImage::from_pixel(640, 480, image::Rgb([120, 110, 100]))
        .save(&goal)
        .unwrap();
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        "[control]\nreset_speed_rad_s = 1.8\n[episode]\nmax_steps = 1000\nreport = false\n\
         recording_dir = \"rec\"\nlog_file = \"run.log\"\n[camera]\nsim_fps = 8.0\n",
    )
    .unwrap();
    let (mut master, slave) = pty();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bridge-run"))
        .current_dir(dir.path())
        .args(["--sim", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--goal")
        .arg(&goal)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    // Everything the child writes to its terminal.
    let screen = Arc::new(Mutex::new(String::new()));
    let mut reader = master.try_clone().unwrap();
    let sink = Arc::clone(&screen);
    let reader_thread = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let log = dir.path().join("run.log");
    let running = wait_for(Duration::from_secs(40), || {
        log_contains(&log, "mode idle -> running")
    });
    assert!(running, "never ran; terminal:\n{}", screen.lock().unwrap());

    // A jog key while the policy drives does nothing, and says why.
    master.write_all(b"w").unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || log_contains(
            &log,
            "jog +x: pause first (space)"
        ) && screen
            .lock()
            .unwrap()
            .contains("| jog +x: pause first (space)")),
        "no word on the ignored key; terminal:\n{}",
        screen.lock().unwrap()
    );
    master.write_all(b" ").unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || log_contains(
            &log,
            "mode running -> paused (operator: pause/resume)"
        )),
        "space did not pause; terminal:\n{}",
        screen.lock().unwrap()
    );
    master.write_all(b"q").unwrap();
    let exited = wait_for(Duration::from_secs(30), || {
        child.try_wait().unwrap().is_some()
    });
    assert!(
        exited,
        "q did not quit; terminal:\n{}",
        screen.lock().unwrap()
    );
    let status = child.wait().unwrap();
    drop(master);
    let _ = reader_thread.join();
    let screen = screen.lock().unwrap().clone();
    // q during an episode ends the run early: exit code 5 (operator abort).
    assert_eq!(
        status.code(),
        Some(5),
        "exit {status:?}; terminal:\n{screen}"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("mode paused -> parking (operator: park and quit)"),
        "{log}"
    );
    assert!(log.contains("mode parking -> done"), "{log}");
    assert!(screen.contains("keys: space pause/resume"), "{screen}");
    assert!(screen.contains("episode 1/1"), "{screen}");
    assert!(screen.contains("parked, torque off"), "{screen}");
}
