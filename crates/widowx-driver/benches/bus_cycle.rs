//! One control cycle (read_joint_state + write_joint_goals) against the virtual arm with
//! byte timing on at 1 Mbps, so replies arrive when a real bus would deliver them. Compare
//! with the wire-time lower bound: 274 bytes x 10 bits / 1 Mbps = 2.74 ms (SYNC_READ 21 B,
//! 7 replies x 23 B, SYNC_WRITE 92 B). `bridge-servo --sim bench` prints p50/p99 beside it.
//!
//! The second case corrupts 5 % of the replies (a noisy cable): a third of the reads then
//! retry, and the mean read time shows what each corrupt reply costs.

use criterion::{Criterion, criterion_group, criterion_main};
use widowx::firmware::FirmwareConfig;
use widowx_driver::{Arm, DriverConfig};
use widowx_sim::{SimConfig, VirtualArm};

fn bus_cycle(c: &mut Criterion) {
    let mut sim_config = SimConfig::new(FirmwareConfig::wx250s());
    sim_config.byte_timing = true;
    let sim = VirtualArm::spawn(sim_config).expect("virtual arm");
    let mut arm = Arm::connect(
        sim.port_path(),
        FirmwareConfig::wx250s(),
        DriverConfig::default(),
    )
    .expect("connect");
    arm.set_torque(true, None).expect("torque on");
    let hold = arm
        .read_joint_state()
        .expect("joint state")
        .arm_positions_rad();
    c.bench_function("control cycle at 1 Mbps (virtual arm)", |b| {
        b.iter(|| {
            arm.read_joint_state().expect("joint state");
            arm.write_joint_goals(&hold, 0.25).expect("goals");
        })
    });
}

fn read_with_corrupt_replies(c: &mut Criterion) {
    let mut sim_config = SimConfig::new(FirmwareConfig::wx250s());
    sim_config.byte_timing = true;
    let sim = VirtualArm::spawn(sim_config).expect("virtual arm");
    // Retries enough that a read never exhausts them in a benchmark's thousands of reads.
    let config = DriverConfig {
        retries: 8,
        ..DriverConfig::default()
    };
    let mut arm = Arm::connect(sim.port_path(), FirmwareConfig::wx250s(), config).expect("connect");
    sim.set_reply_corruption_rate(0.05);
    c.bench_function(
        "read_joint_state, 5 % of replies corrupt (virtual arm, 1 Mbps)",
        |b| b.iter(|| *arm.read_joint_state().expect("joint state")),
    );
}

criterion_group!(benches, bus_cycle, read_with_corrupt_replies);
criterion_main!(benches);
