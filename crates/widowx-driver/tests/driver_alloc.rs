//! The control cycle allocates nothing: a counting allocator watches this thread while
//! `read_joint_state` and `write_joint_goals` run against the virtual arm.

use test_support::alloc::{CountingAllocator, allocations};
use widowx::firmware::FirmwareConfig;
use widowx_driver::{Arm, DriverConfig};
use widowx_sim::{SimConfig, VirtualArm};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn control_cycle_does_not_allocate() {
    let sim = VirtualArm::spawn(SimConfig::new(FirmwareConfig::wx250s())).unwrap();
    let config = DriverConfig {
        reply_timeout_s: 0.05,
        ..DriverConfig::default()
    };
    let mut arm = Arm::connect(sim.port_path(), FirmwareConfig::wx250s(), config).unwrap();
    arm.set_torque(true, None).unwrap();
    let hold = arm.read_joint_state().unwrap().arm_positions_rad();
    let before = allocations();
    for _ in 0..50 {
        arm.read_joint_state().unwrap();
        arm.write_joint_goals(&hold, 0.25).unwrap();
    }
    assert_eq!(allocations() - before, 0);
    // The counter does see this thread's allocations.
    let v = vec![1u8; 16];
    assert!(allocations() > before, "{v:?}");
}

/// A loaded bus corrupts or delays replies in normal operation; the retries that recover from it
/// run inside the control loop and must not allocate either (the reply's fault is recorded as a
/// `CorruptReply` value and only formatted if the read finally fails).
#[test]
fn retrying_corrupt_replies_does_not_allocate() {
    let sim = VirtualArm::spawn(SimConfig::new(FirmwareConfig::wx250s())).unwrap();
    // At 30 % corruption a servo's reply fails 13 times in a row with probability 2e-7.
    let config = DriverConfig {
        reply_timeout_s: 0.02,
        retries: 12,
        ..DriverConfig::default()
    };
    let mut arm = Arm::connect(sim.port_path(), FirmwareConfig::wx250s(), config).unwrap();
    arm.read_joint_state().unwrap();
    sim.set_reply_corruption_rate(0.3);
    let reads = 20;
    let (packets_before, allocations_before) = (sim.packets_received(), allocations());
    for _ in 0..reads {
        arm.read_joint_state().unwrap();
    }
    let allocated = allocations() - allocations_before;
    let sent = sim.packets_received() - packets_before;
    assert!(
        sent > reads + 5,
        "only {sent} sync reads for {reads} calls: no reply was retried"
    );
    assert_eq!(allocated, 0, "{allocated} allocations in {sent} sync reads");
}
