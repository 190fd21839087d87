//! A bounds-checked wrapper around `gemm::gemm` for strided f32 matrices.

/// A read-only strided view: element (r, c) is `data[r * row_stride + c * col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// Row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of this view (no copy).
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

/// Smallest slice length that holds every element of a strided `rows x cols` view.
fn extent(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * row_stride + (cols - 1) * col_stride + 1
    }
}

/// `dst = lhs @ rhs` (or `dst += lhs @ rhs` when `accumulate`), `dst` row-major `m x n`.
///
/// Single-threaded: callers parallelise over independent products with rayon.
/// Panics when shapes disagree or a view reaches past its slice (a bug in the caller, not bad input).
pub(crate) fn matmul_into(dst: &mut [f32], lhs: MatRef<'_>, rhs: MatRef<'_>, accumulate: bool) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "matmul inner dimensions differ");
    assert_eq!(dst.len(), m * n, "matmul destination has the wrong size");
    assert!(lhs.data.len() >= extent(m, k, lhs.row_stride, lhs.col_stride));
    assert!(rhs.data.len() >= extent(k, n, rhs.row_stride, rhs.col_stride));
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return;
    }
    // SAFETY: the asserts above prove that every element gemm reads through `lhs` and `rhs` (indices
    // r * row_stride + c * col_stride for r < rows, c < cols) lies inside the borrowed slices, and that
    // `dst` holds exactly the m x n row-major elements written. `dst` is a unique borrow, so it cannot
    // alias the shared `lhs`/`rhs` borrows. Strides fit in isize because they index live allocations.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product_with_transposed_operand() {
        let a: Vec<f32> = (0..6).map(|v| v as f32).collect(); // 2x3
        let b: Vec<f32> = (0..12).map(|v| (v as f32) * 0.5 - 2.0).collect(); // 4x3, used transposed
        let mut dst = vec![1.0; 8];
        matmul_into(
            &mut dst,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&b, 4, 3).t(),
            true,
        );
        for r in 0..2 {
            for c in 0..4 {
                let want: f32 = 1.0 + (0..3).map(|i| a[r * 3 + i] * b[c * 3 + i]).sum::<f32>();
                assert!((dst[r * 4 + c] - want).abs() < 1e-5);
            }
        }
    }
}
