//! `bridge-sim collect` as a process: the episodes it writes load through the raw reader, with
//! 640x480 JPEG frames, Bridge actions within the clipping limits, and states that follow the
//! commanded deltas.

use std::process::Command;

use bridge_data::StoredFrame;
use bridge_data::raw::{RawOptions, find_trajectories, read_trajectory};

const STEPS: usize = 12;

#[test]
fn collected_episodes_load_through_the_raw_reader() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_bridge-sim"))
        .args([
            "collect",
            "--episodes",
            "2",
            "--workers",
            "2",
            "--time-scale",
            "0.5",
        ])
        .args(["--steps", &STEPS.to_string(), "--seed", "5", "--jitter"])
        .arg("--out")
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    let dirs = find_trajectories(out.path()).unwrap();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    for dir in &dirs {
        let relative = dir
            .strip_prefix(out.path())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(relative.starts_with("sim_play/00/"), "{relative}");
        assert!(relative.contains("/raw/traj_group0/traj"), "{relative}");
        // The session says its recordings are a simulator's, so prepare counts them as such.
        assert_eq!(
            bridge_data::provenance::collector_of(dir).unwrap(),
            bridge_data::provenance::Collector::Simulator
        );
        let trajectory = read_trajectory(dir, &RawOptions::default()).unwrap();
        assert_eq!(trajectory.len(), STEPS + 1);
        assert_eq!(trajectory.actions.len(), STEPS);
        assert!(trajectory.language.is_some());
        let StoredFrame::Jpeg(jpeg) = &trajectory.frames[0] else {
            panic!("raw frames are JPEG");
        };
        let image = image::load_from_memory(jpeg).unwrap();
        assert_eq!((image.width(), image.height()), (640, 480));
        for action in &trajectory.actions {
            assert!(
                action[..3].iter().all(|d| d.abs() <= 0.05 + 1e-6),
                "{action:?}"
            );
            assert!(
                action[3..6].iter().all(|d| d.abs() <= 0.25 + 1e-6),
                "{action:?}"
            );
            assert!(action[6] == 0.0 || action[6] == 1.0, "{action:?}");
        }
        // The arm ends where the deltas, applied to where it started, say (it lags by at most
        // part of one step).
        let start = trajectory.states[0];
        let end = trajectory.states[STEPS];
        for axis in 0..3 {
            let commanded: f32 = trajectory.actions.iter().map(|a| a[axis]).sum();
            let off = (start[axis] + commanded - end[axis]).abs();
            assert!(
                off < 0.03,
                "axis {axis}: ends {off} m from the commanded pose in {relative}"
            );
        }
        assert!(
            trajectory
                .states
                .iter()
                .all(|s| (0.0..=1.0).contains(&s[6]))
        );
    }
}
