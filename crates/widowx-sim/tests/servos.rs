//! Servo behaviour over a real pty: shadows and secondary IDs, calibration, reboot, status
//! return levels, REG_WRITE/ACTION, the PWM gripper, bulk and fast sync reads, baud mismatch
//! and the factory-fresh EEPROM.

mod common;

use std::time::Duration;

use common::*;
use dynamixel2::Bus;
use dynamixel2::instructions::BulkReadData;
use widowx::control_table::reg;
use widowx_sim::InitialEeprom;
use widowx_sim::dynamics::GRIPPER_STOPS_RAD;
use widowx_sim::protocol::{crc16, instruction};

const WINDOW: Duration = Duration::from_millis(60);

fn present(arm: &widowx_sim::VirtualArm, id: u8) -> i64 {
    arm.register(id, &reg::PRESENT_POSITION).unwrap()
}

#[test]
fn shadow_answers_its_own_id_but_never_secondary_traffic() {
    let arm = spawn();
    let mut raw = RawClient::open(&arm);
    raw.send(2, instruction::READ, &[132, 0, 4, 0]);
    let replies = raw.statuses(WINDOW);
    assert_eq!(replies.iter().map(|s| s.id).collect::<Vec<_>>(), vec![2]);
    raw.send(2, instruction::WRITE, &[65, 0, 1]); // LED on 2 and, through Secondary_ID, on 3
    let replies = raw.statuses(WINDOW);
    assert_eq!(replies.iter().map(|s| s.id).collect::<Vec<_>>(), vec![2]);
    let led = widowx::control_table::Model::Xm430W350
        .register("LED")
        .copied()
        .unwrap();
    assert_eq!(arm.register(3, &led), Some(1));
    raw.send(3, instruction::PING, &[]);
    assert_eq!(
        raw.statuses(WINDOW)
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>(),
        vec![3]
    );
}

#[test]
fn eeprom_through_a_secondary_id_is_silently_refused() {
    let arm = spawn();
    let mut bus = bus(&arm);
    bus.write_u32(4, reg::HOMING_OFFSET.address, 7u32).unwrap();
    assert_eq!(arm.register(4, &reg::HOMING_OFFSET), Some(7));
    assert_eq!(
        arm.register(5, &reg::HOMING_OFFSET),
        Some(0),
        "shadow 5 must not take EEPROM via ID 4"
    );
}

#[test]
fn calibrated_shadow_reads_the_master_angle_and_follows_goals() {
    let arm = spawn();
    let mut bus = bus(&arm);
    for (master, shadow) in [(2u8, 3u8), (4, 5)] {
        let m = bus.read_u32(master, 132).unwrap().data as i32;
        let s = bus.read_u32(shadow, 132).unwrap().data as i32;
        assert_eq!(
            (m - s).abs(),
            20,
            "uncalibrated shadow {shadow} sits 20 ticks off"
        );
        // Stock rule: offset = shadow - master for a reversed shadow.
        bus.write_u32(shadow, reg::HOMING_OFFSET.address, (s - m) as u32)
            .unwrap();
        assert_eq!(bus.read_u32(shadow, 132).unwrap().data as i32, m);
    }
    bus.write_u8(2, reg::TORQUE_ENABLE.address, 1).unwrap(); // both 2 and 3, via the secondary ID
    assert_eq!(arm.register(3, &reg::TORQUE_ENABLE), Some(1));
    bus.write_u32(2, reg::PROFILE_VELOCITY.address, 200u32)
        .unwrap();
    let goal = present(&arm, 2) + 300;
    bus.write_u32(2, reg::GOAL_POSITION.address, goal as u32)
        .unwrap();
    assert_eq!(arm.register(3, &reg::GOAL_POSITION), Some(goal));
    assert!(wait_for(Duration::from_secs(1), || arm
        .register(2, &reg::MOVING)
        == Some(0)));
    assert_eq!(present(&arm, 2), goal);
    assert_eq!(present(&arm, 3), goal);
    // Calibrated: the shadow does not fight its master.
    let current = arm.register(3, &reg::PRESENT_CURRENT).unwrap();
    assert!(current.abs() < 20, "shadow current {current}");
}

#[test]
fn uncalibrated_shadow_fights_its_master() {
    let arm = spawn();
    let mut bus = bus(&arm);
    bus.write_u8(4, reg::TORQUE_ENABLE.address, 1).unwrap();
    let goal = present(&arm, 4) - 200;
    bus.write_u32(4, reg::GOAL_POSITION.address, goal as u32)
        .unwrap();
    assert!(wait_for(Duration::from_secs(2), || present(&arm, 4) == goal));
    let current = arm.register(5, &reg::PRESENT_CURRENT).unwrap();
    assert!(
        current.abs() >= 30,
        "shadow 5 should strain against a 20-tick mismatch: {current}"
    );
}

#[test]
fn reboot_resets_ram_and_keeps_eeprom() {
    let arm = spawn();
    let mut bus = bus(&arm);
    bus.write_u32(6, reg::HOMING_OFFSET.address, 11u32).unwrap();
    bus.write_u8(6, reg::TORQUE_ENABLE.address, 1).unwrap();
    bus.write_u32(6, reg::PROFILE_VELOCITY.address, 900u32)
        .unwrap();
    bus.reboot(6).unwrap();
    assert_eq!(arm.register(6, &reg::TORQUE_ENABLE), Some(0));
    assert_eq!(arm.register(6, &reg::PROFILE_VELOCITY), Some(0));
    assert_eq!(arm.register(6, &reg::HOMING_OFFSET), Some(11));
    assert_eq!(
        arm.register(6, &reg::GOAL_POSITION),
        arm.register(6, &reg::PRESENT_POSITION)
    );
}

#[test]
fn status_return_level_silences_replies() {
    let arm = spawn();
    let mut bus = bus(&arm);
    // The level applies at once: the write that lowers it already gets no reply.
    assert!(
        bus.write_u8(6, reg::STATUS_RETURN_LEVEL.address, 1)
            .is_err()
    );
    assert_eq!(arm.register(6, &reg::STATUS_RETURN_LEVEL), Some(1));
    assert!(
        bus.write_u8(6, 65, 1).is_err(),
        "no reply to WRITE at level 1"
    );
    assert_eq!(
        bus.read_u8(6, 65).unwrap().data,
        1,
        "READ still answered at level 1"
    );
    bus.write_u8(6, reg::STATUS_RETURN_LEVEL.address, 0).ok();
    assert_eq!(arm.register(6, &reg::STATUS_RETURN_LEVEL), Some(0));
    assert!(bus.read_u8(6, 65).is_err(), "no reply to READ at level 0");
    assert_eq!(
        bus.ping(6).unwrap().data.model,
        1020,
        "PING is always answered"
    );
}

#[test]
fn reg_write_waits_for_action() {
    let arm = spawn();
    let mut bus = bus(&arm);
    bus.write_u8(1, reg::TORQUE_ENABLE.address, 1).unwrap();
    let goal = present(&arm, 1) + 100;
    bus.reg_write_u32(1, reg::GOAL_POSITION.address, goal as u32)
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_ne!(arm.register(1, &reg::GOAL_POSITION), Some(goal));
    bus.action(1).unwrap();
    assert_eq!(arm.register(1, &reg::GOAL_POSITION), Some(goal));
    assert!(wait_for(Duration::from_secs(1), || present(&arm, 1) == goal));
    assert!(
        bus.action(1).is_err(),
        "ACTION without REG_WRITE is an instruction error"
    );
}

#[test]
fn gripper_moves_with_pwm_until_its_stop() {
    let arm = spawn();
    let mut bus = bus(&arm);
    bus.write_u8(9, reg::TORQUE_ENABLE.address, 1).unwrap();
    let start = present(&arm, 9);
    let sent_at = std::time::Instant::now();
    bus.write_u16(9, reg::GOAL_PWM.address, 400).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let moved = present(&arm, 9) - start;
    // 400 / 885 of full PWM, and full PWM turns at 131 x 0.229 rpm (4096 ticks per rev).
    let speed_ticks_s = 400.0 / 885.0 * 131.0 * 0.229 * 4096.0 / 60.0;
    let at_most = speed_ticks_s * sent_at.elapsed().as_secs_f64() + 1.0;
    assert!(
        moved >= 90 && moved as f64 <= at_most,
        "moved {moved} ticks, at most {at_most:.0}"
    );
    assert!(arm.joint_positions_rad()[6] > 0.05);
    let stop = (GRIPPER_STOPS_RAD.1 * 4096.0 / std::f64::consts::TAU).round() as i64 + 2048;
    assert!(wait_for(Duration::from_secs(2), || arm
        .register(9, &reg::MOVING)
        == Some(0)));
    assert_eq!(present(&arm, 9), stop);
    let load = arm.register(9, &reg::PRESENT_LOAD).unwrap();
    assert!(load > 300, "stalled against the stop: load {load}");
    bus.write_u16(9, reg::GOAL_PWM.address, (-885i16) as u16)
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(present(&arm, 9) < stop);
}

#[test]
fn bulk_read_answers_each_request_in_order() {
    let arm = spawn();
    let mut raw = RawClient::open(&arm);
    // (id 1: Present_Input_Voltage, 2 bytes), (id 9: Present_Temperature, 1 byte)
    raw.send(
        0xFE,
        instruction::BULK_READ,
        &[1, 144, 0, 2, 0, 9, 146, 0, 1, 0],
    );
    let replies = raw.statuses(WINDOW);
    assert_eq!(replies.len(), 2);
    assert_eq!((replies[0].id, replies[0].params.len()), (1, 2));
    assert_eq!(
        i64::from(u16::from_le_bytes([
            replies[0].params[0],
            replies[0].params[1]
        ])),
        arm.register(1, &reg::PRESENT_INPUT_VOLTAGE).unwrap()
    );
    assert_eq!((replies[1].id, replies[1].params.len()), (9, 1));
    // dynamixel2's own bulk read with one entry (its multi-entry encoding is broken in 0.9.1).
    let mut bus = bus(&arm);
    let reads = [BulkReadData {
        motor_id: 7,
        address: 132,
        count: 4,
    }];
    let responses = bus.bulk_read(&reads).unwrap();
    assert_eq!(
        i64::from(u32::from_le_bytes(responses[0].data[..4].try_into().unwrap()) as i32),
        present(&arm, 7)
    );
}

#[test]
fn fast_sync_read_returns_one_chained_packet() {
    let arm = spawn();
    let mut raw = RawClient::open(&arm);
    let ids = [1u8, 2, 4, 6, 7, 8, 9];
    let mut params = vec![132, 0, 4, 0];
    params.extend_from_slice(&ids);
    raw.send(0xFE, instruction::FAST_SYNC_READ, &params);
    let bytes = raw.collect(WINDOW);
    let packets = split_packets(&bytes);
    assert_eq!(packets.len(), 1, "one combined status packet");
    let packet = &packets[0];
    assert_eq!(packet[4], 0xFE);
    assert_eq!(packet[7], instruction::STATUS);
    assert_eq!(
        usize::from(u16::from_le_bytes([packet[5], packet[6]])),
        1 + ids.len() * 8
    );
    // SDK layout: ERR ID DATA(4) CRC(2) per servo, starting at byte 8.
    for (k, &id) in ids.iter().enumerate() {
        let block = &packet[8 + k * 8..8 + (k + 1) * 8];
        assert_eq!(block[0], 0, "error of servo {id}");
        assert_eq!(block[1], id);
        let position = i32::from_le_bytes(block[2..6].try_into().unwrap());
        assert_eq!(i64::from(position), present(&arm, id));
        let crc_end = 8 + k * 8 + 6;
        assert_eq!(
            u16::from_le_bytes([block[6], block[7]]),
            crc16(0, &packet[..crc_end])
        );
    }
}

#[test]
fn a_baud_scan_finds_the_arm_only_at_its_rate() {
    let arm = spawn();
    let mut slow = Bus::open(arm.port_path(), 57_600).unwrap();
    assert!(
        slow.ping(1).is_err(),
        "servos at 1 Mbps hear noise at 57600"
    );
    drop(slow);
    let mut fast = bus(&arm);
    assert!(fast.ping(1).is_ok());
    // Move servo 1 to 57600 (Baud_Rate 1): now only a 57600 client reaches it.
    fast.write_u8(1, reg::BAUD_RATE.address, 1).ok();
    assert_eq!(arm.register(1, &reg::BAUD_RATE), Some(1));
    assert!(fast.ping(1).is_err());
    assert!(fast.ping(2).is_ok());
    drop(fast);
    let mut slow = Bus::open(arm.port_path(), 57_600).unwrap();
    assert!(slow.ping(1).is_ok());
}

#[test]
fn factory_fresh_eeprom_holds_defaults_except_id_and_baud() {
    let arm = spawn_with(|c| c.initial_eeprom = InitialEeprom::Factory);
    let mut bus = bus(&arm);
    assert_eq!(bus.read_u8(3, reg::ID.address).unwrap().data, 3);
    assert_eq!(bus.read_u8(3, reg::BAUD_RATE.address).unwrap().data, 3);
    assert_eq!(bus.read_u8(3, reg::DRIVE_MODE.address).unwrap().data, 0);
    assert_eq!(bus.read_u8(3, reg::SECONDARY_ID.address).unwrap().data, 255);
    assert_eq!(
        bus.read_u8(3, reg::RETURN_DELAY_TIME.address).unwrap().data,
        250
    );
    assert_eq!(
        bus.read_u32(3, reg::VELOCITY_LIMIT.address).unwrap().data,
        200
    );
    assert_eq!(
        bus.read_u32(8, reg::VELOCITY_LIMIT.address).unwrap().data,
        265
    );
    assert_eq!(bus.read_u8(9, reg::OPERATING_MODE.address).unwrap().data, 3);
    // Without Secondary_ID the shadow ignores its master's traffic but is still bolted to it.
    bus.write_u8(2, 65, 1).unwrap();
    let led = widowx::control_table::Model::Xm430W350
        .register("LED")
        .copied()
        .unwrap();
    assert_eq!(arm.register(3, &led), Some(0));
}

#[test]
fn changing_the_id_answers_from_the_old_id_then_the_new() {
    let arm = spawn();
    let mut bus = bus(&arm);
    let reply = bus.write_u8(6, reg::ID.address, 20).unwrap();
    assert_eq!(reply.motor_id, 6);
    assert_eq!(bus.ping(20).unwrap().data.model, 1020);
    assert!(bus.ping(6).is_err());
    assert_eq!(arm.register(20, &reg::ID), Some(20));
}

#[test]
fn factory_reset_keeps_id_and_baud_when_asked() {
    let arm = spawn();
    let mut bus = bus(&arm);
    bus.write_u8(6, reg::TORQUE_ENABLE.address, 1).unwrap();
    let refused = bus.factory_reset(
        6,
        dynamixel2::instructions::FactoryResetKind::KeepIdAndBaudRate,
    );
    assert!(refused.is_err(), "not while torque is on");
    assert_eq!(arm.register(6, &reg::RETURN_DELAY_TIME), Some(0));
    bus.write_u8(6, reg::TORQUE_ENABLE.address, 0).unwrap();
    bus.factory_reset(
        6,
        dynamixel2::instructions::FactoryResetKind::KeepIdAndBaudRate,
    )
    .unwrap();
    assert_eq!(arm.register(6, &reg::RETURN_DELAY_TIME), Some(250));
    assert_eq!(arm.register(6, &reg::VELOCITY_LIMIT), Some(200));
    assert_eq!(arm.register(6, &reg::BAUD_RATE), Some(3));
    assert_eq!(bus.ping(6).unwrap().data.model, 1020);
}
