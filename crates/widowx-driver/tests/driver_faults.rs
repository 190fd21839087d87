//! Faults against the virtual arm: a vanishing port, corrupt and lost replies, an overloaded
//! servo cleared by reboot.

use std::time::{Duration, Instant};

use widowx::control_table::reg;
use widowx::firmware::FirmwareConfig;
use widowx::joints::Joint;
use widowx_driver::{Arm, DriverConfig, DriverError, HardwareFault, ServoRef};
use widowx_sim::{SimConfig, VirtualArm};

fn sim() -> VirtualArm {
    VirtualArm::spawn(SimConfig::new(FirmwareConfig::wx250s())).unwrap()
}

fn connect(sim: &VirtualArm, config: DriverConfig) -> Arm {
    Arm::connect(sim.port_path(), FirmwareConfig::wx250s(), config).unwrap()
}

#[test]
fn vanishing_port_fails_within_the_configured_timeout() {
    let sim = sim();
    let config = DriverConfig {
        reply_timeout_s: 0.03,
        retries: 2,
        ..DriverConfig::default()
    };
    let bound_s = config.worst_case_silence_s();
    let mut arm = connect(&sim, config);
    arm.read_joint_state().unwrap();
    let (error, elapsed) = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            sim.vanish();
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let started = Instant::now();
            match arm.read_joint_state() {
                Ok(_) => assert!(
                    Instant::now() < deadline,
                    "reads still succeed 5 s after the port vanished"
                ),
                Err(error) => return (error, started.elapsed()),
            }
        }
    });
    eprintln!("port vanished: error after {elapsed:?}: {error}");
    // Slack: wire times (< 1 ms) and scheduling on a loaded machine.
    assert!(
        elapsed.as_secs_f64() <= bound_s + 0.1,
        "failed after {elapsed:?}, bound {bound_s} s: {error}"
    );
    assert!(
        matches!(error, DriverError::Io { .. } | DriverError::Timeout { .. }),
        "expected an I/O error or timeout, got {error}"
    );
    // Every later call fails fast too.
    let started = Instant::now();
    assert!(arm.read_joint_state().is_err());
    assert!(started.elapsed().as_secs_f64() <= bound_s + 0.1);
}

#[test]
fn corrupt_replies_are_detected_and_retried() {
    let sim = sim();
    // At 30 % corruption a servo's reply fails three times in a row 2.7 % of the time; 12
    // retries make a failure in this test about 1e-4 likely.
    let config = DriverConfig {
        reply_timeout_s: 0.02,
        retries: 12,
        ..DriverConfig::default()
    };
    let mut arm = connect(&sim, config);
    sim.set_reply_corruption_rate(0.3);
    let before = sim.packets_received();
    let reads = 40;
    for _ in 0..reads {
        let state = *arm.read_joint_state().unwrap();
        let truth = sim.joint_positions_rad();
        for (i, true_rad) in truth.iter().enumerate() {
            assert!(
                (state.positions_rad[i] - true_rad).abs() < 0.003,
                "joint {i}: {} vs {true_rad}",
                state.positions_rad[i],
            );
        }
    }
    let sent = sim.packets_received() - before;
    assert!(
        sent > reads + 5,
        "only {sent} sync reads for {reads} calls: corruption was not retried"
    );
}

#[test]
fn a_corrupt_reply_is_retried_without_waiting_out_the_reply_timeout() {
    let sim = sim();
    // A long timeout: a read that waited for a servo whose reply was already lost to corruption
    // would take half a second.
    let config = DriverConfig {
        reply_timeout_s: 0.5,
        retries: 12,
        ..DriverConfig::default()
    };
    let mut arm = connect(&sim, config);
    sim.set_reply_corruption_rate(0.3);
    let (reads, before) = (20, sim.packets_received());
    let started = Instant::now();
    for _ in 0..reads {
        arm.read_joint_state().unwrap();
    }
    let elapsed = started.elapsed();
    let sent = sim.packets_received() - before;
    // 92 % of the reads see a corrupt reply: waiting for it would take over 9 s in all.
    assert!(
        sent > reads + 5,
        "only {sent} sync reads: nothing was retried"
    );
    assert!(
        elapsed < Duration::from_secs(3),
        "{reads} reads with {} retries took {elapsed:?}",
        sent - reads
    );
}

#[test]
fn corruption_without_retries_is_a_typed_error_naming_the_servo() {
    let sim = sim();
    let config = DriverConfig {
        reply_timeout_s: 0.02,
        retries: 0,
        ..DriverConfig::default()
    };
    let mut arm = connect(&sim, config);
    sim.set_reply_corruption_rate(1.0);
    let err = arm.read_joint_state().unwrap_err();
    assert!(
        matches!(
            err,
            DriverError::Corrupt { .. } | DriverError::Timeout { .. }
        ),
        "{err}"
    );
    let servo = err.servo().unwrap();
    assert_eq!(
        servo.joint,
        FirmwareConfig::wx250s().servo(servo.id).map(|s| s.joint)
    );
}

#[test]
fn lost_replies_time_out_within_the_configured_time() {
    let sim = sim();
    let config = DriverConfig {
        reply_timeout_s: 0.02,
        retries: 1,
        ..DriverConfig::default()
    };
    let bound_s = config.worst_case_silence_s();
    let mut arm = connect(&sim, config);
    sim.set_reply_drop_rate(1.0);
    let started = Instant::now();
    let err = arm.read_register(4, "Present_Position").unwrap_err();
    let elapsed = started.elapsed().as_secs_f64();
    match &err {
        DriverError::Timeout {
            servo, attempts, ..
        } => {
            assert_eq!(
                *servo,
                ServoRef {
                    id: 4,
                    joint: Some(Joint::Elbow)
                }
            );
            assert_eq!(*attempts, 2);
        }
        other => panic!("expected a timeout, got {other}"),
    }
    assert!(
        elapsed >= 0.04 && elapsed <= bound_s + 0.1,
        "took {elapsed} s, bound {bound_s} s"
    );
    assert!(
        err.to_string()
            .starts_with("servo 4 (elbow): no reply to READ within 0.02 s (2 attempts)"),
        "{err}"
    );
}

#[test]
fn overload_is_reported_by_servo_and_cleared_by_reboot() {
    let sim = sim();
    let mut arm = connect(
        &sim,
        DriverConfig {
            reply_timeout_s: 0.05,
            ..DriverConfig::default()
        },
    );
    arm.set_torque(true, None).unwrap();
    arm.read_joint_state().unwrap();
    sim.inject_overload(4);

    let err = arm.read_joint_state().unwrap_err();
    let elbow = ServoRef {
        id: 4,
        joint: Some(Joint::Elbow),
    };
    match &err {
        DriverError::Alert { servo, faults } => {
            assert_eq!(*servo, elbow);
            assert!(
                faults.is_some_and(|f| f.contains(HardwareFault::Overload)),
                "{err}"
            );
        }
        other => panic!("expected an alert, got {other}"),
    }
    assert!(
        err.to_string()
            .starts_with("servo 4 (elbow): hardware alert"),
        "{err}"
    );
    let faults = arm.hardware_errors().unwrap();
    for (servo, errors) in &faults {
        assert_eq!(
            errors.contains(HardwareFault::Overload),
            servo.id == 4,
            "{servo}: {errors}"
        );
    }
    assert_eq!(
        sim.register(4, &reg::TORQUE_ENABLE),
        Some(0),
        "overload cuts torque"
    );

    arm.reboot(4).unwrap();
    assert_eq!(sim.register(4, &reg::HARDWARE_ERROR_STATUS), Some(0));
    assert_eq!(
        sim.register(4, &reg::TORQUE_ENABLE),
        Some(1),
        "torque restored"
    );
    assert_eq!(
        sim.register(4, &reg::OPERATING_MODE),
        Some(3),
        "position mode kept"
    );
    assert_eq!(sim.register(4, &reg::STATUS_RETURN_LEVEL), Some(2));
    arm.read_joint_state().unwrap();
    assert!(
        arm.hardware_errors()
            .unwrap()
            .iter()
            .all(|(_, e)| e.is_empty())
    );
}

#[test]
fn torque_off_with_one_silent_servo_names_it_and_leaves_no_other_servo_on() {
    let sim = sim();
    let mut arm = connect(&sim, DriverConfig::default());
    arm.set_torque(true, None).unwrap();
    let ids: Vec<u8> = FirmwareConfig::wx250s()
        .servos
        .iter()
        .map(|s| s.id)
        .collect();
    assert!(
        ids.iter()
            .all(|&id| sim.register(id, &reg::TORQUE_ENABLE) == Some(1))
    );
    // Servo 5 falls off the bus (a loose cable). The servos after it in ID order must still
    // get the torque-off.
    sim.set_disconnected(5, true);
    let err = arm.set_torque(false, None).unwrap_err();
    match &err {
        DriverError::TorqueOffUnconfirmed { servos } => {
            assert_eq!(servos.iter().map(|s| s.id).collect::<Vec<_>>(), vec![5]);
        }
        other => panic!("expected TorqueOffUnconfirmed, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("servo 5") && text.contains("every other servo is off"),
        "{text}"
    );
    for &id in &ids {
        let expected = if id == 5 { Some(1) } else { Some(0) };
        assert_eq!(
            sim.register(id, &reg::TORQUE_ENABLE),
            expected,
            "servo {id}"
        );
    }
    // Back on the bus: the next torque-off reaches it too.
    sim.set_disconnected(5, false);
    arm.set_torque(false, None).unwrap();
    assert!(
        ids.iter()
            .all(|&id| sim.register(id, &reg::TORQUE_ENABLE) == Some(0))
    );
}
