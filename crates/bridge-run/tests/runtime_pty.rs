//! Keys typed into a real pseudo-terminal running `bridge-run --sim`: space pauses, q parks and
//! quits; the exit status, the terminal output and the log show it.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

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
    let mut command = Command::new(env!("CARGO_BIN_EXE_bridge-run"));
    command
        .current_dir(dir.path())
        .args(["--sim", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--goal")
        .arg(&goal)
        .arg("--config")
        .arg(&config);
    let mut terminal = PtyChild::spawn(command);
    let log = dir.path().join("run.log");
    let running = wait_for(Duration::from_secs(40), || {
        log_contains(&log, "mode idle -> running")
    });
    assert!(running, "never ran; terminal:\n{}", terminal.screen());

    // A jog key while the policy drives does nothing, and says why.
    terminal.send(b"w");
    assert!(
        wait_for(Duration::from_secs(10), || log_contains(
            &log,
            "jog +x: pause first (space)"
        ) && terminal
            .screen()
            .contains("| jog +x: pause first (space)")),
        "no word on the ignored key; terminal:\n{}",
        terminal.screen()
    );
    terminal.send(b" ");
    assert!(
        wait_for(Duration::from_secs(10), || log_contains(
            &log,
            "mode running -> paused (operator: pause/resume)"
        )),
        "space did not pause; terminal:\n{}",
        terminal.screen()
    );
    terminal.send(b"q");
    let status = terminal.wait_exit(Duration::from_secs(30));
    let screen = terminal.screen();
    let status = status.unwrap_or_else(|| panic!("q did not quit; terminal:\n{screen}"));
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
