//! Injected faults over a real pty: overload, lost and corrupted replies, the port vanishing.

mod common;

use std::time::Duration;

use common::*;
use widowx::control_table::reg;
use widowx_sim::OVERLOAD_BIT;
use widowx_sim::protocol::instruction;

#[test]
fn overload_cuts_torque_and_raises_the_alert_until_reboot() {
    let arm = spawn();
    let mut bus = bus(&arm);
    bus.write_u8(4, reg::TORQUE_ENABLE.address, 1).unwrap();
    arm.inject_overload(4);
    let status = bus.read_u8(4, reg::HARDWARE_ERROR_STATUS.address).unwrap();
    assert!(status.alert);
    assert_eq!(status.data, OVERLOAD_BIT);
    assert_eq!(bus.read_u8(4, reg::TORQUE_ENABLE.address).unwrap().data, 0);
    assert!(bus.ping(4).unwrap().alert, "alert in every reply");
    assert!(!bus.ping(2).unwrap().alert, "only the overloaded servo");
    // Torque cannot come back while the fault stands.
    let reply = bus.write_u8(4, reg::TORQUE_ENABLE.address, 1).unwrap();
    assert!(reply.alert);
    assert_eq!(arm.register(4, &reg::TORQUE_ENABLE), Some(0));
    let before = arm.joint_positions_rad();
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(
        arm.joint_positions_rad(),
        before,
        "a torque-less joint holds still"
    );
    bus.reboot(4).unwrap();
    let after = bus.ping(4).unwrap();
    assert!(!after.alert);
    assert_eq!(arm.register(4, &reg::HARDWARE_ERROR_STATUS), Some(0));
    bus.write_u8(4, reg::TORQUE_ENABLE.address, 1).unwrap();
    assert_eq!(arm.register(4, &reg::TORQUE_ENABLE), Some(1));
}

/// Broadcast PINGs in rounds; returns (packets framed, packets with a valid CRC). A round ends
/// when all nine replies are in or the line has been quiet for a while (some were dropped).
fn broadcast_ping_rounds(arm: &widowx_sim::VirtualArm, rounds: usize) -> (usize, usize) {
    let mut raw = RawClient::open(arm);
    let (mut framed, mut valid) = (0, 0);
    for _ in 0..rounds {
        raw.send(0xFE, instruction::PING, &[]);
        let bytes = raw.collect_packets(9, Duration::from_millis(500), Duration::from_millis(60));
        framed += split_packets(&bytes).len();
        valid += count_valid_packets(&bytes);
    }
    (framed, valid)
}

#[test]
fn reply_drop_rate_is_roughly_as_set() {
    let arm = spawn_with(|c| c.seed = 7);
    arm.set_reply_drop_rate(0.3);
    let (framed, valid) = broadcast_ping_rounds(&arm, 30);
    // 270 replies, 30 % dropped: expect ~189 (sd ~7.5).
    assert_eq!(framed, valid);
    assert!((160..=218).contains(&valid), "{valid} of 270 arrived");
    arm.set_reply_drop_rate(0.0);
    assert_eq!(broadcast_ping_rounds(&arm, 2), (18, 18));
}

#[test]
fn reply_corruption_rate_is_roughly_as_set() {
    let arm = spawn_with(|c| c.seed = 11);
    arm.set_reply_corruption_rate(0.5);
    let (framed, valid) = broadcast_ping_rounds(&arm, 40);
    assert_eq!(framed, 360, "corruption keeps the framing");
    assert!((140..=220).contains(&valid), "{valid} of 360 intact");
    // A client sees CRC errors, not silence.
    arm.set_reply_corruption_rate(1.0);
    let mut bus = bus(&arm);
    let error = bus.ping(1).unwrap_err();
    assert!(
        format!("{error:?}").contains("Checksum") || format!("{error:?}").contains("Invalid"),
        "{error:?}"
    );
}

#[test]
fn vanished_port_fails_reads_and_cannot_be_reopened() {
    let arm = spawn();
    let mut bus = bus(&arm);
    assert!(bus.ping(1).is_ok());
    arm.vanish();
    assert!(bus.ping(1).is_err());
    assert!(bus.ping(1).is_err());
    let mut port = bus.into_serial_port();
    let mut buffer = [0u8; 8];
    port.set_read_timeout(Duration::from_millis(50)).unwrap();
    let read = port.read(&mut buffer);
    assert!(
        matches!(read, Err(_) | Ok(0)),
        "read after vanish: {read:?}"
    );
    assert!(port.write(&[0xFF]).is_err(), "write after vanish");
    assert!(
        serial2::SerialPort::open(arm.port_path(), BPS).is_err(),
        "the path is gone"
    );
}
