//! A freshest-value channel: the writer replaces the value, readers copy the newest one.
//!
//! Used where only the latest value matters (the policy's action and the newest frame's time
//! for the control thread, the control thread's status for everyone else). A reader never waits
//! for a writer and a writer never waits for a reader: the control thread runs at real-time
//! priority, and with one plain mutex a normal-priority thread preempted while holding it would
//! stall the servo loop (priority inversion).
//!
//! How: a few slots, each behind a read-write lock that is only ever *tried*. The writer fills
//! a slot other than the published one, then publishes it (version and slot index in one
//! atomic word). A reader copies the published slot; it can only find that slot locked when
//! the writer has since published twice more and is refilling it, and then it simply reads the
//! newer published slot. Writers of one mailbox take turns (a mutex among writers only: each
//! mailbox has one writing thread). Copies are of small `Copy` values; nothing allocates after
//! construction, and there is no `unsafe`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, TryLockError};

/// Slots per mailbox: the published one, and spares for the writer while readers still copy
/// older ones (a writer would have to find all of them held by preempted readers to wait).
const SLOTS: usize = 8;

/// Low bits of the published word: the slot index; the rest: the version.
const SLOT_BITS: u32 = 8;

#[derive(Debug)]
struct Shared<T> {
    slots: [RwLock<(u64, T)>; SLOTS],
    /// `version << SLOT_BITS | slot` of the newest value.
    published: AtomicU64,
    /// Held by a writer while it writes (writers only).
    writer: Mutex<()>,
}

/// Shared slot holding the newest value and how many times it was written.
#[derive(Debug)]
pub struct Mailbox<T: Copy> {
    shared: Arc<Shared<T>>,
}

impl<T: Copy> Clone for Mailbox<T> {
    fn clone(&self) -> Self {
        Mailbox {
            shared: Arc::clone(&self.shared),
        }
    }
}

fn unpack(word: u64) -> (u64, usize) {
    (word >> SLOT_BITS, (word & ((1 << SLOT_BITS) - 1)) as usize)
}

impl<T: Copy> Mailbox<T> {
    /// A mailbox holding `initial` (version 0).
    pub fn new(initial: T) -> Mailbox<T> {
        Mailbox {
            shared: Arc::new(Shared {
                slots: std::array::from_fn(|_| RwLock::new((0, initial))),
                published: AtomicU64::new(0),
                writer: Mutex::new(()),
            }),
        }
    }

    /// Replaces the value; returns its version (1 for the first write). Never waits for a
    /// reader.
    pub fn put(&self, value: T) -> u64 {
        self.put_with(|_| value)
    }

    /// Publishes `make(version)`.
    fn put_with(&self, make: impl FnOnce(u64) -> T) -> u64 {
        let shared = &*self.shared;
        // Another writer of this mailbox (there is one writing thread per mailbox) is the only
        // thing this can wait for; a panicked writer left no torn slot, so poison is ignored.
        let _turn = shared
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (version, current) = unpack(shared.published.load(Ordering::Acquire));
        let version = version + 1;
        let value = make(version);
        loop {
            for offset in 1..SLOTS {
                let slot = (current + offset) % SLOTS;
                let mut guard = match shared.slots[slot].try_write() {
                    Ok(guard) => guard,
                    Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                    Err(TryLockError::WouldBlock) => continue, // a reader still copies it
                };
                *guard = (version, value);
                drop(guard);
                let word = version << SLOT_BITS | slot as u64;
                shared.published.store(word, Ordering::Release);
                return version;
            }
            // Every spare slot is being copied right now: a copy takes nanoseconds.
            std::hint::spin_loop();
        }
    }

    /// The newest value.
    pub fn get(&self) -> T {
        self.get_versioned().1
    }

    /// The newest value with its version, so a reader can tell whether it is new to it. Never
    /// waits for a writer.
    pub fn get_versioned(&self) -> (u64, T) {
        let shared = &*self.shared;
        loop {
            let (_, slot) = unpack(shared.published.load(Ordering::Acquire));
            match shared.slots[slot].try_read() {
                Ok(guard) => return *guard,
                Err(TryLockError::Poisoned(poisoned)) => return *poisoned.into_inner(),
                // Republished twice since the load and being refilled: read the newer one.
                Err(TryLockError::WouldBlock) => std::hint::spin_loop(),
            }
        }
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

    #[test]
    fn concurrent_readers_never_see_a_torn_or_older_value() {
        // The value is (i, i * 3): a torn copy would break the relation.
        let m = Mailbox::new((0u64, 0u64));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let m = m.clone();
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut last = 0;
                    let mut reads = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let (version, (i, triple)) = m.get_versioned();
                        assert_eq!(triple, i * 3, "torn value");
                        assert!(version >= last, "went back from {last} to {version}");
                        assert_eq!(version, i, "version and value disagree");
                        last = version;
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        // The value carries its own version number.
                        let version = m.put_with(|version| (version, version * 3));
                        assert!(version > 0);
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
        assert_eq!(m.get_versioned().0, 40_000);
    }
}
