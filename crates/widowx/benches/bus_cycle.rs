//! One control cycle (read_joint_state + write_joint_goals) against the virtual arm with
//! byte timing on at 1 Mbps, so replies arrive when a real bus would deliver them. Compare
//! with the wire-time lower bound: 274 bytes x 10 bits / 1 Mbps = 2.74 ms (SYNC_READ 21 B,
//! 7 replies x 23 B, SYNC_WRITE 92 B). `bridge-servo --sim bench` prints p50/p99 beside it.

use criterion::{Criterion, criterion_group, criterion_main};
use widowx::driver::{Arm, DriverConfig};
use widowx::firmware::FirmwareConfig;
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

criterion_group!(benches, bus_cycle);
criterion_main!(benches);
