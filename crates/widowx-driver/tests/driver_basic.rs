//! The driver against the virtual arm over a real pseudo-terminal: connect, joint state, goals,
//! gripper, torque, registers, verify and apply.

use std::time::Duration;

use widowx::control_table::{Model, reg};
use widowx::firmware::{FirmwareConfig, WX250S_TOML};
use widowx::joints::{Joint, SLEEP_POSE_RAD};
use widowx_driver::{Arm, DriverConfig, DriverError, Effort, ServoProblem, ServoRef, StatusError};
use widowx_sim::{InitialEeprom, SimConfig, VirtualArm};

fn config() -> DriverConfig {
    // Generous: the test machine is shared and the sim's threads may be descheduled.
    DriverConfig {
        reply_timeout_s: 0.05,
        ..DriverConfig::default()
    }
}

fn sim(initial_eeprom: InitialEeprom) -> VirtualArm {
    let mut sim_config = SimConfig::new(FirmwareConfig::wx250s());
    sim_config.initial_eeprom = initial_eeprom;
    VirtualArm::spawn(sim_config).unwrap()
}

fn connect(sim: &VirtualArm) -> Arm {
    Arm::connect(sim.port_path(), FirmwareConfig::wx250s(), config()).unwrap()
}

/// Waits until `condition` holds (up to 1 s): a SYNC_WRITE has no reply, so the driver returns
/// before the virtual arm has processed it.
fn eventually(condition: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    condition()
}

fn elbow() -> ServoRef {
    ServoRef {
        id: 4,
        joint: Some(Joint::Elbow),
    }
}

#[test]
fn connect_pings_every_servo() {
    let sim = sim(InitialEeprom::Configured);
    let mut arm = connect(&sim);
    let report = arm.ping_all();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.found.len(), 9);
    let wrist_rotate = report.found.iter().find(|f| f.servo.id == 8).unwrap();
    assert_eq!(wrist_rotate.model_number, 1060);
    assert_eq!(wrist_rotate.servo.joint, Some(Joint::WristRotate));
}

#[test]
fn missing_servo_is_named_by_id_and_joint() {
    let sim = sim(InitialEeprom::Configured);
    let extra = "\n[[servo]]\nid = 10\njoint = \"shoulder\"\nmodel = \"XM430-W350\"\nshadow_of = 2\nreverse = true\n\
                 operating_mode = \"position\"\nmin_position_ticks = 819\nmax_position_ticks = 3345\n";
    let firmware =
        FirmwareConfig::from_toml_str(&format!("{WX250S_TOML}{extra}"), "extra.toml").unwrap();
    let fast = DriverConfig {
        reply_timeout_s: 0.02,
        ping_retries: 1,
        ..DriverConfig::default()
    };
    let err = Arm::connect(sim.port_path(), firmware, fast).unwrap_err();
    match &err {
        DriverError::Servos { problems } => {
            assert_eq!(problems.len(), 1, "{err}");
            let servo = ServoRef {
                id: 10,
                joint: Some(Joint::Shoulder),
            };
            assert_eq!(problems[0], ServoProblem::Missing { servo, attempts: 2 });
        }
        other => panic!("expected a servo report, got {other}"),
    }
    assert!(
        err.to_string().contains("servo 10 (shoulder): missing"),
        "{err}"
    );
}

#[test]
fn wrong_model_is_reported() {
    let sim = sim(InitialEeprom::Configured);
    // Claim the waist is an XL430: the sim's XM430 answers with model number 1020.
    let text = WX250S_TOML.replacen(
        "id = 1\njoint = \"waist\"\nmodel = \"XM430-W350\"",
        "id = 1\njoint = \"waist\"\nmodel = \"XL430-W250\"",
        1,
    );
    let firmware = FirmwareConfig::from_toml_str(&text, "wrong.toml").unwrap();
    let err = Arm::connect(sim.port_path(), firmware, config())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("servo 1 (waist): wrong model: expected XL430-W250") && err.contains("1020"),
        "{err}"
    );
}

#[test]
fn joint_state_matches_the_arm() {
    let sim = sim(InitialEeprom::Configured);
    let mut arm = connect(&sim);
    let state = *arm.read_joint_state().unwrap();
    let truth = sim.joint_positions_rad();
    for (i, joint) in Joint::ALL.iter().enumerate() {
        assert!(
            (state.positions_rad[i] - truth[i]).abs() < 0.003,
            "{joint}: read {} true {}",
            state.positions_rad[i],
            truth[i]
        );
    }
    for (read, sleep) in state.positions_rad.iter().zip(SLEEP_POSE_RAD) {
        assert!((read - sleep).abs() < 0.003, "{read} vs sleep pose {sleep}");
    }
    // XM430s report current, XL430s (wrist_rotate, gripper) load.
    assert!(matches!(state.effort[0], Effort::CurrentMa(_)));
    assert!(matches!(state.effort[5], Effort::LoadPercent(_)));
    assert!(matches!(state.effort[6], Effort::LoadPercent(_)));
}

#[test]
fn one_sync_read_and_one_sync_write_per_cycle() {
    let sim = sim(InitialEeprom::Configured);
    let mut arm = connect(&sim);
    arm.set_torque(true, None).unwrap();
    let hold = arm.read_joint_state().unwrap().arm_positions_rad();
    let before = sim.packets_received();
    for _ in 0..10 {
        arm.read_joint_state().unwrap();
        arm.write_joint_goals(&hold, 0.25).unwrap();
    }
    assert!(eventually(|| sim.packets_received() - before >= 20));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(sim.packets_received() - before, 20);
}

#[test]
fn goals_move_the_arm_with_the_time_based_profile() {
    let sim = sim(InitialEeprom::Configured);
    let mut arm = connect(&sim);
    arm.set_torque(true, None).unwrap();
    let goal = [0.2, -1.2, 1.0, 0.1, 0.6, -0.3];
    arm.write_joint_goals(&goal, 0.3).unwrap();
    assert!(eventually(
        || sim.register(2, &reg::PROFILE_VELOCITY) == Some(300)
    ));
    assert_eq!(sim.register(2, &reg::PROFILE_VELOCITY), Some(300));
    assert_eq!(sim.register(2, &reg::PROFILE_ACCELERATION), Some(150));
    assert_eq!(
        sim.register(1, &reg::GOAL_POSITION),
        Some(i64::from(widowx::units::rad_to_ticks(0.2)))
    );
    std::thread::sleep(Duration::from_millis(600));
    let state = *arm.read_joint_state().unwrap();
    for (i, goal_rad) in goal.iter().enumerate() {
        assert!(
            (state.positions_rad[i] - goal_rad).abs() < 0.01,
            "joint {i}: {} vs {goal_rad}",
            state.positions_rad[i],
        );
    }
    // The shadows follow their masters (secondary ID) and read the same angle.
    let shoulder = sim.register(2, &reg::PRESENT_POSITION).unwrap();
    let shadow = sim.register(3, &reg::PRESENT_POSITION).unwrap();
    assert!(
        (shoulder - shadow).abs() <= 30,
        "shoulder {shoulder} shadow {shadow}"
    );
}

#[test]
fn goal_outside_limits_is_refused_and_nothing_sent() {
    let sim = sim(InitialEeprom::Configured);
    let mut arm = connect(&sim);
    let before = sim.packets_received();
    let err = arm
        .write_joint_goals(&[0.0, 0.0, 1.7, 0.0, 0.0, 0.0], 0.25)
        .unwrap_err();
    assert_eq!(err.servo(), Some(elbow()));
    assert!(
        err.to_string()
            .contains("servo 4 (elbow): goal 1.7 rad is outside"),
        "{err}"
    );
    let err = arm
        .write_joint_goals(&[0.0, 0.0, 0.0, 0.0, 0.0, f64::NAN], 0.25)
        .unwrap_err();
    assert_eq!(err.servo().and_then(|s| s.joint), Some(Joint::WristRotate));
    assert!(matches!(
        arm.write_joint_goals(&[0.0; 6], 0.0),
        Err(DriverError::InvalidMoveTime { .. })
    ));
    assert_eq!(sim.packets_received(), before);
}

#[test]
fn goals_at_the_reconciled_limits_are_accepted_and_just_past_them_refused() {
    let sim = sim(InitialEeprom::Configured);
    let mut arm = connect(&sim);
    let limits = arm.joint_limits();
    // The elbow's servo limit (tick 3094) binds before its URDF limit (1.6057 rad): a goal at
    // the URDF limit is refused, one at the reconciled limit is not.
    assert!(limits[2].max_rad < widowx::joints::ARM_JOINT_LIMITS[2].max_rad);
    let mut goal = [0.0; 6];
    goal[2] = widowx::joints::ARM_JOINT_LIMITS[2].max_rad;
    assert!(arm.write_joint_goals(&goal, 0.25).is_err());
    for edge in [limits.map(|l| l.min_rad), limits.map(|l| l.max_rad)] {
        for (i, &angle_rad) in edge.iter().enumerate() {
            let mut goal = [0.0; 6];
            goal[i] = angle_rad;
            arm.write_joint_goals(&goal, 0.25)
                .unwrap_or_else(|e| panic!("joint {i} at its limit {angle_rad}: {e}"));
            goal[i] = angle_rad + if angle_rad > 0.0 { 1e-3 } else { -1e-3 };
            if goal[i].abs() < std::f64::consts::PI - 1e-5 {
                assert!(
                    arm.write_joint_goals(&goal, 0.25).is_err(),
                    "joint {i} past {angle_rad}"
                );
            }
        }
    }
}

#[test]
fn gripper_commands_set_goal_pwm() {
    let sim = sim(InitialEeprom::Configured);
    let mut arm = connect(&sim);
    arm.set_torque(true, Some(9)).unwrap();
    arm.gripper_open().unwrap();
    assert_eq!(sim.register(9, &reg::GOAL_PWM), Some(250));
    arm.set_gripper_pressure(1.0).unwrap();
    arm.gripper_close().unwrap();
    assert_eq!(sim.register(9, &reg::GOAL_PWM), Some(-350));
    arm.gripper_stop().unwrap();
    assert_eq!(sim.register(9, &reg::GOAL_PWM), Some(0));
    assert!(arm.set_gripper_pressure(1.5).is_err());
}

#[test]
fn gripper_position_is_in_the_joint_state() {
    let sim = sim(InitialEeprom::Configured);
    let mut arm = connect(&sim);
    arm.set_torque(true, Some(9)).unwrap();
    let start = arm.read_joint_state().unwrap().positions_rad[6];
    arm.gripper_open().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let opened = arm.read_joint_state().unwrap().positions_rad[6];
    assert!(
        opened > start + 0.05,
        "gripper did not open: {start} -> {opened}"
    );
    assert!((opened - sim.joint_positions_rad()[6]).abs() < 0.01);
}

#[test]
fn torque_on_and_off_for_all_or_one() {
    let sim = sim(InitialEeprom::Configured);
    let mut arm = connect(&sim);
    arm.set_torque(true, Some(4)).unwrap();
    assert_eq!(sim.register(4, &reg::TORQUE_ENABLE), Some(1));
    assert_eq!(sim.register(1, &reg::TORQUE_ENABLE), Some(0));
    arm.set_torque(true, None).unwrap();
    for id in 1..=9 {
        assert_eq!(sim.register(id, &reg::TORQUE_ENABLE), Some(1), "servo {id}");
    }
    arm.set_torque(false, None).unwrap();
    for id in 1..=9 {
        assert_eq!(sim.register(id, &reg::TORQUE_ENABLE), Some(0), "servo {id}");
    }
    assert!(matches!(
        arm.set_torque(true, Some(42)),
        Err(DriverError::UnknownServo { id: 42 })
    ));
}

#[test]
fn registers_by_name_with_range_checks() {
    let sim = sim(InitialEeprom::Configured);
    let mut arm = connect(&sim);
    assert_eq!(arm.read_register(4, "Min_Position_Limit").unwrap(), 648);
    assert_eq!(arm.read_register(8, "model_number").unwrap(), 1060);
    arm.write_register(4, "Position_P_Gain", 900).unwrap();
    assert_eq!(
        sim.register(4, Model::Xm430W350.register("Position_P_Gain").unwrap()),
        Some(900)
    );
    arm.write_register(4, "Min_Position_Limit", 700).unwrap();
    assert_eq!(arm.read_register(4, "Min_Position_Limit").unwrap(), 700);
    let err = arm
        .write_register(4, "Position_P_Gain", 20_000)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("servo 4 (elbow)") && err.contains("0..=16383"),
        "{err}"
    );
    let err = arm
        .write_register(8, "Goal_Current", 10)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("servo 8 (wrist_rotate): the XL430-W250 has no register named `Goal_Current`"),
        "{err}"
    );
    let err = arm
        .write_register(4, "Present_Position", 10)
        .unwrap_err()
        .to_string();
    assert_eq!(err, "servo 4 (elbow): Present_Position is read-only");
}

#[test]
fn eeprom_write_with_torque_on_is_refused_before_sending() {
    let sim = sim(InitialEeprom::Configured);
    let mut arm = connect(&sim);
    arm.set_torque(true, Some(4)).unwrap();
    let err = arm
        .write_register(4, "Min_Position_Limit", 600)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "servo 4 (elbow): Min_Position_Limit is an EEPROM register; torque must be off"
    );
    assert_eq!(sim.register(4, &reg::MIN_POSITION_LIMIT), Some(648));
    // Sent anyway, the servo itself refuses: reported as its access error.
    let err = arm
        .write_register_unchecked(4, &reg::MIN_POSITION_LIMIT, 600)
        .unwrap_err();
    match &err {
        DriverError::Motor { servo, error, .. } => {
            assert_eq!(*servo, elbow());
            assert_eq!(*error, StatusError::AccessError);
        }
        other => panic!("expected the servo's refusal, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.starts_with(
            "servo 4 (elbow) refused the write of Min_Position_Limit = 600: access error"
        ),
        "{text}"
    );
    assert_eq!(sim.register(4, &reg::MIN_POSITION_LIMIT), Some(648));
}

#[test]
fn configured_arm_verifies_clean() {
    let sim = sim(InitialEeprom::Configured);
    let mut arm = connect(&sim);
    let report = arm.verify().unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(report.servos_checked, 9);
    assert!(report.registers_checked >= 9 * 9, "{report}");
}

#[test]
fn factory_arm_shows_diffs_and_apply_fixes_them() {
    let sim = sim(InitialEeprom::Factory);
    let mut arm = connect(&sim);
    let before = arm.verify().unwrap();
    assert!(!before.is_clean());
    let shadow = ServoRef {
        id: 3,
        joint: Some(Joint::Shoulder),
    };
    let drive_mode = before
        .diffs
        .iter()
        .find(|d| d.servo == shadow && d.register == "Drive_Mode")
        .unwrap();
    assert_eq!(drive_mode.expected, 5);
    assert!(
        before
            .diffs
            .iter()
            .any(|d| d.servo.id == 3 && d.register == "Secondary_ID" && d.expected == 2)
    );

    arm.set_torque(true, None).unwrap();
    let applied = arm.apply().unwrap();
    assert!(applied.changes.len() >= before.diffs.len(), "{applied}");
    assert!(
        applied
            .changes
            .iter()
            .any(|c| c.servo.id == 3 && c.register == "Homing_Offset"),
        "{applied}"
    );
    assert!(arm.verify().unwrap().is_clean());
    for id in 1..=9 {
        assert_eq!(
            sim.register(id, &reg::TORQUE_ENABLE),
            Some(0),
            "apply leaves torque off"
        );
    }
    // Calibrated shadows read what their masters read.
    for (master, shadow) in [(2, 3), (4, 5)] {
        let m = sim.register(master, &reg::PRESENT_POSITION).unwrap();
        let s = sim.register(shadow, &reg::PRESENT_POSITION).unwrap();
        assert!(
            (m - s).abs() <= 2,
            "master {master} at {m}, shadow {shadow} at {s}"
        );
    }
    // Applying again changes nothing.
    assert!(arm.apply().unwrap().changes.is_empty());
}
