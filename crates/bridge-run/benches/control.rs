//! The control thread's compute per tick, without the bus: the supervisor's checks, the
//! setpoint step, and (at policy rate) one Bridge action through IK.
//!
//! `cargo bench -p bridge-run --bench control`

use std::hint::black_box;
use std::time::{Duration, Instant};

use bridge_run::action::{ActionMapper, CommandedPose};
use bridge_run::config::{ActionConfig, SafetyConfig, WorkspaceConfig};
use bridge_run::modes::Mode;
use bridge_run::supervisor::{Supervisor, TickView};
use criterion::{Criterion, criterion_group, criterion_main};
use widowx::joints::BRIDGE_NEUTRAL_POSE_RAD;
use widowx_driver::JointState;

fn benches(c: &mut Criterion) {
    let mapper = ActionMapper::new(ActionConfig::default(), WorkspaceConfig::default());
    let start = CommandedPose::from_xyz_rpy([0.3, 0.0, 0.15], [0.0; 3]);
    let joints = mapper.solve(&start, &BRIDGE_NEUTRAL_POSE_RAD).unwrap();
    let action =
        widowx::bridge::BridgeAction::from_array([0.02, -0.01, 0.01, 0.05, -0.03, 0.1, 1.0]);
    c.bench_function("policy step: action -> pose -> IK (seeded)", |b| {
        b.iter(|| black_box(mapper.apply(black_box(&start), &joints, &action)))
    });

    let mut state = JointState::default();
    state.positions_rad[..6].copy_from_slice(&joints);
    let mut supervisor = Supervisor::new(
        SafetyConfig::default(),
        WorkspaceConfig::default(),
        widowx::firmware::FirmwareConfig::wx250s().joint_limits(),
    );
    let now = Instant::now();
    c.bench_function("tick: supervisor checks (running)", |b| {
        b.iter(|| {
            let view = TickView {
                mode: Mode::Running,
                now,
                state: black_box(&state),
                setpoint_rad: &joints,
                last_action_at: now,
                last_frame_at: now,
            };
            black_box(supervisor.check(&view))
        })
    });
    let mut target = joints;
    target[0] += 0.3;
    c.bench_function("tick: setpoint step limit", |b| {
        b.iter(|| black_box(supervisor.limit_step(black_box(&joints), &target)))
    });
}

criterion_group! {
    name = control;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(control);
