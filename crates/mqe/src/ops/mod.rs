//! Fast CPU kernels for the MQE networks, as candle custom ops with backward passes.
//!
//! candle 0.11's CPU `conv2d` backward is a direct loop (seconds per IMPALA step), its
//! `max_pool2d` has no backward when kernel != stride, and the MRN distance over all pairs of a
//! batch would materialise a `[E, B, M, D]` tensor. These ops replace the three hot spots:
//!
//! - [`conv2d_same`]: stride-1 "same" convolution through im2col / col2im on `gemm`,
//!   parallel over the batch with rayon.
//! - [`max_pool_3x3_s2_same`]: TensorFlow/Flax "SAME" 3x3 stride-2 max pooling, gradient to the argmax.
//! - [`mrn_pairwise`] and [`mrn_matched`]: the MRN quasimetric (mqe.md section 3), fused so that
//!   no `[.., D]` pairwise difference is ever stored.
//!
//! The fast paths take f32 tensors on the CPU, of any layout (they are made contiguous first). Tensors on other devices or of other
//! dtypes go through a composition of candle's own ops (there the pool has no backward pass).
//! Gradients flow through `Tensor::backward()` to every input, bias included. The backward passes are
//! first-order only: the gradient tensors they produce carry no graph of their own.
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
pub use mrn::{mrn_distance_broadcast, mrn_matched, mrn_pairwise};
pub use pool::max_pool_3x3_s2_same;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Device, Layout, Tensor};

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

/// Whether the fast CPU f32 kernels apply to all of these tensors.
pub(crate) fn fast_path(tensors: &[&Tensor]) -> bool {
    tensors
        .iter()
        .all(|t| t.dtype() == DType::F32 && matches!(t.device(), Device::Cpu))
}
