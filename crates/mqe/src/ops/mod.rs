//! Fast CPU kernels for the MQE networks, as candle custom ops with backward passes.
//!
//! candle 0.11's CPU `conv2d` backward is a direct loop (seconds per IMPALA step), its
//! `max_pool2d` has no backward when kernel != stride, and the MRN distance over all pairs of a
//! batch would materialise a `[E, B, M, D]` tensor. These ops replace the three hot spots:
//!
//! - [`conv2d_same`]: stride-1 "same" convolution through im2col / col2im on `gemm`,
//!   parallel over the batch with rayon.
//! - [`max_pool_3x3_s2_same`]: TensorFlow/Flax "SAME" 3x3 stride-2 max pooling, gradient to the argmax.
//! - [`mrn_pairwise`] and [`mrn_matched`]: the MRN quasimetric (docs/mqe.md section 3), fused so that
//!   no `[.., D]` pairwise difference is ever stored.
//!
//! Each op has two implementations with the same numbers:
//!
//! - the fast path: f32 tensors on the CPU, of any layout (made contiguous first), hand-written
//!   kernels with hand-written backward passes;
//! - the portable path: a composition of candle ops whose gradients come from candle's autograd.
//!   It runs on every other device and dtype (CUDA included), and on the CPU when forced with
//!   [`force_portable_ops`], [`with_portable_ops`] or `MQE_PORTABLE_OPS=1`, which is how the CPU
//!   tests check the code a GPU runs. It keeps the fast path's rules: the pool's gradient goes
//!   to the first maximum of a window, and the MRN over all pairs is computed in chunks of the
//!   second batch, so that memory grows with `E * B * chunk * D`, not `E * B * M * D`.
//!
//! Gradients flow through `Tensor::backward()` to every input, bias included. The fast backward
//! passes are first-order only: the gradient tensors they produce carry no graph of their own.
//!
//! Not for: strided or dilated convolutions, even kernels, second-order gradients.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! let dev = Device::Cpu;
//! let x = Tensor::randn(0f32, 1., (2, 3, 8, 8), &dev)?;
//! let w = Tensor::randn(0f32, 0.1, (4, 3, 3, 3), &dev)?;
//! let b = Tensor::zeros(4, candle_core::DType::F32, &dev)?;
//! let y = mqe::ops::conv2d_same(&x, &w, &b)?;
//! let p = mqe::ops::max_pool_3x3_s2_same(&y)?;
//! assert_eq!(p.dims(), &[2, 4, 4, 4]);
//! let lat_x = Tensor::randn(0f32, 1., (2, 5, 512), &dev)?;
//! let lat_y = Tensor::randn(0f32, 1., (2, 7, 512), &dev)?;
//! let d = mqe::ops::mrn_pairwise(&lat_x, &lat_y, 8)?;
//! assert_eq!(d.dims(), &[2, 5, 7]);
//! # Ok::<(), candle_core::Error>(())
//! ```

mod conv;
mod matmul;
mod mrn;
mod mrn_kernel;
mod pool;

pub use conv::conv2d_same;
pub use mrn::{
    MRN_CHUNK_ELEMENTS, mrn_distance_broadcast, mrn_matched, mrn_pairwise, mrn_pairwise_chunked,
};
pub use pool::max_pool_3x3_s2_same;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Device, Layout, Tensor};
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

/// What is wrong with the arguments of one of the ops.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("{op}: {what}")]
    BadShape { op: &'static str, what: String },
    #[error("{op}: expected {expected} storage, got {got:?}")]
    BadStorage {
        op: &'static str,
        expected: &'static str,
        got: DType,
    },
    #[error("{op}: input is not contiguous (internal: the public wrapper should have copied it)")]
    NotContiguous { op: &'static str },
}

impl From<OpsError> for candle_core::Error {
    fn from(err: OpsError) -> Self {
        candle_core::Error::wrap(err)
    }
}

pub(crate) fn bad_shape(op: &'static str, what: String) -> candle_core::Error {
    OpsError::BadShape { op, what }.into()
}

/// The contiguous f32 data a layout points at.
pub(crate) fn f32_slice<'a>(
    op: &'static str,
    storage: &'a CpuStorage,
    layout: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        return Err(OpsError::BadStorage {
            op,
            expected: "f32",
            got: storage.dtype(),
        }
        .into());
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or(OpsError::NotContiguous { op })?;
    Ok(&data[start..end])
}

/// How many items of `n` each parallel task takes: about four tasks per rayon thread, so that a
/// busy core does not hold the others up, while per-task scratch buffers stay few.
pub(crate) fn items_per_task(n: usize) -> usize {
    let tasks = 4 * rayon::current_num_threads();
    n.div_ceil(tasks).max(1)
}

/// Environment variable that forces the portable path on the CPU when set to `1`, `true` or `yes`.
pub const PORTABLE_OPS_ENV: &str = "MQE_PORTABLE_OPS";

/// Process-wide switch: 0 = not yet read from the environment, 1 = fast, 2 = portable.
static PROCESS_PATH: AtomicU8 = AtomicU8::new(0);

thread_local! {
    /// A scoped override for this thread ([`with_portable_ops`]), on top of the process switch.
    static THREAD_FORCES_PORTABLE: Cell<bool> = const { Cell::new(false) };
}

/// Forces (or stops forcing) the portable implementation of every op in this process, on every
/// device. Overrides [`PORTABLE_OPS_ENV`].
pub fn force_portable_ops(on: bool) {
    PROCESS_PATH.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// Runs `f` with the portable implementation forced on this thread only (the graph is built on
/// the calling thread, so this covers a whole train step). Tests compare both paths this way in
/// one process without disturbing each other.
pub fn with_portable_ops<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_FORCES_PORTABLE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(THREAD_FORCES_PORTABLE.with(|c| c.replace(true)));
    f()
}

/// Whether the portable implementation is forced here: by [`with_portable_ops`] on this thread,
/// by [`force_portable_ops`], or by [`PORTABLE_OPS_ENV`].
pub fn portable_ops_forced() -> bool {
    if THREAD_FORCES_PORTABLE.with(Cell::get) {
        return true;
    }
    match PROCESS_PATH.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var(PORTABLE_OPS_ENV)
                .is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
            // A racing force_portable_ops wins: only replace "unread".
            let _ = PROCESS_PATH.compare_exchange(
                0,
                if on { 2 } else { 1 },
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            PROCESS_PATH.load(Ordering::Relaxed) == 2
        }
        state => state == 2,
    }
}

/// max |got - want| / max |want| over all elements (the absolute difference when `want` is all
/// zeros), computed on the CPU: how the portable path, or another device, is compared with the
/// fast kernels. NaN anywhere gives NaN.
pub fn max_relative_difference(got: &Tensor, want: &Tensor) -> candle_core::Result<f32> {
    if got.dims() != want.dims() {
        return Err(bad_shape(
            "max_relative_difference",
            format!("shapes differ: {:?} and {:?}", got.dims(), want.dims()),
        ));
    }
    let flat = |t: &Tensor| -> candle_core::Result<Vec<f32>> {
        t.to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()
    };
    let (got, want) = (flat(got)?, flat(want)?);
    let mut scale = 0f32;
    let mut worst = 0f32;
    for (a, b) in got.iter().zip(&want) {
        if a.is_nan() || b.is_nan() {
            return Ok(f32::NAN);
        }
        scale = scale.max(b.abs());
        worst = worst.max((a - b).abs());
    }
    Ok(if scale > 0.0 { worst / scale } else { worst })
}

/// Whether the fast CPU f32 kernels apply to all of these tensors: f32, on the CPU, and the
/// portable path not forced. Every other case takes the portable composition of candle ops,
/// which is the code a GPU runs.
pub(crate) fn fast_path(tensors: &[&Tensor]) -> bool {
    !portable_ops_forced()
        && tensors
            .iter()
            .all(|t| t.dtype() == DType::F32 && matches!(t.device(), Device::Cpu))
}
