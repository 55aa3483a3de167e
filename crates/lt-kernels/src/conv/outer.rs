//! The weight gradient of narrow 3x3 convolutions (ResNet-20's 16- and 32-channel layers,
//! padding 1, stride 1 or 2) as outer products summed in registers, on AVX-512 CPUs.
//!
//! ```text
//! dW[k, c, r, s] = Σ over images n and output pixels (p, q) of
//!                  dy[n, k, p, q] · x[n, c, p·stride + r − 1, q·stride + s − 1]
//! ```
//!
//! With K = 16, 32 or 64 output channels, the K gradients of one weight column (c, r, s) are one or
//! two vectors. Each output pixel adds `x[c, o + shift] × dy[o, :]` (a broadcast times the
//! pixel's K gradients) to the 9 taps of a few input channels, all of whose sums stay in
//! registers (27 for K = 16, three channels at a time; 18 for K = 32, one channel; for K = 64 a
//! channel's first two kernel rows, 24, then its third) for the whole image: per pixel one load of its gradients and one FMA with a broadcast operand per sum (the
//! compiled loop is exactly that). The im2col path these layers took before stored the (C·9) ×
//! pixels matrix, transposed it, and ran a product whose 16 or 32 rows fill a micro-kernel
//! poorly. Here nothing is stored but a zero-bordered copy of each image (so no pixel needs a
//! bounds test) and its `dy` transposed pixel-major (so a pixel's K gradients are one load).
//!
//! `cargo xtask bench conv --models resnet20` (Intel Xeon, AVX-512, 2 threads; three A/B pairs
//! in the same minutes): the 16-channel layers' dw 5.5-8.3 ms instead of 9.5-10.5, the
//! stride-2 16 → 32 layer's 4.4-4.9 instead of 8.5-10.1. One thread alone on K = 16, C = 16,
//! 32x32, batch 128: the products at 117 GFLOP/s (75% of the core's measured peak), the copies
//! (border, transpose) a quarter of the time.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::{Geometry, assume_written, images_per_chunk};
use crate::simd::add_into;

/// The most bytes one image's operands (its bordered copy and its transposed `dy`) may take:
/// every channel tile reads them again, so they should stay in L2. ResNet-20's layers take
/// 42-140 KB; VGG-19's 32x32 64-channel layers (276 and 558 KB) ran no faster than the im2col
/// path here (`cargo xtask bench conv`, Intel Xeon, AVX-512, three A/B pairs), and stay on it.
const MAX_IMAGE_BYTES: usize = 256 << 10;

impl Geometry {
    /// Whether the weight gradient runs here: a 3x3 kernel, padding 1, stride 1 or 2, 16, 32 or
    /// 64 output channels, an image whose two operands fit [`MAX_IMAGE_BYTES`], and an AVX-512
    /// CPU.
    pub(super) fn by_outer_products(&self) -> bool {
        (self.stride == 1 || self.stride == 2)
            && self.r == 3
            && self.s == 3
            && self.pad == 1
            && matches!(self.k, 16 | 32 | 64)
            && 4 * (self.c * (self.h + 2) * (self.w + 2) + self.k * self.pq()) <= MAX_IMAGE_BYTES
            && crate::sgemm::available()
    }
}

/// dW (K, C, 3, 3) of `x` (N, C, H, W) and `dy` (N, K, P, Q); `g.by_outer_products()` must hold.
pub(super) fn weight_gradient(g: &Geometry, x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert!(g.by_outer_products(), "the outer-product weight gradient does not take {g:?}");
    let (hp, wp, pq) = (g.h + 2, g.w + 2, g.pq());
    let chunk = images_per_chunk(g.n);
    // Each thread's share of the batch, summed as (c, r, s, k): one weight column's K gradients
    // consecutive, as the registers hold them.
    let partials: Vec<Vec<f32>> = x
        .par_chunks(chunk * g.image())
        .zip(dy.par_chunks(chunk * g.k * pq))
        .map(|(xs, dys)| {
            let mut sums = vec![0f32; g.c * 9 * g.k];
            let mut padded = vec![0f32; g.c * hp * wp];
            let mut dyt: Vec<MaybeUninit<f32>> = Vec::with_capacity(pq * g.k);
            // SAFETY: MaybeUninit needs no initialization; `transpose_into` writes every element.
            unsafe { dyt.set_len(pq * g.k) };
            for (xn, dyn_) in xs.chunks_exact(g.image()).zip(dys.chunks_exact(g.k * pq)) {
                // The border stays zero: only the interior is ever written.
                for (plane, image) in padded.chunks_exact_mut(hp * wp).zip(xn.chunks_exact(g.h * g.w)) {
                    for (row, from) in plane[wp..].chunks_exact_mut(wp).zip(image.chunks_exact(g.w)) {
                        row[1..=g.w].copy_from_slice(from);
                    }
                }
                // SAFETY: the CPU has AVX-512 (`by_outer_products`); the transpose writes all of
                // `dyt`, after which it is plain floats.
                let dyt: &[f32] = unsafe {
                    crate::sgemm::transpose_into(dyn_, g.k, pq, &mut dyt);
                    assume_written(&mut dyt)
                };
                let mut c0 = 0;
                while c0 < g.c {
                    let left = g.c - c0;
                    // SAFETY: as above; the tile's channels c0.. are inside `padded` and `sums`.
                    c0 += unsafe {
                        match (g.k, left, g.stride) {
                            (16, 1, 1) => image::<1, 1, 3, 9, 1>(g, &padded, c0, 0, dyt, &mut sums),
                            // Four left: two tiles of two, not three and one.
                            (16, 2 | 4, 1) => image::<1, 2, 3, 18, 1>(g, &padded, c0, 0, dyt, &mut sums),
                            (16, _, 1) => image::<1, 3, 3, 27, 1>(g, &padded, c0, 0, dyt, &mut sums),
                            (16, 1, _) => image::<1, 1, 3, 9, 2>(g, &padded, c0, 0, dyt, &mut sums),
                            (16, 2 | 4, _) => image::<1, 2, 3, 18, 2>(g, &padded, c0, 0, dyt, &mut sums),
                            (16, _, _) => image::<1, 3, 3, 27, 2>(g, &padded, c0, 0, dyt, &mut sums),
                            (32, _, 1) => image::<2, 1, 3, 18, 1>(g, &padded, c0, 0, dyt, &mut sums),
                            (32, _, _) => image::<2, 1, 3, 18, 2>(g, &padded, c0, 0, dyt, &mut sums),
                            // K = 64: a channel's 36 sums do not fit; its kernel rows 0-1, then 2.
                            (_, _, 1) => {
                                image::<4, 1, 2, 24, 1>(g, &padded, c0, 0, dyt, &mut sums);
                                image::<4, 1, 1, 12, 1>(g, &padded, c0, 2, dyt, &mut sums)
                            }
                            _ => {
                                image::<4, 1, 2, 24, 2>(g, &padded, c0, 0, dyt, &mut sums);
                                image::<4, 1, 1, 12, 2>(g, &padded, c0, 2, dyt, &mut sums)
                            }
                        }
                    };
                }
            }
            sums
        })
        .collect();
    // The shares added in a fixed order, then (c, r, s, k) → (k, c, r, s).
    let sums = partials
        .into_iter()
        .reduce(|mut sums, share| {
            add_into(&mut sums, &share);
            sums
        })
        .unwrap_or_else(|| vec![0f32; g.c * 9 * g.k]);
    // SAFETY: the CPU has AVX-512 (`by_outer_products`).
    unsafe { crate::sgemm::transpose(&sums, g.c * 9, g.k) }
}

/// Adds one image's gradient of input channels `c0..c0 + CT`, kernel rows `r0..r0 + RT`, to
/// `sums` ((c, r, s, k)) and returns CT. `padded` is the image with a zero border (C, H + 2,
/// W + 2), `dyt` its output gradient pixel-major (P·Q, K = 16·KV), `STRIDE` the convolution's;
/// `N` = 3·RT·CT·KV sums live in registers for the whole image.
///
/// # Safety
/// The CPU must have AVX-512 F, and channels `c0..c0 + CT` must exist.
#[target_feature(enable = "avx512f")]
unsafe fn image<const KV: usize, const CT: usize, const RT: usize, const N: usize, const STRIDE: usize>(
    g: &Geometry,
    padded: &[f32],
    c0: usize,
    r0: usize,
    dyt: &[f32],
    sums: &mut [f32],
) -> usize {
    const { assert!(N == 3 * RT * CT * KV && N <= 28 && CT * RT <= 9) };
    assert!(c0 + CT <= g.c && r0 + RT <= 3 && dyt.len() == g.pq() * 16 * KV, "tile {c0} + {CT}, {r0} + {RT} of {g:?}");
    let (wp, plane) = (g.w + 2, (g.h + 2) * (g.w + 2));
    assert!(g.stride == STRIDE && (g.p - 1) * STRIDE + 2 < g.h + 2 && (g.q - 1) * STRIDE + 2 < wp, "{g:?}");
    let mut acc = [_mm512_setzero_ps(); N];
    for p in 0..g.p {
        // Kernel row r0 + rr of the tile's channel ci (i = ci·RT + rr) for output row p: padded
        // row p·STRIDE + r0 + rr.
        let rows: [*const f32; 9] = std::array::from_fn(|i| {
            if i < RT * CT {
                padded[(c0 + i / RT) * plane + (p * STRIDE + r0 + i % RT) * wp..].as_ptr()
            } else {
                std::ptr::null()
            }
        });
        let grads = dyt[p * g.q * 16 * KV..].as_ptr();
        for q in 0..g.q {
            // SAFETY: pixel (p, q)'s K gradients are inside `dyt` (checked above).
            let d: [__m512; KV] = std::array::from_fn(|j| unsafe { _mm512_loadu_ps(grads.add((q * KV + j) * 16)) });
            for (i, row) in rows.iter().enumerate().take(RT * CT) {
                for s in 0..3 {
                    // SAFETY: columns q·STRIDE..q·STRIDE + 2 of a padded row of W + 2 are inside it
                    // (asserted above).
                    let x = _mm512_set1_ps(unsafe { *row.add(q * STRIDE + s) });
                    for (j, d) in d.iter().enumerate() {
                        let a = &mut acc[(i * 3 + s) * KV + j];
                        *a = _mm512_fmadd_ps(x, *d, *a);
                    }
                }
            }
        }
    }
    // Row i's three taps (3·KV vectors) go to sums[((c0 + ci)·9 + (r0 + rr)·3)·K..].
    for (i, taps) in acc.chunks_exact(3 * KV).enumerate() {
        let (ci, rr) = (i / RT, i % RT);
        let out = &mut sums[((c0 + ci) * 9 + (r0 + rr) * 3) * 16 * KV..][..3 * KV * 16];
        for (v, a) in out.chunks_exact_mut(16).zip(taps) {
            // SAFETY: `v` is 16 floats.
            unsafe { _mm512_storeu_ps(v.as_mut_ptr(), _mm512_add_ps(_mm512_loadu_ps(v.as_ptr()), *a)) };
        }
    }
    CT
}
