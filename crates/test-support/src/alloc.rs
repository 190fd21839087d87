//! A global allocator that counts the allocations made on each thread.
//!
//! A test binary installs it with
//! `#[global_allocator] static GLOBAL: CountingAllocator = CountingAllocator;` and compares
//! [`allocations`] before and after the code under test, on the thread that runs it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to the system allocator and counts `alloc` and `realloc` calls per thread.
pub struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call forwards to the system allocator unchanged; the thread-local counter is
// const-initialised, so touching it never allocates (no recursion into the allocator).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` or `System.realloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made so far on the calling thread (0 unless [`CountingAllocator`] is the
/// global allocator of the binary).
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}
