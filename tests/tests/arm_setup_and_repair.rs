//! A whole maintenance session across crates, as a technician would run it on a new arm: the
//! virtual arm (widowx-sim) fresh from assembly on a real pseudo-terminal, the driver (widowx) over
//! that port, the shipped firmware config, and the kinematics. Set up, move in the Bridge
//! workspace, survive an overload mid-move, repair, move again, park.

use std::time::{Duration, Instant};

use widowx::bridge::{bridge_target_pose, bridge_xyz_rpy};
use widowx::firmware::FirmwareConfig;
use widowx::joints::{ARM_JOINTS, BRIDGE_NEUTRAL_POSE_RAD, Joint, SLEEP_POSE_RAD};
use widowx::kinematics::{IkConfig, forward, inverse};
use widowx_driver::{Arm, DriverConfig, DriverError};
use widowx_sim::{InitialEeprom, SimConfig, VirtualArm};

fn arm_joints(arm: &mut Arm) -> Result<[f64; ARM_JOINTS], DriverError> {
    let state = arm.read_joint_state()?;
    let mut joints = [0.0; ARM_JOINTS];
    joints.copy_from_slice(&state.positions_rad[..ARM_JOINTS]);
    Ok(joints)
}

/// Sends the arm to a Bridge target (gripper down) and returns the reached position error, metres.
fn reach(arm: &mut Arm, xyz_m: [f64; 3]) -> Result<f64, DriverError> {
    let seed = arm_joints(arm)?;
    let goal = inverse(
        &bridge_target_pose(xyz_m, [0.0; 3]),
        &seed,
        &IkConfig::default(),
    )
    .expect("IK");
    arm.write_joint_goals(&goal, 0.4)?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(700) {
        arm.read_joint_state()?;
        std::thread::sleep(Duration::from_millis(10));
    }
    let reached = bridge_xyz_rpy(&forward(&arm_joints(arm)?)).0;
    Ok((0..3)
        .map(|i| (reached[i] - xyz_m[i]).powi(2))
        .sum::<f64>()
        .sqrt())
}

#[test]
fn set_up_move_fault_repair_and_park() {
    let firmware = FirmwareConfig::wx250s();
    let mut sim_config = SimConfig::new(firmware.clone());
    sim_config.initial_eeprom = InitialEeprom::Factory;
    let sim = VirtualArm::spawn(sim_config).expect("virtual arm");
    let driver =
        DriverConfig::default().with_reply_timeout_at_least(widowx_sim::DRIVER_REPLY_TIMEOUT_S);
    let mut arm = Arm::connect(sim.port_path(), firmware, driver).expect("connect");

    // A new arm differs from the configuration; apply fixes it, including shadow calibration.
    assert!(!arm.verify().expect("verify").diffs.is_empty());
    arm.apply().expect("apply");
    assert!(arm.verify().expect("verify").diffs.is_empty());

    arm.set_torque(true, None).expect("torque on");
    arm.write_joint_goals(&BRIDGE_NEUTRAL_POSE_RAD, 1.0)
        .expect("neutral");
    std::thread::sleep(Duration::from_millis(1200));
    for xyz_m in [[0.3, 0.0, 0.15], [0.4, 0.15, 0.05], [0.15, -0.1, 0.2]] {
        let error_m = reach(&mut arm, xyz_m).expect("move");
        assert!(error_m < 0.003, "{xyz_m:?}: {error_m} m off");
    }

    // The elbow overloads mid-move: the next control call names it, and the arm stops there.
    let elbow = firmware_id(Joint::Elbow);
    sim.inject_overload(elbow);
    let err = reach(&mut arm, [0.3, 0.0, 0.15]).expect_err("overload must surface");
    assert!(err.to_string().contains("servo 4 (elbow)"), "{err}");
    let faulted: Vec<u8> = arm
        .hardware_errors()
        .expect("faults")
        .into_iter()
        .filter(|(_, faults)| !faults.is_empty())
        .map(|(servo, _)| servo.id)
        .collect();
    assert_eq!(faulted, vec![elbow]);

    // Reboot restores the servo with torque on; the arm works again.
    arm.reboot(elbow).expect("reboot");
    assert!(
        arm.hardware_errors()
            .expect("faults")
            .iter()
            .all(|(_, f)| f.is_empty())
    );
    let error_m = reach(&mut arm, [0.3, 0.0, 0.15]).expect("move after repair");
    assert!(error_m < 0.003, "{error_m} m off after repair");

    // Park: a 1.8 rad shoulder move, slower than asked because the Velocity_Limit (pi rad/s) caps it.
    arm.write_joint_goals(&SLEEP_POSE_RAD, 1.0).expect("park");
    let started = Instant::now();
    let parked = |sim: &VirtualArm| {
        let joints = sim.joint_positions_rad();
        (0..ARM_JOINTS).all(|i| (joints[i] - SLEEP_POSE_RAD[i]).abs() < 0.01)
    };
    while !parked(&sim) && started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(parked(&sim), "not parked: {:?}", sim.joint_positions_rad());
    arm.set_torque(false, None).expect("torque off");
}

fn firmware_id(joint: Joint) -> u8 {
    FirmwareConfig::wx250s()
        .master(joint)
        .map(|s| s.id)
        .expect("master")
}
