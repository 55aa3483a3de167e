//! 2-D convolution (NCHW input, KCRS weight, square stride and zero padding, no dilation or groups).
//!
//! With `col` the (C·R·S) × (P·Q) im2col matrix of an image, and images taken a group at a time
//! (enough of them that a GEMM has [`MIN_COLUMNS`] columns: one 32x32 image, 32 VGG-19 2x2 ones)
//! so that small late layers still make one well-shaped GEMM:
//! - forward: `y = W · col` (K × images·P·Q), copied into each image's K × P·Q block;
//! - backward-data: for stride 1, the forward convolution of `dy` with the weights transposed
//!   and rotated (inner dimension K·R·S, no scatter); otherwise `dcol = Wᵀ · dy`, scattered back
//!   (col2im) into `dx`;
//! - backward-weight: `dW = Σ dy · colᵀ`, each thread summing its share of the batch.
//!
//! Layers with few output channels (ResNet-20's 16 and 32) have their products computed
//! transposed, which the `gemm` crate's micro-kernels run 2-3x faster (see [`Order`]).
//! 1×1 convolutions with stride 1 and no padding skip im2col for a single image: `col` is the
//! image itself.
//!
//! On AVX-512 CPUs two shapes leave this scheme: images of at most 16 pixels go one product per
//! kernel tap (`taps`), and the weight gradient of 3x3 layers with 16, 32 or 64 output channels is
//! summed as outer products in registers (`outer`).

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::matmul::{Order, matmul, matmul_im2col, matmul_im2col_t, matmul_into, pack_left, row_major, transposed};
use crate::record::{apply2, apply3};
use crate::sgemm::{Im2col, Im2colT};
use crate::simd::{add_into, add_scalar, sum, written};
use crate::slices::{contiguous, with_slice};

#[cfg(target_arch = "x86_64")]
mod outer;
#[cfg(target_arch = "x86_64")]
mod taps;

/// The convolution of `x` (N, C, H, W) with `w` (K, C, R, S): stride `stride`, zero padding
/// `padding` on every side; differentiable in both arguments.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return x.conv2d(w, padding, stride, 1, 1);
    }
    let geom = Geometry::new(x.dims(), w.dims(), stride, padding)?;
    apply2(&x.contiguous()?, &w.contiguous()?, Conv { geom })
}

/// [`conv2d`] plus a per-channel bias `b` (K), added as the output is written and differentiated
/// in the same backward pass: no separate broadcast-add, no output-sized temporary.
pub fn conv2d_bias(x: &Tensor, w: &Tensor, b: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != DType::F32 || w.dtype() != DType::F32 || b.dtype() != DType::F32 {
        let y = x.conv2d(w, padding, stride, 1, 1)?;
        return y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?);
    }
    let geom = Geometry::new(x.dims(), w.dims(), stride, padding)?;
    if b.dims() != [geom.k] {
        candle_core::bail!("conv2d: bias of shape {:?} for {} output channels", b.dims(), geom.k)
    }
    apply3(&x.contiguous()?, &w.contiguous()?, &b.contiguous()?, Conv { geom })
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

    /// Images per GEMM: enough that one GEMM has at least [`MIN_COLUMNS`] output columns (the
    /// 2x2 and 4x4 layers of VGG-19 have 4 and 16 per image, far too few to amortize packing the
    /// weights), at most the thread's share of the batch.
    fn group(&self, chunk: usize) -> usize {
        min_columns().div_ceil(self.pq()).clamp(1, chunk.max(1))
    }

    /// Backward-data as a forward convolution: for stride 1, `dx` is the convolution of `dy` with
    /// the weights transposed (K ↔ C) and rotated by 180°, padded by `r − 1 − pad`. Its GEMM has
    /// an inner dimension of K·R·S instead of K and needs no col2im scatter.
    fn as_backward_data(&self) -> Option<Geometry> {
        (self.stride == 1 && self.r == self.s && self.pad < self.r && !self.direct()).then(|| Geometry {
            n: self.n,
            c: self.k,
            h: self.p,
            w: self.q,
            k: self.c,
            r: self.r,
            s: self.s,
            p: self.h,
            q: self.w,
            stride: 1,
            pad: self.r - 1 - self.pad,
        })
    }

    /// im2col of one image into the columns of `col` that start at its first element: row `i`
    /// of the (C·R·S) × (P·Q) matrix lands at `col[i * ld..][..P·Q]`.
    fn im2col(&self, x: &[f32], col: &mut [f32], ld: usize) {
        let (pq, q) = (self.pq(), self.q);
        for c in 0..self.c {
            let plane = &x[c * self.h * self.w..(c + 1) * self.h * self.w];
            for r in 0..self.r {
                for s in 0..self.s {
                    let row = &mut col[((c * self.r + r) * self.s + s) * ld..][..pq];
                    if self.stride == 1 && q == self.w {
                        self.shifted_plane(plane, r, s, row);
                        continue;
                    }
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

    /// One im2col row for stride 1 when output and input lines have the same length (3x3 with
    /// padding 1, ...): the row is the plane shifted by `(r − pad)·W + (s − pad)` elements, so the
    /// valid output lines are one contiguous copy; then the columns that fell off the left or
    /// right edge (and wrapped onto the neighbouring line) are zeroed.
    fn shifted_plane(&self, plane: &[f32], r: usize, s: usize, out: &mut [f32]) {
        let q = self.q;
        let first = self.pad.saturating_sub(r).min(self.p);
        let last = (self.h + self.pad).saturating_sub(r).min(self.p).max(first);
        let (lo, hi) = self.valid(s);
        out[..first * q].fill(0.0);
        out[last * q..].fill(0.0);
        if first == last || lo == hi {
            out[first * q..last * q].fill(0.0);
            return;
        }
        let (a, b) = (first * q + lo, (last - 1) * q + hi);
        let src = (first + r - self.pad) * self.w + lo + s - self.pad;
        out[a..b].copy_from_slice(&plane[src..src + (b - a)]);
        for line in out[first * q..last * q].chunks_exact_mut(q) {
            // Usually one element each side: a store, not a call to memset.
            match lo {
                0 => {}
                1 => line[0] = 0.0,
                _ => line[..lo].fill(0.0),
            }
            match q - hi {
                0 => {}
                1 => line[q - 1] = 0.0,
                _ => line[hi..].fill(0.0),
            }
        }
    }

    /// col2im: adds the columns of `col` that start at its first element (laid out as in
    /// [`Geometry::im2col`], row stride `ld`) into one image `dx`.
    fn col2im(&self, col: &[f32], ld: usize, dx: &mut [f32]) {
        let (pq, q) = (self.pq(), self.q);
        for c in 0..self.c {
            let plane = &mut dx[c * self.h * self.w..(c + 1) * self.h * self.w];
            for r in 0..self.r {
                for s in 0..self.s {
                    let row = &col[((c * self.r + r) * self.s + s) * ld..][..pq];
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

    /// im2col of a group of images side by side: `col` becomes the (C·R·S) × (images·P·Q) matrix
    /// whose columns `i·P·Q..` are image i's. Returns its number of columns.
    fn im2col_group(&self, xs: &[f32], col: &mut Vec<f32>) -> usize {
        let (pq, cols) = (self.pq(), xs.len() / self.image() * self.pq());
        col.resize(self.crs() * cols, 0.0);
        for (i, xn) in xs.chunks(self.image()).enumerate() {
            self.im2col(xn, &mut col[i * pq..], cols);
        }
        cols
    }

    /// The output gradients of a group of images side by side: `out` becomes the
    /// K × (images · P·Q) matrix whose columns `i·P·Q..` are image i's `dy`.
    fn gather_outputs(&self, dys: &[f32], out: &mut Vec<f32>) {
        let (pq, kpq) = (self.pq(), self.k * self.pq());
        let cols = dys.len() / kpq * pq;
        out.resize(self.k * cols, 0.0);
        for (i, dy) in dys.chunks(kpq).enumerate() {
            for k in 0..self.k {
                out[k * cols + i * pq..][..pq].copy_from_slice(&dy[k * pq..(k + 1) * pq]);
            }
        }
    }

    /// The weights of [`Geometry::as_backward_data`]: `(C, K, R, S)` with `wt[c][k][r][s] = w[k][c][R−1−r][S−1−s]`.
    fn flipped(&self, w: &[f32]) -> Vec<f32> {
        let rs = self.r * self.s;
        let mut out = vec![0f32; w.len()];
        for k in 0..self.k {
            for c in 0..self.c {
                let src = &w[(k * self.c + c) * rs..][..rs];
                let dst = &mut out[(c * self.k + k) * rs..][..rs];
                for (d, v) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *v;
                }
            }
        }
        out
    }

    /// `y = conv(x, w)` for the whole batch: each thread takes its share of the images, im2cols
    /// them a group at a time and multiplies by the weights once per group. Where this crate's
    /// AVX-512 GEMM runs the product and the convolution keeps the image size (stride 1, "same"
    /// padding), the im2col matrix is never stored: the GEMM packs its panels from the images.
    fn forward(&self, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
        #[cfg(target_arch = "x86_64")]
        if self.by_taps() {
            return taps::forward(self, x, w, bias);
        }
        let (crs, pq, kpq) = (self.crs(), self.pq(), self.k * self.pq());
        let chunk = images_per_chunk(self.n);
        let group = self.group(chunk);
        let narrow = self.k <= NARROW_OUTPUT && !crate::sgemm::nn_for(self.k);
        let order = if narrow { Order::ColumnMajor } else { Order::RowMajor };
        let implicit = self.stride == 1
            && !self.direct()
            && Im2col::fits(self.h, self.w, self.r, self.s, self.pad)
            && crate::sgemm::implicit_available();
        // The weights packed once for every group and thread.
        let packed = implicit.then(|| pack_left(self.k, crs, w));
        let fill = |y: &mut [MaybeUninit<f32>]| {
            y.par_chunks_mut(chunk * kpq).zip(x.par_chunks(chunk * self.image())).for_each(|(ys, xs)| {
                let wv = row_major(w, crs);
                let (mut col, mut out) = (Vec::new(), Vec::new());
                let mut panels = match &packed {
                    Some(packed) => {
                        Im2col::new(xs, self.c, self.h, self.w, self.r, self.s, self.pad).map(|p| (p, packed))
                    }
                    None => None,
                };
                for (yg, xg) in ys.chunks_mut(group * kpq).zip(xs.chunks(group * self.image())) {
                    let images = xg.len() / self.image();
                    let cols = images * pq;
                    if let Some((panels, packed)) = panels.as_mut() {
                        panels.set_images(xg);
                        if images == 1 {
                            matmul_im2col(yg, self.k, pq, crs, packed, panels);
                        } else {
                            out.clear();
                            out.reserve(self.k * cols);
                            matmul_im2col(
                                &mut out.spare_capacity_mut()[..self.k * cols],
                                self.k,
                                cols,
                                crs,
                                packed,
                                panels,
                            );
                            // SAFETY: `matmul_im2col` wrote the K × cols product.
                            unsafe { out.set_len(self.k * cols) };
                            self.scatter(&out, Order::RowMajor, yg);
                        }
                    } else {
                        let b = if images == 1 && self.direct() {
                            row_major(xg, pq)
                        } else {
                            let cols = self.im2col_group(xg, &mut col);
                            row_major(&col, cols)
                        };
                        if images == 1 && !narrow {
                            matmul_into(yg, self.k, pq, crs, wv, b);
                        } else {
                            out.resize(self.k * cols, 0.0);
                            matmul(&mut out, order, self.k, cols, crs, wv, b, false);
                            self.scatter(&out, order, yg);
                        }
                    }
                    if let Some(bias) = bias {
                        // SAFETY: the group's output was written whole, by a product or the copy.
                        add_bias(unsafe { assume_written(yg) }, bias, pq);
                    }
                }
            })
        };
        // SAFETY: every image's K × P·Q block is written whole, by a product straight into it or
        // by the copy out of the group's product.
        unsafe { written(self.n * kpq, fill) }
    }

    /// Copies a group's product `out` (K × images·P·Q, laid out as `order` says) into the
    /// images' K × P·Q output blocks `yg`.
    fn scatter(&self, out: &[f32], order: Order, yg: &mut [MaybeUninit<f32>]) {
        let (pq, kpq) = (self.pq(), self.k * self.pq());
        let cols = yg.len() / kpq * pq;
        for (i, yn) in yg.chunks_mut(kpq).enumerate() {
            for (k, dst) in yn.chunks_exact_mut(pq).enumerate() {
                match order {
                    Order::RowMajor => {
                        for (d, v) in dst.iter_mut().zip(&out[k * cols + i * pq..][..pq]) {
                            d.write(*v);
                        }
                    }
                    // Strided reads of the transposed product (it is in cache).
                    Order::ColumnMajor => {
                        for (d, v) in dst.iter_mut().zip(out[i * pq * self.k + k..].iter().step_by(self.k)) {
                            d.write(*v);
                        }
                    }
                }
            }
        }
    }
}

/// Layers with at most this many output channels compute their output transposed (see
/// [`Order::ColumnMajor`]) and copy it into place.
const NARROW_OUTPUT: usize = 32;

/// Layers with at most this many output channels (and no more than C·R·S) accumulate their
/// weight gradient transposed.
const NARROW_WEIGHT_GRADIENT: usize = 256;

/// The fewest output channels for which the weight gradient packs the transposed im2col matrix
/// from the images (`sgemm::Im2colT`) instead of storing the matrix for the `gemm` crate: each
/// transposed element feeds K / 16 vector FMAs. `cargo xtask bench conv` (Intel Xeon, AVX-512,
/// 2 threads): 128-512 channels 1.2-1.9x the stored path's GFLOP/s, 64 channels no faster.
const IMPLICIT_WEIGHT_GRADIENT: usize = 128;

/// Adds `bias[k]` to channel k of every image in `y` (images × K × `pq`).
fn add_bias(y: &mut [f32], bias: &[f32], pq: usize) {
    for (plane, b) in y.chunks_exact_mut(pq).zip(bias.iter().cycle()) {
        add_scalar(plane, *b);
    }
}

/// # Safety
/// Every element of `y` must have been written.
unsafe fn assume_written(y: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: MaybeUninit<f32> has f32's layout, and the caller guarantees initialization.
    unsafe { &mut *(std::ptr::from_mut(y) as *mut [f32]) }
}

/// The fewest output columns one GEMM should have; `LT_CONV_COLUMNS` overrides it for tuning.
fn min_columns() -> usize {
    static COLUMNS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COLUMNS.get_or_init(|| {
        std::env::var("LT_CONV_COLUMNS").ok().and_then(|v| v.parse().ok()).filter(|&v| v > 0).unwrap_or(MIN_COLUMNS)
    })
}

/// See [`Geometry::group`].
const MIN_COLUMNS: usize = 512;

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
        let y = g.forward(contiguous(s1, l1)?, contiguous(s2, l2)?, None);
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.k, g.p, g.q))))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        // The network's input (the first layer's x) needs no gradient.
        let dx = if x.track_op() { Some(dy.apply_op2_no_bwd(w, &BackwardData { geom: self.geom })?) } else { None };
        let dw = if w.track_op() { Some(x.apply_op2_no_bwd(&dy, &BackwardWeight { geom: self.geom })?) } else { None };
        Ok((dx, dw))
    }
}

impl CustomOp3 for Conv {
    fn name(&self) -> &'static str {
        "lt-conv2d-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geom;
        let y = g.forward(contiguous(s1, l1)?, contiguous(s2, l2)?, Some(contiguous(s3, l3)?));
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.k, g.p, g.q))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = CustomOp2::bwd(self, x, w, res, dy)?;
        let db = if b.track_op() {
            let dy = dy.contiguous()?;
            let pq = self.geom.pq();
            let sums = with_slice(&dy, |dy| {
                Ok((0..self.geom.k)
                    .into_par_iter()
                    .map(|k| {
                        let planes = dy.chunks_exact(pq).skip(k).step_by(self.geom.k);
                        planes.map(|p| f64::from(sum(p))).sum::<f64>() as f32
                    })
                    .collect::<Vec<f32>>())
            })?;
            Some(Tensor::from_vec(sums, self.geom.k, dy.device())?)
        } else {
            None
        };
        Ok((dx, dw, db))
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
        let shape = Shape::from((g.n, g.c, g.h, g.w));
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = g.as_backward_data().filter(Geometry::by_taps) {
            return Ok((CpuStorage::F32(taps::backward_data(&g, &t, dy, w)), shape));
        }
        if let Some(t) = g.as_backward_data() {
            return Ok((CpuStorage::F32(t.forward(dy, &g.flipped(w), None)), shape));
        }
        let (crs, pq, kpq) = (g.crs(), g.pq(), g.k * g.pq());
        let mut dx = vec![0f32; g.n * g.image()];
        let chunk = images_per_chunk(g.n);
        let group = g.group(chunk);
        dx.par_chunks_mut(chunk * g.image()).zip(dy.par_chunks(chunk * kpq)).for_each(|(dxs, dys)| {
            let wt = transposed(w, g.k, crs);
            let (mut col, mut gathered) = (Vec::new(), Vec::new());
            for (dxg, dyg) in dxs.chunks_mut(group * g.image()).zip(dys.chunks(group * kpq)) {
                let images = dyg.len() / kpq;
                let cols = images * pq;
                let b = if images == 1 {
                    row_major(dyg, pq)
                } else {
                    g.gather_outputs(dyg, &mut gathered);
                    row_major(&gathered, cols)
                };
                if images == 1 && g.direct() {
                    matmul(dxg, Order::RowMajor, crs, pq, g.k, wt, b, false);
                    continue;
                }
                col.resize(crs * cols, 0.0);
                matmul(&mut col, Order::RowMajor, crs, cols, g.k, wt, b, false);
                for (i, dxn) in dxg.chunks_mut(g.image()).enumerate() {
                    g.col2im(&col[i * pq..], cols, dxn);
                }
            }
        });
        Ok((CpuStorage::F32(dx), shape))
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
        #[cfg(target_arch = "x86_64")]
        if g.by_taps() {
            return Ok((CpuStorage::F32(taps::weight_gradient(&g, x, dy)), Shape::from((g.k, g.c, g.r, g.s))));
        }
        #[cfg(target_arch = "x86_64")]
        if g.by_outer_products() {
            return Ok((CpuStorage::F32(outer::weight_gradient(&g, x, dy)), Shape::from((g.k, g.c, g.r, g.s))));
        }
        let (crs, pq, kpq) = (g.crs(), g.pq(), g.k * g.pq());
        let chunk = images_per_chunk(g.n);
        let group = g.group(chunk);
        // Transposed when the gradient is narrow and not wider than it is long: a 64 x 27 first
        // layer runs 1.4x faster row-major, a 16 x 27 one 1.5x faster transposed (`gemm` alone).
        // The im2col matrix generated panel by panel (as in `forward`) for layers of at least
        // IMPLICIT_WEIGHT_GRADIENT output channels; narrower ones reuse each transposed element
        // in too few FMAs to pay for the transpose.
        let implicit = g.stride == 1
            && !g.direct()
            && g.k >= IMPLICIT_WEIGHT_GRADIENT
            && Im2col::fits(g.h, g.w, g.r, g.s, g.pad)
            && crate::sgemm::implicit_available();
        let narrow = g.k <= NARROW_WEIGHT_GRADIENT && g.k <= crs && !crate::sgemm::nt_for(g.k) && !implicit;
        let order = if narrow { Order::ColumnMajor } else { Order::RowMajor };
        let partials: Vec<Vec<f32>> = x
            .par_chunks(chunk * g.image())
            .zip(dy.par_chunks(chunk * kpq))
            .map(|(xs, dys)| {
                let mut dw = vec![0f32; g.k * crs];
                let (mut col, mut gathered) = (Vec::new(), Vec::new());
                let mut panels =
                    if implicit { Im2col::new(xs, g.c, g.h, g.w, g.r, g.s, g.pad).map(Im2colT) } else { None };
                for (i, (xg, dyg)) in xs.chunks(group * g.image()).zip(dys.chunks(group * kpq)).enumerate() {
                    let images = dyg.len() / kpq;
                    let cols = images * pq;
                    let a = if images == 1 {
                        row_major(dyg, pq)
                    } else {
                        g.gather_outputs(dyg, &mut gathered);
                        row_major(&gathered, cols)
                    };
                    if let Some(panels) = panels.as_mut() {
                        panels.0.set_images(xg);
                        matmul_im2col_t(&mut dw, g.k, crs, cols, a, panels, i > 0);
                        continue;
                    }
                    let colt = if images == 1 && g.direct() {
                        transposed(xg, crs, pq)
                    } else {
                        let cols = g.im2col_group(xg, &mut col);
                        transposed(&col, crs, cols)
                    };
                    matmul(&mut dw, order, g.k, crs, cols, a, colt, i > 0);
                }
                dw
            })
            .collect();
        let mut dw = vec![0f32; g.k * crs];
        for p in &partials {
            match order {
                Order::RowMajor => dw.iter_mut().zip(p).for_each(|(a, b)| *a += b),
                Order::ColumnMajor => {
                    for (j, row) in p.chunks(g.k).enumerate() {
                        for (k, v) in row.iter().enumerate() {
                            dw[k * crs + j] += v;
                        }
                    }
                }
            }
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

    /// Stride 1 with "same" padding and P·Q a multiple of 16 (larger than `taps` takes): on
    /// AVX-512 CPUs the im2col matrix is packed straight from the images (one image per product,
    /// or a group of 8x8 ones, or non-square images, or a 5x5 kernel), the backward-data pass
    /// likewise. Elsewhere these are more shapes of the `gemm` path.
    #[test]
    fn implicit_im2col_shapes_match_candle() {
        check(3, 4, 8, 8, 8, 3, 1, 1, 20);
        check(2, 3, 8, 4, 5, 3, 1, 1, 21);
        check(2, 3, 8, 8, 17, 5, 1, 2, 22);
        check(40, 2, 8, 8, 9, 3, 1, 1, 23);
        // The packed weights in two inner-dimension blocks (C·R·S = 216), and past one block of rows
        // (sgemm::MC = 512).
        check(2, 24, 8, 8, 10, 3, 1, 1, 24);
        check(1, 2, 8, 8, 520, 3, 1, 1, 25);
        // The weight gradient from the transposed panels: full and partial 16-column blocks.
        check(3, 7, 8, 8, IMPLICIT_WEIGHT_GRADIENT, 3, 1, 1, 26);
        check(2, 3, 4, 8, IMPLICIT_WEIGHT_GRADIENT + 5, 5, 1, 2, 27);
    }

    /// Images of at most 16 pixels with "same" padding: on AVX-512 CPUs one product per kernel
    /// tap over the pixels it reaches (`taps`), forward, backward-data (a forward convolution
    /// itself) and the weight gradient; elsewhere more shapes of the `gemm` path.
    #[test]
    fn small_images_by_taps_match_candle() {
        let cases = [
            (3, 4, 2, 2, 8, 3, 1), // VGG-19's 2x2 layers
            (5, 6, 4, 4, 9, 3, 1), // 4x4; rows (pixels × images) not a multiple of 8
            (2, 3, 1, 1, 5, 3, 1), // one pixel: the centre tap alone
            (2, 3, 2, 4, 5, 3, 1), // not square, both ways
            (2, 3, 4, 2, 5, 3, 1),
            (3, 3, 3, 3, 4, 3, 1),
            (2, 3, 4, 4, 7, 5, 2), // a 5x5 kernel
            // Inner dimension past one block (sgemm::KC), rows past one block (sgemm::MC) in
            // the weight gradient and the backward-data pass, several 48-column panels.
            (2, 200, 2, 2, 520, 3, 1),
        ];
        for (i, (n, c, h, w, k, r, pad)) in cases.into_iter().enumerate() {
            let g = Geometry::new(&[n, c, h, w], &[k, c, r, r], 1, pad).unwrap();
            assert_eq!(g.by_taps(), crate::sgemm::available(), "case {i} should go by taps on AVX-512");
            check(n, c, h, w, k, r, 1, pad, 60 + i as u64);
        }
        if !crate::sgemm::available() {
            eprintln!("note: this CPU has no AVX-512 (or LT_KERNELS_ISA caps it): these shapes ran the gemm path");
        }
    }

    /// 3x3 kernels with padding 1 and 16, 32 or 64 output channels: on AVX-512 CPUs the weight
    /// gradient is summed as outer products in registers (`outer`), three, two or one input
    /// channels at a time for K = 16, one for K = 32, two kernel rows then one for K = 64, at
    /// stride 1 and 2; elsewhere more shapes of the `gemm` path.
    #[test]
    fn narrow_weight_gradients_by_outer_products_match_candle() {
        let cases = [
            (3, 16, 8, 8, 16, 1), // tiles of 3, 3, 3, 3, 2, 2 channels
            (2, 3, 6, 5, 16, 1),  // the first layer: one tile of 3; not square
            (2, 5, 5, 7, 16, 1),  // 3 + 2
            (2, 1, 4, 4, 16, 1),  // 1
            (2, 7, 8, 8, 16, 2),  // 3 + 2 + 2, stride 2
            (3, 4, 7, 7, 32, 1),  // K = 32
            (3, 4, 7, 6, 32, 2),  // odd rows at stride 2: the last input row is read by no output row
            (5, 2, 8, 8, 32, 2),  // more images than threads: shares summed
            (3, 3, 8, 8, 64, 1),  // K = 64: kernel rows 0-1, then 2
            (2, 2, 9, 8, 64, 2),
            (2, 40, 16, 16, 64, 1), // 40 channels of 16x16: ResNet-20's 64-channel layers' size
        ];
        for (i, (n, c, h, w, k, stride)) in cases.into_iter().enumerate() {
            let g = Geometry::new(&[n, c, h, w], &[k, c, 3, 3], stride, 1).unwrap();
            assert_eq!(
                g.by_outer_products(),
                crate::sgemm::available(),
                "case {i} should take outer products on AVX-512"
            );
            check(n, c, h, w, k, 3, stride, 1, 80 + i as u64);
        }
        // VGG-19's 32x32 64-channel layers: their operands do not stay in L2.
        assert!(!Geometry::new(&[64, 64, 32, 32], &[64, 64, 3, 3], 1, 1).unwrap().by_outer_products());
        if !crate::sgemm::available() {
            eprintln!("note: this CPU has no AVX-512 (or LT_KERNELS_ISA caps it): these shapes ran the gemm path");
        }
    }

    /// Wide layers take the row-major GEMM paths (output above [`NARROW_OUTPUT`] channels, weight
    /// gradient above [`NARROW_WEIGHT_GRADIENT`]); small images are grouped several to a GEMM.
    #[test]
    fn wide_layers_match_candle() {
        check(3, 5, 6, 6, NARROW_OUTPUT + 8, 3, 1, 1, 6);
        check(3, 5, 6, 6, NARROW_OUTPUT + 8, 3, 2, 1, 7);
        check(5, 3, 2, 2, NARROW_WEIGHT_GRADIENT + 4, 3, 1, 1, 8);
        check(4, 3, 5, 5, NARROW_WEIGHT_GRADIENT + 4, 1, 2, 0, 9);
        check(3, 2, 6, 6, 24, 3, 1, 1, 10); // K = 24 > C·R·S = 18: row-major
        check(3, 4, 6, 6, 24, 3, 1, 1, 11); // K = 24 <= 36: transposed
    }

    /// The fused bias: forward and all three gradients against candle's conv2d + broadcast_add.
    #[test]
    fn bias_matches_a_separate_broadcast_add() {
        for (i, &(n, c, h, k, r, stride, pad)) in
            [(3, 4, 6, 5, 3, 1, 1), (2, 3, 5, NARROW_OUTPUT + 3, 3, 2, 1), (4, 2, 2, 6, 3, 1, 1), (2, 3, 4, 5, 1, 1, 0)]
                .iter()
                .enumerate()
        {
            let seed = 40 + 3 * i as u64;
            let x = Var::from_tensor(&rand(&[n, c, h, h], seed)).unwrap();
            let w = Var::from_tensor(&rand(&[k, c, r, r], seed + 1)).unwrap();
            let b = Var::from_tensor(&rand(&[k], seed + 2)).unwrap();
            let ours = conv2d_bias(x.as_tensor(), w.as_tensor(), b.as_tensor(), stride, pad).unwrap();
            let reference = x
                .as_tensor()
                .conv2d(w.as_tensor(), pad, stride, 1, 1)
                .unwrap()
                .broadcast_add(&b.as_tensor().reshape((1, k, 1, 1)).unwrap())
                .unwrap();
            assert!(max_diff(&ours, &reference) <= 1e-4 * scale(&reference), "forward, case {i}");
            let probe = rand(ours.dims(), seed + 3);
            let g1 = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&reference * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("input", &x), ("weight", &w), ("bias", &b)] {
                let (a, e) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert!(max_diff(a, e) <= 1e-4 * scale(e), "{name} gradient, case {i}");
            }
        }
        let x = Tensor::zeros((1, 2, 4, 4), DType::F32, &Device::Cpu).unwrap();
        let (w, b) = (
            Tensor::zeros((3, 2, 3, 3), DType::F32, &Device::Cpu).unwrap(),
            Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
        );
        let e = conv2d_bias(&x, &w, &b, 1, 1).unwrap_err().to_string();
        assert!(e.contains("bias of shape [4] for 3 output channels"), "{e}");
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
