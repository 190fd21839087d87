//! Real-time scheduling for the control thread: SCHED_FIFO and locked memory, asked for when
//! the process may have them, and otherwise a plain statement of what is missing and the
//! command that grants it (the run goes on at normal priority).
//!
//! Only the calling thread is made real-time: the camera, policy, monitor and recorder threads
//! keep normal priority, so that a slow inference can never starve the servo loop, and the
//! servo loop (which sleeps most of each period) cannot starve them.

use std::fmt;

/// What [`make_current_thread_realtime`] obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealtimeReport {
    /// The SCHED_FIFO priority the thread runs at; `Err`: why it runs at normal priority.
    pub scheduling: Result<Option<u8>, String>,
    /// Whether the process's memory is locked; `Err`: why not.
    pub memory: Result<bool, String>,
}

impl RealtimeReport {
    /// Whether anything asked for was refused.
    pub fn refused(&self) -> bool {
        self.scheduling.is_err() || self.memory.is_err()
    }
}

impl fmt::Display for RealtimeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scheduling {
            Ok(Some(priority)) => write!(f, "control thread at SCHED_FIFO priority {priority}")?,
            Ok(None) => f.write_str("control thread at normal priority (realtime_priority = 0)")?,
            Err(why) => write!(f, "control thread at normal priority: {why}")?,
        }
        match &self.memory {
            Ok(true) => f.write_str("; memory locked")?,
            Ok(false) => f.write_str("; memory not locked (lock_memory = false)")?,
            Err(why) => write!(f, "; memory not locked: {why}")?,
        }
        if self.refused() {
            write!(f, ". {GRANT_ADVICE}")?;
        }
        Ok(())
    }
}

/// How an administrator grants what [`make_current_thread_realtime`] asks for.
pub const GRANT_ADVICE: &str = "To grant real-time priority and locked memory: \
`sudo setcap cap_sys_nice,cap_ipc_lock=ep \"$(command -v bridge-run)\"`, or add \
`USER - rtprio 90` and `USER - memlock unlimited` to /etc/security/limits.d/bridge-run.conf \
and log in again";

/// Asks for SCHED_FIFO at `priority` (0: leave the scheduling alone) for the calling thread,
/// and, when `lock_memory`, locks the pages the process has mapped now. Never fails: what was
/// refused is in the report.
pub fn make_current_thread_realtime(priority: u8, lock_memory: bool) -> RealtimeReport {
    let scheduling = match priority {
        0 => Ok(None),
        p => set_fifo(p).map(|()| Some(p)),
    };
    let memory = if lock_memory {
        // Only what is mapped now: locking future mappings too (MCL_FUTURE) would make later
        // allocations fail outright once RLIMIT_MEMLOCK is reached. The control loop allocates
        // nothing after it starts, so its pages are all among the current ones.
        rustix::mm::mlockall(rustix::mm::MlockAllFlags::CURRENT)
            .map(|()| true)
            .map_err(|e| format!("mlockall refused ({e})"))
    } else {
        Ok(false)
    };
    RealtimeReport { scheduling, memory }
}

fn set_fifo(priority: u8) -> Result<(), String> {
    let param = libc::sched_param {
        sched_priority: i32::from(priority),
    };
    // SAFETY: sched_setscheduler reads the `sched_param` behind the pointer during the call
    // only; `param` is a fully initialised local that outlives the call. Pid 0 is the calling
    // thread (Linux applies the policy per thread), so no other thread's state is touched, and
    // the call writes no memory of ours.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        let e = std::io::Error::last_os_error();
        Err(format!("SCHED_FIFO priority {priority} refused ({e})"))
    }
}

/// The calling thread's scheduling policy and priority, as the kernel reports them.
pub fn current_thread_policy() -> (i32, i32) {
    // SAFETY: both calls only read the calling thread's attributes; `param` is a local the
    // kernel writes during the call.
    unsafe {
        let policy = libc::sched_getscheduler(0);
        let mut param = libc::sched_param { sched_priority: 0 };
        libc::sched_getparam(0, &mut param);
        (policy, param.sched_priority)
    }
}

/// Whether `policy` (from [`current_thread_policy`]) is SCHED_FIFO.
pub fn is_fifo(policy: i32) -> bool {
    policy == libc::SCHED_FIFO
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_gets_fifo_or_says_why_not_and_nothing_else_changes() {
        let handle = std::thread::spawn(|| {
            let report = make_current_thread_realtime(10, false);
            let (policy, priority) = current_thread_policy();
            match &report.scheduling {
                Ok(Some(10)) => assert!(is_fifo(policy) && priority == 10, "{policy} {priority}"),
                Err(why) => {
                    assert!(why.contains("SCHED_FIFO priority 10 refused"), "{why}");
                    assert!(!is_fifo(policy));
                    assert!(report.to_string().contains("setcap"), "{report}");
                }
                other => panic!("unexpected {other:?}"),
            }
            assert_eq!(report.memory, Ok(false));
        });
        handle.join().unwrap();
        // The test thread itself was not touched.
        assert!(!is_fifo(current_thread_policy().0));
    }

    #[test]
    fn priority_zero_asks_for_nothing() {
        let report = make_current_thread_realtime(0, false);
        assert_eq!(report.scheduling, Ok(None));
        assert!(!report.refused());
        assert!(report.to_string().contains("normal priority"), "{report}");
    }
}
