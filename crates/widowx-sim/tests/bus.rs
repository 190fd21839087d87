//! The virtual arm over a real pseudo-terminal, driven by the `dynamixel2` client.

mod common;

use std::time::{Duration, Instant};

use common::*;
use dynamixel2::instructions::SyncWriteData;
use dynamixel2::{ReadError, TransferError};
use widowx::control_table::reg;
use widowx::joints::BRIDGE_NEUTRAL_POSE_RAD;
use widowx::units::rad_to_ticks;
use widowx_sim::VirtualArm;
use widowx_sim::dynamics::Trapezoid;

fn present(arm: &VirtualArm, id: u8) -> i64 {
    arm.register(id, &reg::PRESENT_POSITION).unwrap()
}

fn motor_error(result: Result<dynamixel2::Response<()>, TransferError>) -> Option<u8> {
    match result {
        Err(TransferError::ReadError(ReadError::MotorError(e))) => Some(e.error_number()),
        Ok(_) => None,
        Err(other) => panic!("expected a motor error, got {other:?}"),
    }
}

#[test]
fn pings_every_servo_with_its_model() {
    let arm = spawn();
    let mut bus = bus(&arm);
    for id in ALL_IDS {
        let ping = bus.ping(id).unwrap();
        assert_eq!(ping.motor_id, id);
        let expected = if id >= 8 { 1060 } else { 1020 };
        assert_eq!(ping.data.model, expected, "servo {id}");
        assert!(!ping.alert);
    }
    assert!(bus.ping(10).is_err(), "no servo 10");
    assert!(arm.packets_received() >= 10);
}

#[test]
fn reads_and_writes_registers() {
    let arm = spawn();
    let mut bus = bus(&arm);
    assert_eq!(bus.read_u8(4, reg::BAUD_RATE.address).unwrap().data, 3);
    assert_eq!(bus.read_u8(5, reg::SECONDARY_ID.address).unwrap().data, 4);
    assert_eq!(
        bus.read_u32(7, reg::VELOCITY_LIMIT.address).unwrap().data,
        131
    );
    bus.write_u8(1, 65, 1).unwrap(); // LED
    assert_eq!(
        arm.register(
            1,
            &widowx::control_table::Model::Xm430W350
                .register("LED")
                .copied()
                .unwrap()
        ),
        Some(1)
    );
    bus.write_u32(1, reg::PROFILE_VELOCITY.address, 300)
        .unwrap();
    assert_eq!(
        bus.read_u32(1, reg::PROFILE_VELOCITY.address).unwrap().data,
        300
    );
}

#[test]
fn sync_read_of_the_joint_state() {
    let arm = spawn();
    let mut bus = bus(&arm);
    let replies = bus.sync_read(&MASTERS, 126, 12).unwrap();
    assert_eq!(replies.len(), 7);
    for (reply, id) in replies.iter().zip(MASTERS) {
        assert_eq!(reply.motor_id, id);
        let position = i32::from_le_bytes(reply.data[6..10].try_into().unwrap());
        assert_eq!(
            i64::from(position),
            arm.register(id, &reg::PRESENT_POSITION).unwrap()
        );
    }
    // Sleep pose shoulder -1.80 rad -> 2048 - 1.80 * 4096 / 2pi
    let shoulder = i32::from_le_bytes(replies[1].data[6..10].try_into().unwrap());
    assert!((shoulder - 875).abs() <= 1, "{shoulder}");
}

#[test]
fn sync_write_moves_joints_along_the_time_based_profile() {
    let arm = spawn();
    let mut bus = bus(&arm);
    bus.sync_write_u8(
        reg::TORQUE_ENABLE.address,
        MASTERS.map(|id| SyncWriteData {
            motor_id: id,
            data: 1u8,
        }),
    )
    .unwrap();
    // SYNC_WRITE has no reply: wait until the server has taken it.
    let shadows_on = || {
        [3, 5]
            .iter()
            .all(|&id| arm.register(id, &reg::TORQUE_ENABLE) == Some(1))
    };
    assert!(
        wait_for(Duration::from_secs(1), shadows_on),
        "shadows 3 and 5 via Secondary_ID"
    );
    let arm_ids = &MASTERS[..6];
    let starts: Vec<i64> = arm_ids.iter().map(|&id| present(&arm, id)).collect();
    let goals: Vec<i64> = BRIDGE_NEUTRAL_POSE_RAD
        .iter()
        .map(|&rad| i64::from(rad_to_ticks(rad)))
        .collect();
    // One 12-byte write from 108: Profile_Acceleration 100 ms, Profile_Velocity 500 ms, goal.
    let writes: Vec<SyncWriteData<Vec<u8>>> = arm_ids
        .iter()
        .zip(&goals)
        .map(|(&id, &goal)| {
            let mut data = Vec::new();
            data.extend_from_slice(&100u32.to_le_bytes());
            data.extend_from_slice(&500u32.to_le_bytes());
            data.extend_from_slice(&(goal as u32).to_le_bytes());
            SyncWriteData { motor_id: id, data }
        })
        .collect();
    let sent_at = Instant::now();
    bus.sync_write(108, 12, &writes).unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let before_read_s = sent_at.elapsed().as_secs_f64();
    let replies = bus.sync_read(arm_ids, 132, 4).unwrap();
    let after_read_s = sent_at.elapsed().as_secs_f64();
    for (k, reply) in replies.iter().enumerate() {
        let position = i64::from(i32::from_le_bytes(reply.data[..4].try_into().unwrap()));
        // Between the profile's positions at the two ends of the read window (+-1 tick).
        let plan = |t_s: f64| {
            Trapezoid::time_based(
                0.0,
                starts[k] as f64,
                goals[k] as f64,
                500,
                100,
                f64::INFINITY,
            )
            .sample(t_s)
            .position_ticks
        };
        let (a, b) = (plan(before_read_s - 0.005), plan(after_read_s));
        let (low, high) = (a.min(b) - 1.0, a.max(b) + 1.0);
        assert!(
            (low..=high).contains(&(position as f64)),
            "servo {}: {position} not in {low:.0}..{high:.0} ({} -> {})",
            reply.motor_id,
            starts[k],
            goals[k]
        );
    }
    assert_eq!(bus.read_u8(2, reg::MOVING.address).unwrap().data, 1);
    assert!(wait_for(Duration::from_millis(600), || arm_ids
        .iter()
        .all(|&id| arm.register(id, &reg::MOVING) == Some(0))));
    assert!(sent_at.elapsed() >= Duration::from_millis(495));
    for (&id, &goal) in arm_ids.iter().zip(&goals) {
        assert_eq!(present(&arm, id), goal, "servo {id}");
    }
    let joints = arm.joint_positions_rad();
    for (k, &expected) in BRIDGE_NEUTRAL_POSE_RAD.iter().enumerate() {
        assert!(
            (joints[k] - expected).abs() < 0.002,
            "joint {k}: {} vs {expected}",
            joints[k]
        );
    }
}

#[test]
fn eeprom_write_with_torque_on_is_refused() {
    let arm = spawn();
    let mut bus = bus(&arm);
    bus.write_u8(2, reg::TORQUE_ENABLE.address, 1).unwrap();
    let error = motor_error(bus.write_u32(2, reg::HOMING_OFFSET.address, 5));
    assert_eq!(error, Some(7));
    assert_eq!(arm.register(2, &reg::HOMING_OFFSET), Some(0));
    bus.write_u8(2, reg::TORQUE_ENABLE.address, 0).unwrap();
    assert_eq!(
        motor_error(bus.write_u32(2, reg::HOMING_OFFSET.address, 5)),
        None
    );
    assert_eq!(arm.register(2, &reg::HOMING_OFFSET), Some(5));
}

#[test]
fn read_only_and_out_of_limit_writes_are_refused() {
    let arm = spawn();
    let mut bus = bus(&arm);
    assert_eq!(
        motor_error(bus.write_u32(4, reg::PRESENT_POSITION.address, 5)),
        Some(7)
    );
    bus.write_u8(4, reg::TORQUE_ENABLE.address, 1).unwrap();
    let before = arm.register(4, &reg::GOAL_POSITION);
    assert_eq!(
        motor_error(bus.write_u32(4, reg::GOAL_POSITION.address, 3500)),
        Some(6)
    );
    assert_eq!(arm.register(4, &reg::GOAL_POSITION), before);
    // 2 bytes of a 4-byte register: data length error
    assert_eq!(
        motor_error(bus.write_u16(4, reg::GOAL_POSITION.address, 2000)),
        Some(5)
    );
    // Status_Return_Level 3 is outside 0..=2: data range error
    assert_eq!(
        motor_error(bus.write_u8(4, reg::STATUS_RETURN_LEVEL.address, 3)),
        Some(4)
    );
}
