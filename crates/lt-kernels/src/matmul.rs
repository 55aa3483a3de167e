//! Matrix products over strided views of slices: on AVX-512 CPUs this crate's own kernels
//! (`sgemm`) for row-major results, elsewhere the `gemm` crate's cache-blocked micro-kernels (the
//! one place this crate calls into `gemm`).

use std::mem::MaybeUninit;

use gemm::Parallelism;

use crate::sgemm::{Im2col, Im2colT, Left, PackedA};
use rayon::prelude::*;

/// A row-major matrix view for [`matmul`]: pointer, row stride, column stride.
#[derive(Clone, Copy)]
pub(crate) struct View {
    pub(crate) ptr: *const f32,
    pub(crate) rs: isize,
    pub(crate) cs: isize,
}

/// How [`matmul`] lays out its m × n result.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Order {
    RowMajor,
    /// The transpose stored row-major: element (i, j) at `j·m + i`. The `gemm` crate's
    /// micro-kernels run 2-3x faster on it when m is small (16-64 rows: ResNet-20's layers).
    ColumnMajor,
}

/// `dst (m × n) = [dst +] a (m × k) · b (k × n)`, single-threaded.
#[allow(clippy::too_many_arguments, reason = "a GEMM's sizes, operands and modes")]
pub(crate) fn matmul(dst: &mut [f32], order: Order, m: usize, n: usize, k: usize, a: View, b: View, accumulate: bool) {
    assert!(dst.len() >= m * n);
    // SAFETY: `dst` holds the m × n values; `a` and `b` are the callers' views of live slices.
    unsafe { gemm_raw(dst.as_mut_ptr(), order, m, n, k, a, b, accumulate, Parallelism::None) }
}

/// `dst (m × n, row-major) = a (m × k) · b (k × n)` into memory not yet written, its rows split
/// among the rayon pool's threads when the product is large enough to pay for them (the linear
/// layers, which are one GEMM each rather than one per image).
pub(crate) fn matmul_parallel(dst: &mut [MaybeUninit<f32>], m: usize, n: usize, k: usize, a: View, b: View) {
    assert!(dst.len() >= m * n);
    let threads = if m * n * k >= PARALLEL_WORK { rayon::current_num_threads().clamp(1, m.max(1)) } else { 1 };
    let rows = m.div_ceil(threads).max(1);
    let (a, b) = (SendView(a), SendView(b));
    dst[..m * n].par_chunks_mut(rows * n.max(1)).enumerate().for_each(|(i, block)| {
        let (a, b) = (a.get(), b.get());
        let first = (i * rows) as isize;
        let a = View { ptr: a.ptr.wrapping_offset(first * a.rs), ..a };
        // SAFETY: `block` holds the next `block.len() / n` rows of dst; `a` points at the same
        // rows of the caller's live left operand; gemm never reads dst with `accumulate = false`.
        unsafe {
            gemm_raw(
                block.as_mut_ptr().cast(),
                Order::RowMajor,
                block.len() / n.max(1),
                n,
                k,
                a,
                b,
                false,
                Parallelism::None,
            )
        }
    });
}

/// A [`View`] shared with the pool's threads, which only read through it.
#[derive(Clone, Copy)]
struct SendView(View);
// SAFETY: the view points into a slice that the caller keeps borrowed, read-only, for the
// whole parallel call.
unsafe impl Send for SendView {}
// SAFETY: as above.
unsafe impl Sync for SendView {}

impl SendView {
    /// The view (a method, so that closures capture the whole `SendView`).
    fn get(self) -> View {
        self.0
    }
}

/// Multiply-adds below which one thread does a product alone (LeNet's training GEMMs,
/// 60 × 300 × 784 = 14M, gain from two; its 60 × 10 × 100 output layer does not).
const PARALLEL_WORK: usize = 1 << 20;

/// `dst (m × n, row-major) = a (m × k) · b (k × n)` into memory not yet written: `gemm` with
/// `read_dst = false` only writes `dst` (alpha is set to zero and never applied to it).
pub(crate) fn matmul_into(dst: &mut [MaybeUninit<f32>], m: usize, n: usize, k: usize, a: View, b: View) {
    assert!(dst.len() >= m * n);
    // SAFETY: as in `matmul`; with `accumulate = false` gemm never reads `dst`.
    unsafe { gemm_raw(dst.as_mut_ptr().cast(), Order::RowMajor, m, n, k, a, b, false, Parallelism::None) }
}

/// `dst (m × n, row-major) = a (m × k) · b` into memory not yet written, with `a` packed before
/// and b a convolution's im2col matrix that this crate's AVX-512 GEMM packs from the images. Only
/// where `sgemm::implicit_available()` (a panic otherwise: a caller's bug).
pub(crate) fn matmul_im2col(dst: &mut [MaybeUninit<f32>], m: usize, n: usize, k: usize, a: &PackedA, b: &Im2col) {
    assert!(
        dst.len() >= m * n && crate::sgemm::implicit_available(),
        "matmul_im2col: called where the AVX-512 GEMM does not run"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512 (`implicit_available`); `dst` holds m × n values, which
    // gemm_nn_from only writes (accumulate = false); `b` covers the k × n matrix of its images;
    // gemm_nn_from checks `a`'s sizes.
    unsafe {
        crate::sgemm::gemm_nn_from(m, n, k, Left::Packed(a), b, dst.as_mut_ptr().cast(), n, false)
    }
}

/// `dst (m × n, row-major) = [dst +] a (m × k) · bᵀ` with b a convolution's im2col matrix (n × k,
/// its inner dimension the pixels of a group of images) that this crate's AVX-512 GEMM packs from
/// the images: the weight gradient `dW = dy · colᵀ`. Only where `sgemm::implicit_available()`.
pub(crate) fn matmul_im2col_t(dst: &mut [f32], m: usize, n: usize, k: usize, a: View, b: &Im2colT, accumulate: bool) {
    assert!(
        dst.len() >= m * n && crate::sgemm::implicit_available(),
        "matmul_im2col_t: called where the AVX-512 GEMM does not run"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512 (`implicit_available`); `dst` holds m × n values; `a` is the
    // caller's m × k view; `b` covers the images of k pixels.
    unsafe {
        crate::sgemm::gemm_nn_from(m, n, k, Left::View(a), b, dst.as_mut_ptr(), n, accumulate)
    }
}

/// The m × k matrix `a` packed for [`matmul_im2col`].
pub(crate) fn pack_left(m: usize, k: usize, a: &[f32]) -> PackedA {
    assert!(a.len() >= m * k);
    // SAFETY: `a` holds the m × k matrix, row-major.
    unsafe { PackedA::new(m, k, row_major(a, k)) }
}

/// # Safety
/// `dst` must be valid for writes (and, with `accumulate`, reads) of m × n values in `order`;
/// `a` and `b` must point to live m × k and k × n matrices at their strides.
#[allow(clippy::too_many_arguments, reason = "a GEMM's sizes, operands and modes")]
unsafe fn gemm_raw(
    dst: *mut f32,
    order: Order,
    m: usize,
    n: usize,
    k: usize,
    a: View,
    b: View,
    accumulate: bool,
    parallelism: Parallelism,
) {
    #[cfg(target_arch = "x86_64")]
    if order == Order::RowMajor {
        // SAFETY: the CPU has AVX-512 (`nn_for`, `nt_for`); the rest is this function's contract.
        unsafe {
            if b.cs == 1 && crate::sgemm::nn_for(m) {
                return crate::sgemm::gemm_nn(m, n, k, a, b, dst, n, accumulate);
            }
            if b.rs == 1 && a.cs == 1 && crate::sgemm::nt_for(m) {
                let bt = View { ptr: b.ptr, rs: b.cs, cs: 1 };
                return crate::sgemm::gemm_nt(m, n, k, a, bt, dst, n, accumulate);
            }
        }
    }
    let (dst_rs, dst_cs) = match order {
        Order::RowMajor => (n as isize, 1),
        Order::ColumnMajor => (1, m as isize),
    };
    // SAFETY: the caller's contract (above) is what gemm requires.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            accumulate,
            a.ptr,
            a.cs,
            a.rs,
            b.ptr,
            b.cs,
            b.rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

pub(crate) fn row_major(data: &[f32], cols: usize) -> View {
    View { ptr: data.as_ptr(), rs: cols as isize, cs: 1 }
}

pub(crate) fn transposed(data: &[f32], rows_of_original: usize, cols_of_original: usize) -> View {
    // The transpose of a row-major (rows × cols) matrix: element (i, j) is original (j, i).
    let _ = rows_of_original;
    View { ptr: data.as_ptr(), rs: 1, cs: cols_of_original as isize }
}
