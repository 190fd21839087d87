//! Forward and inverse kinematics timings. Criterion reports mean and median; the IK solve time
//! distribution is skewed (restarts), so p50, p99 and max are also printed from a plain timed loop.
//!
//! Run: `cargo bench -p widowx --bench ik`

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use widowx::joints::{ARM_JOINT_LIMITS, ARM_JOINTS, BRIDGE_NEUTRAL_POSE_RAD};
use widowx::kinematics::{IkConfig, forward, inverse};
use widowx::pose::Pose;

const WORKSPACE_MIN_M: [f64; 3] = widowx::bridge::WorkspaceBox::BRIDGE_EVAL.min_m;
const WORKSPACE_MAX_M: [f64; 3] = widowx::bridge::WorkspaceBox::BRIDGE_EVAL.max_m;
const TARGETS: usize = 2_000;

/// Reachable targets in the Bridge workspace box with the gripper within 60 deg of pointing down
/// (the same sampling as the kinematics test).
fn workspace_targets(count: usize) -> Vec<Pose> {
    let mut rng = StdRng::seed_from_u64(11);
    let mut targets = Vec::with_capacity(count);
    while targets.len() < count {
        let joints: [f64; ARM_JOINTS] =
            ARM_JOINT_LIMITS.map(|l| rng.random_range(l.min_rad..=l.max_rad));
        let pose = forward(&joints);
        let in_box =
            (0..3).all(|i| (WORKSPACE_MIN_M[i]..=WORKSPACE_MAX_M[i]).contains(&pose.position_m[i]));
        if in_box && -pose.rotation[2][0] >= 0.5 {
            targets.push(pose);
        }
    }
    targets
}

fn print_percentiles(targets: &[Pose], config: &IkConfig) {
    let mut durations_us: Vec<f64> = Vec::with_capacity(targets.len());
    let mut failures = 0;
    for target in targets {
        let start = Instant::now();
        let result = inverse(black_box(target), &BRIDGE_NEUTRAL_POSE_RAD, config);
        durations_us.push(start.elapsed().as_secs_f64() * 1e6);
        failures += usize::from(result.is_err());
    }
    durations_us.sort_by(f64::total_cmp);
    let at = |q: f64| durations_us[((durations_us.len() - 1) as f64 * q).round() as usize];
    println!(
        "IK from neutral seed over {} workspace targets: p50 {:.1} us, p99 {:.1} us, max {:.1} us, \
         mean {:.1} us, failures {failures}",
        durations_us.len(),
        at(0.5),
        at(0.99),
        at(1.0),
        durations_us.iter().sum::<f64>() / durations_us.len() as f64,
    );
}

fn kinematics_benches(c: &mut Criterion) {
    let config = IkConfig::default();
    let targets = workspace_targets(TARGETS);
    print_percentiles(&targets, &config);

    c.bench_function("forward", |b| {
        b.iter(|| forward(black_box(&BRIDGE_NEUTRAL_POSE_RAD)))
    });
    let mut next = 0;
    c.bench_function("inverse_from_neutral_seed", |b| {
        b.iter(|| {
            next = (next + 1) % targets.len();
            inverse(black_box(&targets[next]), &BRIDGE_NEUTRAL_POSE_RAD, &config)
        })
    });
}

criterion_group!(benches, kinematics_benches);
criterion_main!(benches);
