//! Convolutions of small images (VGG-19's 2x2 and 4x4 layers) as one product per kernel tap, on
//! CPUs that run this crate's AVX-512 GEMM.
//!
//! With "same" padding most of a small image's im2col matrix is padding: for a 3x3 kernel on a
//! 2x2 image, 20 of each output pixel's 36 (tap, input pixel) products multiply a zero (on 4x4,
//! 31% of them), and an im2col GEMM does them all. Here each tap (r, s) of the kernel is a product
//! of its own over just the output pixels whose shifted input pixel `o + (r − pad, s − pad)` lies
//! inside the image:
//!
//! ```text
//! y[o] += x[o + (r − pad)·W + (s − pad)] · W[:, :, r, s]ᵀ      (one row per image, C → K)
//! ```
//!
//! The activations are laid out pixel-major, `(pixel, image, channel)`, so the pixels of one
//! output row that a tap reaches are consecutive rows of one matrix for the whole batch: per tap
//! one product (or one per output row when the tap leaves a column out), with the pixels and
//! images as its rows (a multiple of the micro-kernel's 8 rows) and the channels as its columns
//! (512 of them fill its 48-wide panels). The threads share the taps, not the images: each sums
//! its group of taps (balanced by the pixels they reach) into an output of its own, and the
//! outputs are added, so each tap's weights are packed once, by one thread.
//!
//! The weight gradient is the same sum taken the other way, one K × C product per tap whose
//! inner dimension is the pixels it reaches times the images: `dW[:, :, r, s] = Σ dy[o]ᵀ ·
//! x[o + shift]`. The backward-data pass of a stride-1 "same" convolution is itself one
//! (`Geometry::as_backward_data`); [`backward_data`] builds its weight operand straight from `w`.
//!
//! `cargo xtask bench conv` (Intel Xeon, AVX-512, 2 threads, A/B in the same minutes): VGG-19's
//! four 2x2 layers 5-6 ms per pass instead of 9-24, its 4x4 ones 21-26 instead of 25-40; all
//! of a step's convolutions 772-780 ms instead of 1,008-1,025.

use rayon::prelude::*;

use super::{Geometry, add_bias};
use crate::matmul::View;

/// The largest image (pixels) that takes this path: VGG-19's 4x4 layers (31% of the products
/// skipped) and 2x2 ones (56%). On 8x8 images only 16% are padding.
const MAX_PIXELS: usize = 16;

impl Geometry {
    /// Whether this convolution runs one product per tap: stride 1, "same" padding, an image of
    /// at most [`MAX_PIXELS`] and this crate's AVX-512 GEMM.
    pub(super) fn by_taps(&self) -> bool {
        self.stride == 1
            && self.r * self.s > 1
            && self.r == 2 * self.pad + 1
            && self.s == 2 * self.pad + 1
            && self.h * self.w <= MAX_PIXELS
            && crate::sgemm::available()
    }

    /// Tap `(r, s)`'s products: runs of output pixels `(first, count)` whose input pixels are
    /// `first + shift..`, where `shift = (r − pad)·W + (s − pad)`. A tap that keeps every column
    /// is one run over all its rows; otherwise one run per output row.
    fn tap_runs(&self, r: usize, s: usize) -> (Vec<(usize, usize)>, isize) {
        let (h, w) = (self.h as isize, self.w as isize);
        let (dr, ds) = (r as isize - self.pad as isize, s as isize - self.pad as isize);
        let (p0, p1) = ((-dr).max(0), (h - dr).min(h));
        let (q0, q1) = ((-ds).max(0), (w - ds).min(w));
        let shift = dr * w + ds;
        if p0 >= p1 || q0 >= q1 {
            return (Vec::new(), shift);
        }
        let runs = if q1 - q0 == w {
            vec![((p0 * w) as usize, ((p1 - p0) * w) as usize)]
        } else {
            (p0..p1).map(|p| ((p * w + q0) as usize, (q1 - q0) as usize)).collect()
        };
        (runs, shift)
    }

    /// The taps `(r, s)` in one group per thread, balanced by the pixels each reaches (the
    /// largest first, each to the least loaded group).
    fn tap_groups(&self, groups: usize) -> Vec<Vec<(usize, usize)>> {
        let mut taps: Vec<((usize, usize), usize)> = (0..self.r)
            .flat_map(|r| (0..self.s).map(move |s| (r, s)))
            .map(|(r, s)| ((r, s), self.tap_runs(r, s).0.iter().map(|run| run.1).sum()))
            .collect();
        taps.sort_by_key(|&(_, pixels)| std::cmp::Reverse(pixels));
        let mut out = vec![(Vec::new(), 0usize); groups.max(1)];
        for (tap, pixels) in taps {
            if let Some(least) = out.iter_mut().min_by_key(|g| g.1) {
                least.0.push(tap);
                least.1 += pixels;
            }
        }
        out.into_iter().map(|g| g.0).filter(|g| !g.is_empty()).collect()
    }
}

/// `images` (NCHW, `channels` each) as `(pixel, image, channel)`: for each pixel and image, one
/// contiguous run of channels gathered at a stride of `pixels`; the pixels shared among threads.
fn to_pixel_major(images: &[f32], channels: usize, pixels: usize) -> Vec<f32> {
    let count = images.len() / (channels * pixels);
    let mut out = vec![0f32; images.len()];
    out.par_chunks_mut((count * channels).max(1)).enumerate().for_each(|(p, rows)| {
        for (dst, image) in rows.chunks_exact_mut(channels).zip(images.chunks_exact(channels * pixels)) {
            for (d, v) in dst.iter_mut().zip(image[p..].iter().step_by(pixels)) {
                *d = *v;
            }
        }
    });
    out
}

/// The inverse of [`to_pixel_major`]: `pm` `(pixel, image, channel)` into `images` (NCHW), the
/// images shared among threads.
fn from_pixel_major(pm: &[f32], channels: usize, pixels: usize, images: &mut [f32]) {
    let count = images.len() / (channels * pixels);
    images.par_chunks_mut(channels * pixels).enumerate().for_each(|(i, image)| {
        for p in 0..pixels {
            let src = &pm[(p * count + i) * channels..][..channels];
            for (d, v) in image[p..].iter_mut().step_by(pixels).zip(src) {
                *d = *v;
            }
        }
    });
}

/// The transpose of the rows × cols matrix `a` (row-major).
fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    // SAFETY: the CPU has AVX-512 F: only `by_taps` convolutions come here.
    unsafe { crate::sgemm::transpose(a, rows, cols) }
}

/// `y = conv(x, w) [+ bias]` for a convolution that [`Geometry::by_taps`]. Each thread takes a
/// group of taps over the whole batch and sums them into its own output; the outputs are added.
/// So each tap's weights are packed by one thread, once.
pub(super) fn forward(g: &Geometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    // The weights as C·R·S × K (row (c, r, s) holds W[:, c, r, s]).
    let (wt, xp) = rayon::join(|| transpose(w, g.k, g.crs()), || to_pixel_major(x, g.c, g.h * g.w));
    sum_taps(g, &xp, &wt, bias)
}

/// The backward-data pass `dx` of a convolution `g` whose [`Geometry::as_backward_data`] `t`
/// goes [`Geometry::by_taps`]: that forward convolution of `dy` with the rotated weights, whose
/// C·R·S × K operand (here K·R·S × C: row (k, r, s) holds `W[k, :, R−1−r, S−1−s]`) is each
/// output channel's C × R·S block of `w` transposed, rows reversed: no rotated copy of the
/// weights and no transpose of the whole matrix.
pub(super) fn backward_data(g: &Geometry, t: &Geometry, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let rs = g.r * g.s;
    let fill = |wt: &mut [std::mem::MaybeUninit<f32>]| {
        wt.par_chunks_mut(rs * g.c).zip(w.par_chunks(g.c * rs)).for_each(|(out, block)| {
            for (j, row) in out.chunks_exact_mut(g.c).enumerate() {
                for (d, v) in row.iter_mut().zip(block[rs - 1 - j..].iter().step_by(rs)) {
                    d.write(*v);
                }
            }
        });
    };
    // SAFETY: each output channel's R·S rows of C are written whole from its C × R·S block
    // (w.len() = K·C·R·S, so the chunks cover the buffer).
    let rotated = || unsafe { crate::simd::written(w.len(), fill) };
    let (wt, dyp) = rayon::join(rotated, || to_pixel_major(dy, g.k, g.p * g.q));
    sum_taps(t, &dyp, &wt, None)
}

/// The forward convolution `g` of the pixel-major input `xp` with the weights `wt` as
/// C·R·S × K (tap t's C × K operand is every R·S-th row from row t).
fn sum_taps(g: &Geometry, xp: &[f32], wt: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (pixels, rs, n) = (g.h * g.w, g.r * g.s, g.n);
    let groups: Vec<Vec<f32>> = g
        .tap_groups(rayon::current_num_threads())
        .into_par_iter()
        .map(|taps| {
            let mut yp = vec![0f32; n * pixels * g.k];
            for (r, s) in taps {
                let (runs, shift) = g.tap_runs(r, s);
                let b = View { ptr: wt[(r * g.s + s) * g.k..].as_ptr(), rs: (rs * g.k) as isize, cs: 1 };
                for (first, len) in runs {
                    let input = (first as isize + shift) as usize;
                    let a = View { ptr: xp[input * n * g.c..].as_ptr(), rs: g.c as isize, cs: 1 };
                    // SAFETY: the CPU has AVX-512 (`by_taps`); `a` is `len·n` rows of C channels
                    // inside `xp` (the run's input pixels lie in the image); `b` is C rows of K
                    // inside `wt`; the destination is the run's `len·n` rows of K inside `yp`.
                    unsafe {
                        crate::sgemm::gemm_nn(len * n, g.k, g.c, a, b, yp[first * n * g.k..].as_mut_ptr(), g.k, true);
                    }
                }
            }
            yp
        })
        .collect();
    // Added in the groups' order, so that a given thread count always gives the same sums.
    let mut groups = groups.into_iter();
    let mut sums = groups.next().unwrap_or_else(|| vec![0f32; n * pixels * g.k]);
    for other in groups {
        crate::simd::add_into(&mut sums, &other);
    }
    let mut y = vec![0f32; n * g.k * pixels];
    from_pixel_major(&sums, g.k, pixels, &mut y);
    if let Some(bias) = bias {
        y.par_chunks_mut(g.k * pixels).for_each(|image| add_bias(image, bias, pixels));
    }
    y
}

/// The weight gradient `dW` (K, C, R, S) of a convolution that [`Geometry::by_taps`], from its
/// input `x` and output gradient `dy`: one K × C product per tap over the whole batch (inner
/// dimension: the pixels it reaches times the images), the taps shared among threads.
pub(super) fn weight_gradient(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (pixels, rs, n) = (g.h * g.w, g.r * g.s, g.n);
    let (xp, dyp) = rayon::join(|| to_pixel_major(x, g.c, pixels), || to_pixel_major(dy, g.k, pixels));
    let mut by_tap = vec![0f32; rs * g.k * g.c];
    by_tap.par_chunks_mut(g.k * g.c).enumerate().for_each(|(t, block)| {
        let (runs, shift) = g.tap_runs(t / g.s, t % g.s);
        for (j, (first, len)) in runs.into_iter().enumerate() {
            let input = (first as isize + shift) as usize;
            // dy's rows of the run, transposed: K × len·n.
            let a = View { ptr: dyp[first * n * g.k..].as_ptr(), rs: 1, cs: g.k as isize };
            let b = View { ptr: xp[input * n * g.c..].as_ptr(), rs: g.c as isize, cs: 1 };
            // SAFETY: the CPU has AVX-512 (`by_taps`); `a` reads `len·n` rows of K inside
            // `dyp`, `b` as many rows of C inside `xp`; the destination is the tap's K × C block.
            unsafe { crate::sgemm::gemm_nn(g.k, g.c, len * n, a, b, block.as_mut_ptr(), g.c, j > 0) };
        }
    });
    // (tap, K, C) into (K, C, R, S).
    transpose(&by_tap, rs, g.k * g.c)
}
