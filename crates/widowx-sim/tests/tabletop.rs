//! The tabletop through the real driver over the virtual bus: close on a block, lift, carry,
//! open, and the block lies on the table at the new spot. Also: start scenes from a seed, reset
//! between episodes, and identical frames for identical seeds.

use std::time::{Duration, Instant};

use widowx::bridge::bridge_target_pose;
use widowx::firmware::FirmwareConfig;
use widowx::joints::ARM_JOINTS;
use widowx::kinematics::{IkConfig, inverse};
use widowx_driver::{Arm, DriverConfig};
use widowx_sim::render::CameraModel;
use widowx_sim::render::Renderer;
use widowx_sim::tabletop::DEFAULT_BLOCK_SIZE_M;
use widowx_sim::{SceneHandle, SimConfig, TabletopConfig, VirtualArm};

const START_XY: [[f64; 2]; 3] = [[0.30, -0.05], [0.22, 0.16], [0.40, 0.15]];

fn spawn(positions: &[[f64; 2]], seed: u64) -> (VirtualArm, SceneHandle) {
    let mut tabletop = TabletopConfig::new(seed);
    tabletop.block_positions_m = positions.to_vec();
    let sim = VirtualArm::spawn_tabletop(SimConfig::new(FirmwareConfig::wx250s()), tabletop)
        .expect("virtual tabletop");
    let handle = sim.scene_handle().expect("a tabletop arm has a scene");
    (sim, handle)
}

fn connect(sim: &VirtualArm) -> Arm {
    let driver =
        DriverConfig::default().with_reply_timeout_at_least(widowx_sim::DRIVER_REPLY_TIMEOUT_S);
    let mut arm = Arm::connect(sim.port_path(), FirmwareConfig::wx250s(), driver).expect("connect");
    arm.set_torque(true, None).expect("torque on");
    arm.set_gripper_pressure(1.0).expect("pressure");
    arm
}

/// Moves the gripper (pointing down) to `xyz_m` and waits for the move to end.
fn move_to(arm: &mut Arm, xyz_m: [f64; 3]) {
    let state = arm.read_joint_state().expect("joint state");
    let seed: [f64; ARM_JOINTS] = std::array::from_fn(|i| state.positions_rad[i]);
    let goal = inverse(
        &bridge_target_pose(xyz_m, [0.0; 3]),
        &seed,
        &IkConfig::default(),
    )
    .expect("reachable");
    arm.write_joint_goals(&goal, 0.5).expect("goal");
    std::thread::sleep(Duration::from_millis(650));
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn grasp_carry_and_release_through_the_driver() {
    let (sim, scene) = spawn(&START_XY, 1);
    let mut arm = connect(&sim);
    let half = DEFAULT_BLOCK_SIZE_M / 2.0;
    let [x, y] = START_XY[0];

    arm.gripper_open().expect("open");
    move_to(&mut arm, [x, y, 0.10]);
    wait_until("the gripper to open", Duration::from_secs(3), || {
        scene.scene().finger_position_m() > 0.032
    });
    move_to(&mut arm, [x + 0.005, y - 0.008, half + 0.002]);
    assert!(!scene.scene().blocks[0].held, "not held before closing");
    assert_eq!(scene.grasp_counts(), [0, 0, 0]);

    arm.gripper_close().expect("close");
    wait_until("the grasp", Duration::from_secs(3), || {
        scene.scene().blocks[0].held
    });
    std::thread::sleep(Duration::from_millis(800)); // the fingers keep pushing
    assert_eq!(
        scene.grasp_counts(),
        [1, 0, 0],
        "one grasp, of the red block"
    );
    let held = scene.scene();
    assert!(
        (held.finger_position_m() - half).abs() < 0.001,
        "the block stops the fingers at its width: {} m",
        held.finger_position_m()
    );

    move_to(&mut arm, [x, y, 0.12]);
    let lifted = scene.scene();
    assert!(lifted.blocks[0].held);
    assert!(
        lifted.blocks[0].position_m[2] > 0.10,
        "lifted: {:?}",
        lifted.blocks[0]
    );

    let place = [0.20, -0.10];
    move_to(&mut arm, [place[0], place[1], 0.12]);
    let carried = scene.scene().blocks[0].clone();
    assert!(
        (carried.position_m[0] - place[0]).abs() < 0.01,
        "{carried:?}"
    );
    assert!(
        (carried.position_m[1] - place[1]).abs() < 0.01,
        "{carried:?}"
    );
    move_to(&mut arm, [place[0], place[1], 0.06]);

    arm.gripper_open().expect("open");
    wait_until("the release", Duration::from_secs(3), || {
        !scene.scene().blocks[0].held
    });
    move_to(&mut arm, [place[0], place[1], 0.15]);
    let after = scene.scene();
    assert_eq!(scene.grasp_counts(), [1, 0, 0], "a release is not a grasp");
    let block = &after.blocks[0];
    assert!(!block.held);
    assert!((block.position_m[0] - place[0]).abs() < 0.01, "{block:?}");
    assert!((block.position_m[1] - place[1]).abs() < 0.01, "{block:?}");
    assert!(
        (block.position_m[2] - half).abs() < 1e-9,
        "on the table: {block:?}"
    );
    for (other, start) in after.blocks[1..].iter().zip(&START_XY[1..]) {
        assert_eq!(
            [other.position_m[0], other.position_m[1]],
            *start,
            "{} untouched",
            other.name
        );
    }
}

#[test]
fn reset_puts_blocks_back_and_lets_go() {
    let (sim, scene) = spawn(&START_XY, 2);
    let moved = [[0.2, 0.0], [0.3, 0.1], [0.35, -0.1]];
    scene.set_block_positions(&moved).expect("reset");
    let now = scene.scene();
    for (block, xy) in now.blocks.iter().zip(moved) {
        assert_eq!(block.position_m, [xy[0], xy[1], block.size_m / 2.0]);
        assert!(!block.held);
    }
    let error = scene
        .set_block_positions(&moved[..2])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("2 block positions") && error.contains("3 blocks"),
        "{error}"
    );
    assert!(scene.steps() > 0, "the world thread steps");
    drop(sim);
}

#[test]
fn the_same_seed_gives_the_same_start_scene_and_frame() {
    let frame = |seed: u64| {
        let (_sim, scene) = spawn(&[], seed);
        let style = scene.render_style().clone();
        let mut renderer = Renderer::new(CameraModel::c920_over_shoulder(), style);
        let now = scene.scene();
        (now.blocks.clone(), renderer.render_to_vec(&now))
    };
    let (blocks_a, frame_a) = frame(11);
    let (blocks_b, frame_b) = frame(11);
    let (blocks_c, _) = frame(12);
    assert_eq!(blocks_a, blocks_b);
    assert_eq!(frame_a, frame_b);
    assert_ne!(blocks_a, blocks_c);
    assert!(
        VirtualArm::spawn(SimConfig::new(FirmwareConfig::wx250s()))
            .unwrap()
            .scene_handle()
            .is_none()
    );
}
