//! Process-wide CPU threading choice for candle.
//!
//! candle's elementwise thread pool spins while it waits for work. On a machine with few cores it
//! competes with the rayon pool that the matmuls and this crate's kernels use: a state train step
//! on 2 cores measured 0.50 s with it and 0.25-0.33 s with elementwise ops run inline
//! (`CANDLE_NUM_THREADS=1`; matmuls stay parallel). candle reads the variable once, on first use.

/// The variable candle reads.
pub const CANDLE_THREADS_ENV: &str = "CANDLE_NUM_THREADS";

/// Runs candle's elementwise ops inline unless the user chose otherwise with
/// `CANDLE_NUM_THREADS`.
///
/// # Safety
/// Writes the process environment: call it before the process starts any other thread (first
/// thing in `main`), so that no thread can read or write the environment at the same time.
pub unsafe fn prefer_inline_elementwise_ops() {
    if std::env::var_os(CANDLE_THREADS_ENV).is_none() {
        // SAFETY: the caller guarantees that no other thread exists yet.
        unsafe { std::env::set_var(CANDLE_THREADS_ENV, "1") };
    }
}
