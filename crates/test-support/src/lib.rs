//! # test-support
//!
//! Helpers the workspace's tests and benchmarks share, so that each exists once.
//!
//! For: dev-dependencies only. Not for: any shipped crate (nothing here is checked for use
//! outside tests, and the checkpoints have random weights).
//!
//! - [`alloc`]: a counting global allocator, for "this hot path does not allocate" tests;
//! - `checkpoint` (feature `checkpoint`): small random-weight checkpoints in the real
//!   safetensors format, for tests that need a policy but not a trained one;
//! - [`npy`]: NumPy `.npy` files written byte by byte, for the dataset readers' tests.
//!
//! ```
//! use test_support::alloc::{CountingAllocator, allocations};
//! // In a test binary: #[global_allocator] static GLOBAL: CountingAllocator = CountingAllocator;
//! let before = allocations();
//! let after = allocations();
//! assert!(after >= before);
//! ```

pub mod alloc;
#[cfg(feature = "checkpoint")]
pub mod checkpoint;
pub mod npy;
