//! A freshest-value channel: the writer replaces the value, readers copy the newest one.
//!
//! Used where only the latest value matters (the policy's action for the control thread, the
//! control thread's status for everyone else). The lock is held only to copy a small `Copy`
//! value, so neither side ever waits on the other's work, and nothing allocates.

use std::sync::{Arc, Mutex, MutexGuard};

/// Shared slot holding the newest value and how many times it was written.
#[derive(Debug)]
pub struct Mailbox<T: Copy> {
    slot: Arc<Mutex<(u64, T)>>,
}

impl<T: Copy> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        Mailbox {
            slot: Arc::clone(&self.slot),
        }
    }
}

impl<T: Copy> Mailbox<T> {
    /// A mailbox holding `initial` (version 0).
    pub fn new(initial: T) -> Mailbox<T> {
        Mailbox {
            slot: Arc::new(Mutex::new((0, initial))),
        }
    }

    fn lock(&self) -> MutexGuard<'_, (u64, T)> {
        // A writer that panicked mid-copy cannot leave a torn `Copy` value: take it anyway.
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the value; returns its version (1 for the first write).
    pub fn put(&self, value: T) -> u64 {
        let mut slot = self.lock();
        slot.0 += 1;
        slot.1 = value;
        slot.0
    }

    /// The newest value.
    pub fn get(&self) -> T {
        self.lock().1
    }

    /// The newest value with its version, so a reader can tell whether it is new to it.
    pub fn get_versioned(&self) -> (u64, T) {
        *self.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_the_newest_value_and_its_version() {
        let m = Mailbox::new(0u32);
        assert_eq!(m.get_versioned(), (0, 0));
        let writer = m.clone();
        let handle = std::thread::spawn(move || {
            for i in 1..=1000u32 {
                writer.put(i);
            }
        });
        handle.join().unwrap();
        assert_eq!(m.get_versioned(), (1000, 1000));
        assert_eq!(m.put(7), 1001);
        assert_eq!(m.get(), 7);
    }
}
