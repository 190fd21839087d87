//! The control thread allocates nothing per tick while the policy drives: a counting allocator
//! records the allocations made on the thread named `bridge-run-control` during two seconds of
//! an episode (up to 200 ticks, with reads, writes, policy steps, IK and events), with a backtrace of
//! each. None is allowed, including on the paths a loaded machine hits: a late or stray servo
//! reply is recorded as a `widowx_driver::CorruptReply` value, not formatted.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bridge_run::modes::Mode;
use support::*;

struct CountingAllocator;

static CONTROL_THREAD_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// While set, each control-thread allocation's backtrace is kept (resolved later, off the hot path).
static TRACE: AtomicBool = AtomicBool::new(false);
static TRACES: Mutex<Vec<Backtrace>> = Mutex::new(Vec::new());

thread_local! {
    /// Whether this thread is the control thread (decided on its first allocation).
    static IS_CONTROL: Cell<Option<bool>> = const { Cell::new(None) };
    /// Set while counting, so an allocation made by the counting itself is not recursed into.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count_allocation() {
    let _ = COUNTING.try_with(|counting| {
        if counting.replace(true) {
            return;
        }
        let is_control = IS_CONTROL
            .try_with(|known| {
                *known.get().get_or_insert_with(|| {
                    std::thread::current().name() == Some("bridge-run-control")
                })
            })
            .unwrap_or(false);
        if is_control {
            CONTROL_THREAD_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            if TRACE.load(Ordering::Relaxed)
                && let Ok(mut traces) = TRACES.lock()
            {
                traces.push(Backtrace::force_capture());
            }
        }
        counting.set(false);
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// GlobalAlloc contract; the counting touches only atomics and const-initialised thread locals.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (alloc above).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: `ptr` was allocated by `System` with `layout`; new_size is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn the_control_thread_does_not_allocate_while_the_policy_drives() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let policy = ScriptedPolicy::constant([0.004, -0.002, 0.001, 0.0, 0.0, 0.02, 1.0]);
    let goal = flat_goal(policy.size_px);
    let (_rig, mut runtime) = start_on_sim(
        config,
        Box::new(SyntheticCamera::new(15.0)),
        Box::new(policy),
    );
    let watch = runtime.status_watch();
    let (allocations, ticks, steps) = std::thread::scope(|scope| {
        let measure = scope.spawn(|| {
            assert!(wait_for(Duration::from_secs(20), || {
                let s = watch.get();
                s.mode == Mode::Running && s.steps_applied >= 2
            }));
            TRACE.store(true, Ordering::Relaxed);
            let (a0, s0) = (
                CONTROL_THREAD_ALLOCATIONS.load(Ordering::Relaxed),
                watch.get(),
            );
            std::thread::sleep(Duration::from_secs(2));
            let (a1, s1) = (
                CONTROL_THREAD_ALLOCATIONS.load(Ordering::Relaxed),
                watch.get(),
            );
            TRACE.store(false, Ordering::Relaxed);
            assert_eq!(s1.mode, Mode::Running);
            (
                a1 - a0,
                s1.ticks - s0.ticks,
                s1.steps_applied - s0.steps_applied,
            )
        });
        let report = runtime.run_episode(&goal, 25).unwrap();
        assert_eq!(report.steps, 25, "{report:#?}");
        measure.join().unwrap()
    });
    assert!(ticks > 60, "only {ticks} ticks");
    assert!(steps >= 4, "only {steps} policy steps");
    let traces: Vec<String> = TRACES
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    assert_eq!(traces.len() as u64, allocations);
    assert!(
        traces.is_empty(),
        "{allocations} allocations in {ticks} ticks:\n{}",
        traces.join("\n=====\n")
    );
    // The counter does see the control thread: parking (torque off lists the servos) allocates.
    runtime.park_and_stop().unwrap();
    assert!(CONTROL_THREAD_ALLOCATIONS.load(Ordering::Relaxed) > 0);
}
