//! 2-D convolution (NCHW input, KCRS weight, square stride and zero padding, no dilation or groups).
//!
//! Per image n, with `col` the (C·R·S) × (P·Q) im2col matrix of the input:
//! - forward: `y_n = W · col_n` (K × PQ);
//! - backward-data: `dcol_n = Wᵀ · dy_n`, scattered back (col2im) into `dx_n`;
//! - backward-weight: `dW = Σ_n dy_n · col_nᵀ`, each thread summing its share of the batch.
//!
//! 1×1 convolutions with stride 1 and no padding skip im2col: `col_n` is the input image itself.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::simd::{add_into, written};
use crate::slices::contiguous;

/// The convolution of `x` (N, C, H, W) with `w` (K, C, R, S): stride `stride`, zero padding
/// `padding` on every side; differentiable in both arguments.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return x.conv2d(w, padding, stride, 1, 1);
    }
    let geom = Geometry::new(x.dims(), w.dims(), stride, padding)?;
    x.contiguous()?.apply_op2(&w.contiguous()?, Conv { geom })
}

/// Sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    r: usize,
    s: usize,
    p: usize,
    q: usize,
    stride: usize,
    pad: usize,
}

impl Geometry {
    fn new(x: &[usize], w: &[usize], stride: usize, pad: usize) -> Result<Self> {
        let (&[n, c, h, wd], &[k, c2, r, s]) = (x, w) else {
            candle_core::bail!("conv2d: input {x:?} and weight {w:?} must both have 4 dimensions")
        };
        if c != c2 {
            candle_core::bail!("conv2d: input has {c} channels, the weight expects {c2}")
        }
        if stride == 0 || h + 2 * pad < r || wd + 2 * pad < s {
            candle_core::bail!("conv2d: a {r}x{s} kernel with padding {pad} does not fit a {h}x{wd} input")
        }
        let p = (h + 2 * pad - r) / stride + 1;
        let q = (wd + 2 * pad - s) / stride + 1;
        Ok(Geometry { n, c, h, w: wd, k, r, s, p, q, stride, pad })
    }

    fn crs(&self) -> usize {
        self.c * self.r * self.s
    }

    fn pq(&self) -> usize {
        self.p * self.q
    }

    fn image(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Whether the input image is its own im2col matrix.
    fn direct(&self) -> bool {
        self.r == 1 && self.s == 1 && self.stride == 1 && self.pad == 0
    }

    /// For stride 1 and kernel column `s`: the output columns `lo..hi` whose input column
    /// `ow + s − pad` lies inside the image.
    fn valid(&self, s: usize) -> (usize, usize) {
        let lo = self.pad.saturating_sub(s).min(self.q);
        let hi = (self.w + self.pad).saturating_sub(s).min(self.q).max(lo);
        (lo, hi)
    }

    /// im2col of one image into `col` ((C·R·S) × (P·Q), row-major).
    fn im2col(&self, x: &[f32], col: &mut [f32]) {
        let (pq, q) = (self.pq(), self.q);
        for c in 0..self.c {
            let plane = &x[c * self.h * self.w..(c + 1) * self.h * self.w];
            for r in 0..self.r {
                for s in 0..self.s {
                    let row = &mut col[((c * self.r + r) * self.s + s) * pq..][..pq];
                    for oh in 0..self.p {
                        let ih = (oh * self.stride + r) as isize - self.pad as isize;
                        let out = &mut row[oh * q..(oh + 1) * q];
                        if ih < 0 || ih >= self.h as isize {
                            out.fill(0.0);
                            continue;
                        }
                        let line = &plane[ih as usize * self.w..(ih as usize + 1) * self.w];
                        if self.stride == 1 {
                            // iw = ow + s - pad: one contiguous run of the input line, zeros around it.
                            let (lo, hi) = self.valid(s);
                            out[..lo].fill(0.0);
                            out[hi..].fill(0.0);
                            let start = lo + s - self.pad;
                            out[lo..hi].copy_from_slice(&line[start..start + hi - lo]);
                            continue;
                        }
                        for (ow, o) in out.iter_mut().enumerate() {
                            let iw = (ow * self.stride + s) as isize - self.pad as isize;
                            *o = if iw >= 0 && iw < self.w as isize { line[iw as usize] } else { 0.0 };
                        }
                    }
                }
            }
        }
    }

    /// col2im: adds `col` ((C·R·S) × (P·Q)) into one image `dx`.
    fn col2im(&self, col: &[f32], dx: &mut [f32]) {
        let (pq, q) = (self.pq(), self.q);
        for c in 0..self.c {
            let plane = &mut dx[c * self.h * self.w..(c + 1) * self.h * self.w];
            for r in 0..self.r {
                for s in 0..self.s {
                    let row = &col[((c * self.r + r) * self.s + s) * pq..][..pq];
                    for oh in 0..self.p {
                        let ih = (oh * self.stride + r) as isize - self.pad as isize;
                        if ih < 0 || ih >= self.h as isize {
                            continue;
                        }
                        let line = &mut plane[ih as usize * self.w..(ih as usize + 1) * self.w];
                        if self.stride == 1 {
                            let (lo, hi) = self.valid(s);
                            let start = lo + s - self.pad;
                            let src = &row[oh * q + lo..oh * q + hi];
                            add_into(&mut line[start..start + hi - lo], src);
                            continue;
                        }
                        for (ow, v) in row[oh * q..(oh + 1) * q].iter().enumerate() {
                            let iw = (ow * self.stride + s) as isize - self.pad as isize;
                            if iw >= 0 && iw < self.w as isize {
                                line[iw as usize] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A row-major matrix view for [`matmul`]: pointer, row stride, column stride.
#[derive(Clone, Copy)]
struct View {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

/// `dst (m × n, row-major) = [dst +] a (m × k) · b (k × n)`, single-threaded.
fn matmul(dst: &mut [f32], m: usize, n: usize, k: usize, a: View, b: View, accumulate: bool) {
    assert!(dst.len() >= m * n);
    // SAFETY: `dst` holds the m × n values; `a` and `b` are the callers' views of live slices.
    unsafe { gemm_raw(dst.as_mut_ptr(), m, n, k, a, b, accumulate) }
}

/// `dst (m × n, row-major) = a (m × k) · b (k × n)` into memory not yet written: `gemm` with
/// `read_dst = false` only writes `dst` (alpha is set to zero and never applied to it).
fn matmul_into(dst: &mut [MaybeUninit<f32>], m: usize, n: usize, k: usize, a: View, b: View) {
    assert!(dst.len() >= m * n);
    // SAFETY: as in `matmul`; with `accumulate = false` gemm never reads `dst`.
    unsafe { gemm_raw(dst.as_mut_ptr().cast(), m, n, k, a, b, false) }
}

/// # Safety
/// `dst` must be valid for writes (and, with `accumulate`, reads) of m × n values with row stride
/// n; `a` and `b` must point to live m × k and k × n matrices at their strides.
unsafe fn gemm_raw(dst: *mut f32, m: usize, n: usize, k: usize, a: View, b: View, accumulate: bool) {
    // SAFETY: the caller's contract (above) is what gemm requires.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            n as isize,
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
            gemm::Parallelism::None,
        )
    }
}

fn row_major(data: &[f32], cols: usize) -> View {
    View { ptr: data.as_ptr(), rs: cols as isize, cs: 1 }
}

fn transposed(data: &[f32], rows_of_original: usize, cols_of_original: usize) -> View {
    // The transpose of a row-major (rows × cols) matrix: element (i, j) is original (j, i).
    let _ = rows_of_original;
    View { ptr: data.as_ptr(), rs: 1, cs: cols_of_original as isize }
}

/// Splits the batch into about one chunk per thread.
fn images_per_chunk(n: usize) -> usize {
    n.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

struct Conv {
    geom: Geometry,
}

impl CustomOp2 for Conv {
    fn name(&self) -> &'static str {
        "lt-conv2d"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        let (x, w) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let (crs, pq) = (g.crs(), g.pq());
        let chunk = images_per_chunk(g.n);
        // SAFETY: the images' (K × P·Q) blocks cover the output and `matmul_into` writes each whole.
        let y = unsafe {
            written(g.n * g.k * pq, |y| {
                y.par_chunks_mut(chunk * g.k * pq).zip(x.par_chunks(chunk * g.image())).for_each(|(ys, xs)| {
                    let mut col = if g.direct() { Vec::new() } else { vec![0f32; crs * pq] };
                    for (yn, xn) in ys.chunks_mut(g.k * pq).zip(xs.chunks(g.image())) {
                        let b = if g.direct() {
                            row_major(xn, pq)
                        } else {
                            g.im2col(xn, &mut col);
                            row_major(&col, pq)
                        };
                        matmul_into(yn, g.k, pq, crs, row_major(w, crs), b);
                    }
                })
            })
        };
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.k, g.p, g.q))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = dy.apply_op2_no_bwd(w, &BackwardData { geom: self.geom })?;
        let dw = x.apply_op2_no_bwd(&dy, &BackwardWeight { geom: self.geom })?;
        Ok((Some(dx), Some(dw)))
    }
}

/// dx from (dy, w).
struct BackwardData {
    geom: Geometry,
}

impl CustomOp2 for BackwardData {
    fn name(&self) -> &'static str {
        "lt-conv2d-backward-data"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        let (dy, w) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let (crs, pq) = (g.crs(), g.pq());
        let mut dx = vec![0f32; g.n * g.image()];
        let chunk = images_per_chunk(g.n);
        dx.par_chunks_mut(chunk * g.image()).zip(dy.par_chunks(chunk * g.k * pq)).for_each(|(dxs, dys)| {
            let mut col = if g.direct() { Vec::new() } else { vec![0f32; crs * pq] };
            for (dxn, dyn_) in dxs.chunks_mut(g.image()).zip(dys.chunks(g.k * pq)) {
                let wt = transposed(w, g.k, crs);
                if g.direct() {
                    matmul(dxn, crs, pq, g.k, wt, row_major(dyn_, pq), false);
                } else {
                    matmul(&mut col, crs, pq, g.k, wt, row_major(dyn_, pq), false);
                    g.col2im(&col, dxn);
                }
            }
        });
        Ok((CpuStorage::F32(dx), Shape::from((g.n, g.c, g.h, g.w))))
    }
}

/// dw from (x, dy).
struct BackwardWeight {
    geom: Geometry,
}

impl CustomOp2 for BackwardWeight {
    fn name(&self) -> &'static str {
        "lt-conv2d-backward-weight"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        let (x, dy) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let (crs, pq) = (g.crs(), g.pq());
        let chunk = images_per_chunk(g.n);
        let partials: Vec<Vec<f32>> = x
            .par_chunks(chunk * g.image())
            .zip(dy.par_chunks(chunk * g.k * pq))
            .map(|(xs, dys)| {
                let mut dw = vec![0f32; g.k * crs];
                let mut col = if g.direct() { Vec::new() } else { vec![0f32; crs * pq] };
                for (i, (xn, dyn_)) in xs.chunks(g.image()).zip(dys.chunks(g.k * pq)).enumerate() {
                    let colt = if g.direct() {
                        transposed(xn, crs, pq)
                    } else {
                        g.im2col(xn, &mut col);
                        transposed(&col, crs, pq)
                    };
                    matmul(&mut dw, g.k, crs, pq, row_major(dyn_, pq), colt, i > 0);
                }
                dw
            })
            .collect();
        let mut dw = vec![0f32; g.k * crs];
        for p in &partials {
            dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        Ok((CpuStorage::F32(dw), Shape::from((g.k, g.c, g.r, g.s))))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use candle_core::{Device, Var};
    use proptest::prelude::*;

    use super::*;
    use crate::testing::{max_diff, rand};

    fn scale(t: &Tensor) -> f32 {
        t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap().max(1.0)
    }

    /// Forward and both gradients against candle's reference conv2d.
    #[allow(clippy::too_many_arguments, reason = "one argument per convolution size")]
    fn check(n: usize, c: usize, h: usize, w: usize, k: usize, r: usize, stride: usize, pad: usize, seed: u64) {
        let x = Var::from_tensor(&rand(&[n, c, h, w], seed)).unwrap();
        let wt = Var::from_tensor(&rand(&[k, c, r, r], seed + 1)).unwrap();
        let ours = conv2d(x.as_tensor(), wt.as_tensor(), stride, pad).unwrap();
        let reference = x.as_tensor().conv2d(wt.as_tensor(), pad, stride, 1, 1).unwrap();
        assert_eq!(ours.dims(), reference.dims());
        let tol = 1e-4;
        assert!(max_diff(&ours, &reference) <= tol * scale(&reference), "forward");
        // A random linear function of the output, so every output element gets its own gradient.
        let probe = rand(ours.dims(), seed + 2);
        let g1 = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        // candle 0.11.1's own conv2d backward fails when a strided kernel leaves input rows unused
        // ((h + 2·pad − r) not a multiple of the stride); a direct f64 loop is the reference there.
        let (dx_ref, dw_ref) = if (h + 2 * pad - r).is_multiple_of(stride) && (w + 2 * pad - r).is_multiple_of(stride) {
            let g2 = (&reference * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            (g2.get(x.as_tensor()).unwrap().clone(), g2.get(wt.as_tensor()).unwrap().clone())
        } else {
            naive_gradients(x.as_tensor(), wt.as_tensor(), &probe, stride, pad)
        };
        for (name, v, b) in [("input", &x, &dx_ref), ("weight", &wt, &dw_ref)] {
            let a = g1.get(v.as_tensor()).unwrap();
            assert!(max_diff(a, b) <= tol * scale(b), "{name} gradient: {} vs scale {}", max_diff(a, b), scale(b));
        }
    }

    /// dL/dx and dL/dw of L = Σ probe ⊙ conv(x, w), by direct loops in f64.
    fn naive_gradients(x: &Tensor, w: &Tensor, probe: &Tensor, stride: usize, pad: usize) -> (Tensor, Tensor) {
        let g = Geometry::new(x.dims(), w.dims(), stride, pad).unwrap();
        let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let wv: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        let pv: Vec<f32> = probe.flatten_all().unwrap().to_vec1().unwrap();
        let (mut dx, mut dw) = (vec![0f64; xv.len()], vec![0f64; wv.len()]);
        for n in 0..g.n {
            for k in 0..g.k {
                for oh in 0..g.p {
                    for ow in 0..g.q {
                        let d = pv[((n * g.k + k) * g.p + oh) * g.q + ow] as f64;
                        for c in 0..g.c {
                            for r in 0..g.r {
                                for s in 0..g.s {
                                    let ih = (oh * stride + r) as isize - pad as isize;
                                    let iw = (ow * stride + s) as isize - pad as isize;
                                    if ih < 0 || iw < 0 || ih >= g.h as isize || iw >= g.w as isize {
                                        continue;
                                    }
                                    let xi = ((n * g.c + c) * g.h + ih as usize) * g.w + iw as usize;
                                    let wi = ((k * g.c + c) * g.r + r) * g.s + s;
                                    dx[xi] += d * wv[wi] as f64;
                                    dw[wi] += d * xv[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        let t = |v: Vec<f64>, dims: &[usize]| {
            Tensor::from_vec(v.into_iter().map(|x| x as f32).collect::<Vec<_>>(), dims, &Device::Cpu).unwrap()
        };
        (t(dx, x.dims()), t(dw, w.dims()))
    }

    #[test]
    fn resnet_shapes_match_candle() {
        check(4, 16, 32, 32, 16, 3, 1, 1, 1);
        check(3, 16, 32, 32, 32, 3, 2, 1, 2);
        check(3, 16, 32, 32, 32, 1, 2, 0, 3);
        check(2, 8, 8, 8, 4, 1, 1, 0, 4);
        check(1, 3, 7, 5, 2, 3, 1, 0, 5);
    }

    #[test]
    fn a_kernel_that_does_not_fit_is_an_error() {
        let x = Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((1, 1, 5, 5), DType::F32, &Device::Cpu).unwrap();
        let e = conv2d(&x, &w, 1, 0).unwrap_err().to_string();
        assert!(e.contains("does not fit a 2x2 input"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn random_shapes_match_candle(
            n in 1usize..5, c in 1usize..6, h in 3usize..12, w in 3usize..12, k in 1usize..7,
            r in prop::sample::select(vec![1usize, 3, 5]), stride in 1usize..3, pad in 0usize..3, seed in 0u64..1000,
        ) {
            prop_assume!(h + 2 * pad >= r && w + 2 * pad >= r);
            check(n, c, h, w, k, r, stride, pad, seed);
        }
    }
}
