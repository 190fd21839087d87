//! `bridge-sim tasks` then `bridge-sim eval` through the binary: closed-loop episodes of a
//! random-weight pixel checkpoint on the virtual tabletop, via the bridge-run runtime.

use std::path::{Path, PathBuf};
use std::process::Command;

fn random_checkpoint(dir: &Path) -> PathBuf {
    test_support::checkpoint::tiny_pixel_checkpoint(dir, "random weights (bridge-sim eval test)")
}

fn bridge_sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bridge-sim"))
}

#[test]
fn tasks_then_eval_scores_every_episode_through_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks.toml");
    let images = dir.path().join("images");
    let status = bridge_sim()
        .args([
            "tasks", "--reach", "1", "--single", "1", "--double", "1", "--seed", "3",
        ])
        .arg("--out")
        .arg(&tasks)
        .arg("--images")
        .arg(&images)
        .status()
        .unwrap();
    assert!(status.success());
    let file = widowx_sim::tasks::TaskFile::load(&tasks).unwrap();
    assert_eq!(file.tasks.len(), 3);
    assert_eq!(file.tasks[0].moved_blocks().len(), 0);
    assert!(file.tasks[0].goal_ee_xyz_m.is_some());
    assert_eq!(file.tasks[1].moved_blocks().len(), 1);
    assert_eq!(file.tasks[2].moved_blocks().len(), 2);
    for task in &file.tasks {
        let goal = image::open(images.join(format!("{}-goal.png", task.name))).unwrap();
        assert_eq!((goal.width(), goal.height()), (640, 480));
    }

    let checkpoint = random_checkpoint(dir.path());
    let out = dir.path().join("eval");
    let output = bridge_sim()
        .args([
            "eval",
            "--episodes",
            "2",
            "--workers",
            "2",
            "--steps-per-block",
            "3",
            "--reach-steps",
            "3",
        ])
        .args(["--reports-per-task", "1"])
        .arg("--checkpoint")
        .arg(&checkpoint)
        .arg("--tasks")
        .arg(&tasks)
        .arg("--out")
        .arg(&out)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("episodes.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "3 tasks x 2 episodes");
    for line in &lines {
        let steps = line["steps"].as_u64().unwrap();
        let budget = 3 * line["blocks_to_move"].as_u64().unwrap().max(1);
        assert!(steps >= 1 && steps <= budget, "{line}");
        // A random policy barely moves: the moved blocks stay far from their goals.
        assert_eq!(line["success"], false, "{line}");
        assert_eq!(line["block_errors_m"].as_array().unwrap().len(), 3);
        // Three steps from the sleep pose cannot reach a block, let alone close on it.
        assert_eq!(line["grasped"], serde_json::json!([]), "{line}");
        assert!(line["fault"].is_null(), "{line}");
    }
    // The first episode of each task keeps its run report (animation and distance plot).
    let kept: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| !l["report_dir"].is_null())
        .collect();
    assert_eq!(kept.len(), 3, "{lines:?}");
    for line in kept {
        let report = PathBuf::from(line["report_dir"].as_str().unwrap());
        assert!(
            report.join("animation.gif").is_file(),
            "{}",
            report.display()
        );
        assert!(
            report.join("distance.png").is_file(),
            "{}",
            report.display()
        );
    }
    let table = std::fs::read_to_string(out.join("results.md")).unwrap();
    for tier in ["T1 reach", "T2 one block", "T3 two blocks"] {
        assert!(
            table.contains(&format!("| **all {tier}** | {tier} | 2 | 0% (0/2) | 0/2 |")),
            "{table}"
        );
    }
    // Only the reach task has a gripper error.
    let reach = lines.iter().find(|l| l["tier"] == "reach").unwrap();
    assert!(reach["arm_error_m"].as_f64().unwrap() > 0.03, "{reach}");
}

#[test]
fn a_missing_checkpoint_is_reported_once_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-checkpoint");
    let output = bridge_sim()
        .args(["eval", "--episodes", "1", "--checkpoint"])
        .arg(&missing)
        .arg("--tasks")
        .arg(dir.path().join("tasks.toml"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("bridge-sim: error: "), "{stderr}");
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "each cause once: {stderr}"
    );
    assert!(!stderr.contains("Caused by"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
}
