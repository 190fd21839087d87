//! The control thread's compute per tick, without the bus: the supervisor's checks, the
//! setpoint step, (at policy rate) one Bridge action through IK, and the three mailbox
//! hand-offs a tick makes (the status it publishes, the action and frame time it reads), alone
//! and with other threads reading and writing the same mailbox.
//!
//! `cargo bench -p bridge-run --bench control`

use std::hint::black_box;
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bridge_run::action::{ActionMapper, CommandedPose};
use bridge_run::config::{ActionConfig, SafetyConfig, WorkspaceConfig};
use bridge_run::mailbox::Mailbox;
use bridge_run::messages::ControlStatus;
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
    mailboxes(c);
}

/// The mailbox as it was before it became lock-free (one mutex around the value), measured
/// beside it in the same run as the reference.
#[derive(Clone)]
struct LockedSlot<T: Copy>(Arc<std::sync::Mutex<(u64, T)>>);

impl<T: Copy> LockedSlot<T> {
    fn new(value: T) -> Self {
        LockedSlot(Arc::new(std::sync::Mutex::new((0, value))))
    }
    fn put(&self, value: T) -> u64 {
        let mut slot = self.0.lock().unwrap();
        slot.0 += 1;
        slot.1 = value;
        slot.0
    }
    fn get_versioned(&self) -> (u64, T) {
        *self.0.lock().unwrap()
    }
}

/// One hand-off implementation, so both run through the same measurements.
trait HandOff<T: Copy>: Clone + Send + 'static {
    fn put(&self, value: T) -> u64;
    fn get_versioned(&self) -> (u64, T);
}

impl<T: Copy + Send + Sync + 'static> HandOff<T> for Mailbox<T> {
    fn put(&self, value: T) -> u64 {
        Mailbox::put(self, value)
    }
    fn get_versioned(&self) -> (u64, T) {
        Mailbox::get_versioned(self)
    }
}

impl<T: Copy + Send + Sync + 'static> HandOff<T> for LockedSlot<T> {
    fn put(&self, value: T) -> u64 {
        LockedSlot::put(self, value)
    }
    fn get_versioned(&self) -> (u64, T) {
        LockedSlot::get_versioned(self)
    }
}

/// The status publish (the largest value a tick hands off) and an action-sized read, quiet and
/// with three threads hammering the same mailbox, for the lock-free mailbox and the reference.
fn mailboxes(c: &mut Criterion) {
    let now = Instant::now();
    hand_offs(
        c,
        "mailbox",
        Mailbox::new(ControlStatus::placeholder(now)),
        Mailbox::new(Some([0.1f64; 7])),
    );
    hand_offs(
        c,
        "mutex (reference)",
        LockedSlot::new(ControlStatus::placeholder(now)),
        LockedSlot::new(Some([0.1f64; 7])),
    );
}

fn hand_offs<S, A>(c: &mut Criterion, name: &str, status: S, action: A)
where
    S: HandOff<ControlStatus>,
    A: HandOff<Option<[f64; 7]>>,
{
    let value = ControlStatus::placeholder(Instant::now());
    c.bench_function(&format!("{name}: publish the status (quiet)"), |b| {
        b.iter(|| black_box(status.put(black_box(value))))
    });
    c.bench_function(&format!("{name}: read the action (quiet)"), |b| {
        b.iter(|| black_box(action.get_versioned()))
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut hammers = Vec::new();
    for i in 0..3 {
        let (status, action, stop) = (status.clone(), action.clone(), Arc::clone(&stop));
        hammers.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                black_box(status.get_versioned());
                if i == 0 {
                    action.put(Some([0.2; 7]));
                } else {
                    black_box(action.get_versioned());
                }
            }
        }));
    }
    c.bench_function(
        &format!("{name}: publish the status (3 threads reading)"),
        |b| b.iter(|| black_box(status.put(black_box(value)))),
    );
    c.bench_function(
        &format!("{name}: read the action (1 writer, 2 readers)"),
        |b| b.iter(|| black_box(action.get_versioned())),
    );
    stop.store(true, Ordering::Relaxed);
    for h in hammers {
        let _ = h.join();
    }
}

criterion_group! {
    name = control;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(control);
