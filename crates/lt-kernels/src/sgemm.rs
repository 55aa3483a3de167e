//! This crate's own single-precision GEMM for AVX-512 CPUs, in two shapes of micro-kernel:
//!
//! - [`gemm_nn`], `C = A · B` with B's rows contiguous (convolution forward and backward-data,
//!   the linear layers' input gradient): BLIS's loop nest. A is packed a block of rows at a time
//!   into panels of [`MR`] rows (any strides), or once for all ([`PackedA`]: a convolution's
//!   weights), B a [`KC`] × [`NR`] panel at a time, and an 8 × 48 micro-kernel keeps 24
//!   accumulators in registers: per step of the inner dimension, three vector loads of B and
//!   eight broadcasts of A feed 24 FMAs. Edges are zero-padded in the packed panels and stored
//!   through AVX-512 masks. B's panels come from a matrix in memory or, for a stride-1
//!   convolution with "same" padding, straight from the images: [`Im2col`] (forward and
//!   backward-data) and its transpose [`Im2colT`] (the weight gradient, whose inner dimension is
//!   the pixels: 16 masked loads and a 16 × 16 transpose in registers per block). The im2col
//!   matrix, 9x the input for a 3x3 kernel, is never written.
//! - [`gemm_nt`], `C = A · Bᵀ` with the inner dimension contiguous in both (the weight gradient
//!   of ResNet-20's 16-channel layers, whose inner dimension is the pixels of `dy` and of the
//!   im2col matrix): no packing. A 4 × 6 tile of dot products is accumulated in 24 vectors along
//!   the inner dimension and reduced at the end. Packing would cost as much as the product here:
//!   with 16 output channels each element of the im2col matrix takes part in one vector FMA.
//!
//! Why not only the `gemm` crate (which every product outside [`nn_for`], [`nt_for`] and
//! [`Im2col`] still uses, and the AVX2 path entirely): its AVX-512 micro-kernels are as fast as
//! these on a plain product (`cargo xtask bench conv --gemm`), but a convolution gave them an
//! im2col matrix to read and, for ResNet-20's narrow layers, a transposed product to copy back;
//! together those kept the convolutions at 32-54% of the measured peak. Results differ from
//! `gemm`'s in the last bits only (another order of the same sums); the tests compare both with
//! the definition.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::cell::RefCell;

use crate::matmul::View;

/// Rows of A per micro-kernel call: divides every channel count of the networks (16, 32, 64, ...).
const MR: usize = 8;
/// Columns of B per micro-kernel call: three 16-float vectors.
const NR: usize = 48;
/// Largest inner-dimension block: a packed B panel (KC × NR floats, 36 KiB) stays in L1 while
/// every MR-row panel of the packed A block (in L2) passes over it. The inner dimension is cut into
/// equal blocks of at most KC (144 = 144, 288 = 2 × 144), not KC and a sliver.
const KC: usize = 192;
/// Rows of A per block (MC × KC floats = 384 KiB, in L2). Every B panel is packed once per block
/// of rows, and a convolution's panels are generated from the images (`Im2col`, `Im2colT`: masked
/// loads, and a transpose for the weight gradient): 512 puts the widest layers of the CIFAR
/// networks in one block, so no panel is generated twice.
const MC: usize = 512;

/// Rows of A and of B per [`gemm_nt`] tile.
const TA: usize = 4;
const TB: usize = 6;

/// Whether this CPU runs this module's kernels (AVX-512 F, not capped by `LT_KERNELS_ISA`).
pub(crate) fn available() -> bool {
    crate::simd::tier() >= crate::cpu::Isa::Avx512
}

/// Whether [`gemm_nn`] runs a product of m rows (rather than the `gemm` crate): it does up to 64
/// rows, the shapes it was written for. Measured per layer with `cargo xtask bench conv` on an
/// Intel Xeon (AVX-512, 2 threads): ResNet-20's forward and backward-data 1.2-2.5x `gemm`'s
/// GFLOP/s; on VGG-19's wider layers (128-512 rows, inner dimension 1,152-4,608) `gemm`'s blocking
/// was up to 1.3x faster.
pub(crate) fn nn_for(m: usize) -> bool {
    m <= 64 && available()
}

/// Whether convolutions whose im2col matrix [`Im2col`] can generate run on [`gemm_nn_from`], at
/// any number of rows: not writing and re-reading that matrix (9x the input) outweighs `gemm`'s
/// better blocking of wide products (VGG-19's convolutions: 1.2x less time in one run, 1.06x in
/// another, `cargo xtask bench conv`, Intel Xeon, 2 threads).
pub(crate) fn implicit_available() -> bool {
    available()
}

/// Whether [`gemm_nt`] runs a product of m rows: up to 16 (ResNet-20's first stage, where it ran
/// 1.3x `gemm`'s transposed product); from 32 rows `gemm`'s packed micro-kernels were faster.
pub(crate) fn nt_for(m: usize) -> bool {
    m <= 16 && available()
}

/// A 64-byte aligned, reusable scratch buffer of floats.
#[derive(Default)]
struct Scratch(Vec<Align64>);

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Align64([f32; 16]);

impl Scratch {
    fn get(&mut self, floats: usize) -> *mut f32 {
        let blocks = floats.div_ceil(16);
        if self.0.len() < blocks {
            self.0.resize(blocks, Align64([0.0; 16]));
        }
        self.0.as_mut_ptr().cast()
    }
}

thread_local! {
    /// Each thread's packed A block and packed B panel.
    static PACKED: RefCell<(Scratch, Scratch)> = RefCell::new(Default::default());
}

/// `C (m × n, row stride ldc) = [C +] A (m × k) · B (k × n)`, B with unit column stride.
///
/// # Safety
/// The CPU must have AVX-512 F ([`available`]); `c` must be valid for reads and writes of the
/// m × n matrix at row stride `ldc`; `a` and `b` must point to live m × k and k × n matrices.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments, reason = "a GEMM's sizes, operands and modes")]
pub(crate) unsafe fn gemm_nn(
    m: usize,
    n: usize,
    k: usize,
    a: View,
    b: View,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    debug_assert_eq!(b.cs, 1);
    // SAFETY: the caller's contract.
    unsafe { gemm_nn_from(m, n, k, Left::View(a), &b, c, ldc, accumulate) }
}

/// Where [`gemm_nn`]'s B panels come from: a matrix in memory, or a convolution's im2col matrix
/// generated panel by panel ([`Im2col`]).
pub(crate) trait Panels {
    /// Writes rows `pc..pc + kc`, columns `jr..jr + nr` of B into `dst`, a 64-byte aligned kc × NR
    /// panel, columns past nr zero.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F; `dst` must hold kc × NR floats; the rows and columns must
    /// exist in B.
    unsafe fn pack(&self, pc: usize, kc: usize, jr: usize, nr: usize, dst: *mut f32);
}

#[cfg(target_arch = "x86_64")]
impl Panels for View {
    unsafe fn pack(&self, pc: usize, kc: usize, jr: usize, nr: usize, dst: *mut f32) {
        // SAFETY: the caller's contract.
        unsafe { pack_b(*self, pc, kc, jr, nr, dst) }
    }
}

/// The inner-dimension block of a product with inner dimension k: k cut into equal blocks of at
/// most about [`KC`], each a multiple of 16 (so that [`Im2colT`]'s panels start at a 16-pixel block).
fn inner_block(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC).max(1)).next_multiple_of(16).min(k).max(1)
}

/// The left operand of a product, packed once for [`gemm_nn_from`] (a convolution's weights,
/// shared by every group of images and every thread): for each inner-dimension block at `pc`, all
/// m rows in panels of MR, at `m_rounded·pc + row·kc`.
pub(crate) struct PackedA {
    data: Scratch,
    m: usize,
    k: usize,
}

impl PackedA {
    /// Packs the m × k matrix `a` (any strides).
    ///
    /// # Safety
    /// `a` must point to a live m × k matrix.
    pub(crate) unsafe fn new(m: usize, k: usize, a: View) -> PackedA {
        let mut data = Scratch::default();
        let rounded = m.next_multiple_of(MR);
        let base = data.get(rounded * k);
        let block = inner_block(k);
        for pc in (0..k).step_by(block) {
            // SAFETY: the region of this block holds `rounded × kc` floats; `a` is the caller's.
            unsafe { pack_a(a, 0, m, pc, block.min(k - pc), base.add(rounded * pc)) };
        }
        PackedA { data, m, k }
    }

    /// Panel of rows `row..` (a multiple of MR) of the block at `pc` (kc wide).
    fn panel(&self, pc: usize, kc: usize, row: usize) -> *const f32 {
        self.data.0.as_ptr().cast::<f32>().wrapping_add(self.m.next_multiple_of(MR) * pc + row * kc)
    }
}

/// Where [`gemm_nn_from`]'s left operand comes from.
#[derive(Clone, Copy)]
pub(crate) enum Left<'a> {
    /// A matrix in memory, packed a block at a time as the product goes.
    View(View),
    /// Packed before.
    Packed(&'a PackedA),
}

/// [`gemm_nn`] with A in memory or packed, and B given by its panels.
///
/// # Safety
/// As [`gemm_nn`], with `b` able to pack every panel of a k × n matrix and a packed `a` of m × k.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments, reason = "a GEMM's sizes, operands and modes")]
pub(crate) unsafe fn gemm_nn_from(
    m: usize,
    n: usize,
    k: usize,
    a: Left,
    b: &impl Panels,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    if let Left::Packed(p) = a {
        assert!(p.m == m && p.k == k, "gemm_nn_from: A packed as {} x {}, used as {m} x {k}", p.m, p.k);
    }
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // SAFETY: the caller's contract.
        unsafe { clear(m, n, c, ldc, accumulate) };
        return;
    }
    PACKED.with_borrow_mut(|(scratch_a, pb)| {
        let block = inner_block(k);
        let pb = pb.get(block * NR);
        let scratch_a = match a {
            Left::View(_) => scratch_a.get(MC.min(m).next_multiple_of(MR) * block),
            Left::Packed(_) => std::ptr::null_mut(),
        };
        for pc in (0..k).step_by(block) {
            let kc = block.min(k - pc);
            let load = accumulate || pc > 0;
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                let pa = match a {
                    Left::View(view) => {
                        // SAFETY: the scratch buffer holds MC rows (rounded) × block; the view is the caller's.
                        unsafe { pack_a(view, ic, mc, pc, kc, scratch_a) };
                        scratch_a.cast_const()
                    }
                    Left::Packed(packed) => packed.panel(pc, kc, ic),
                };
                for jr in (0..n).step_by(NR) {
                    let nr = NR.min(n - jr);
                    // SAFETY: as above.
                    unsafe { b.pack(pc, kc, jr, nr, pb) };
                    let masks = [0, 16, 32].map(|j: usize| lanes(nr.saturating_sub(j)));
                    for ir in (0..mc).step_by(MR) {
                        let rows = MR.min(mc - ir);
                        // SAFETY: panel `ir / MR` of the packed block; C's rows ic + ir.. and
                        // columns jr.. (masked to the nr that exist).
                        unsafe {
                            micro_nn(kc, pa.add(ir * kc), pb, c.add((ic + ir) * ldc + jr), ldc, rows, masks, load)
                        }
                    }
                }
            }
        }
    });
}

/// The im2col matrix of a group of images for a stride-1 convolution whose output is the size
/// of its input ("same" padding: 3x3 with padding 1), never stored: [`gemm_nn_from`] gets each
/// panel straight from the images. Row (c, r, s) of the matrix is channel c shifted by
/// `(r − pad)·W + (s − pad)`, so 16 consecutive pixels of one image are one masked vector load;
/// the mask (precomputed per 16-pixel block and kernel offset) zeroes what falls outside the
/// image. Needs P·Q a multiple of 16, so that no vector spans two images.
pub(crate) struct Im2col {
    x: *const f32,
    /// Floats per image (C·H·W) and per channel plane (H·W).
    image: usize,
    plane: usize,
    /// Pixels per image (H·W = P·Q).
    pq: usize,
    /// Kernel offsets per channel (R·S).
    rs: usize,
    /// Per kernel offset (r, s): its shift in the plane.
    shift: Vec<isize>,
    /// Per 16-pixel block b and kernel offset o: the lanes inside the image, at `b·rs + o`.
    masks: Vec<u16>,
}

impl Im2col {
    /// The im2col matrix of `images` images at `x` (C × H × W each) for an R × S kernel with
    /// padding `pad`; `None` unless the shape allows it (output the input's size, H·W a multiple
    /// of 16).
    #[allow(clippy::too_many_arguments, reason = "a convolution's sizes")]
    pub(crate) fn new(x: &[f32], c: usize, h: usize, w: usize, r: usize, s: usize, pad: usize) -> Option<Im2col> {
        let pq = h * w;
        if !Im2col::fits(h, w, r, s, pad) || c == 0 || !x.len().is_multiple_of(c * pq) {
            return None;
        }
        let offsets: Vec<(isize, isize)> =
            (0..r).flat_map(|i| (0..s).map(move |j| (i as isize - pad as isize, j as isize - pad as isize))).collect();
        let shift = offsets.iter().map(|&(dr, ds)| dr * w as isize + ds).collect();
        let mut masks = Vec::with_capacity(pq / 16 * offsets.len());
        for block in 0..pq / 16 {
            for &(dr, ds) in &offsets {
                let mut mask = 0u16;
                for lane in 0..16 {
                    let pixel = block * 16 + lane;
                    let (ih, iw) = ((pixel / w) as isize + dr, (pixel % w) as isize + ds);
                    if ih >= 0 && ih < h as isize && iw >= 0 && iw < w as isize {
                        mask |= 1 << lane;
                    }
                }
                masks.push(mask);
            }
        }
        Some(Im2col { x: x.as_ptr(), image: c * pq, plane: pq, pq, rs: r * s, shift, masks })
    }
}

impl Im2col {
    /// Whether an R × S kernel with padding `pad` (stride 1) on H × W images has an [`Im2col`]:
    /// the output is the input's size and H·W a multiple of 16.
    pub(crate) fn fits(h: usize, w: usize, r: usize, s: usize, pad: usize) -> bool {
        h + 2 * pad + 1 == h + r && w + 2 * pad + 1 == w + s && (h * w).is_multiple_of(16)
    }

    /// Points the matrix at another group of images of the same shape.
    pub(crate) fn set_images(&mut self, x: &[f32]) {
        debug_assert!(x.len().is_multiple_of(self.image));
        self.x = x.as_ptr();
    }
}

#[cfg(target_arch = "x86_64")]
impl Panels for Im2col {
    unsafe fn pack(&self, pc: usize, kc: usize, jr: usize, nr: usize, dst: *mut f32) {
        // SAFETY: the caller's contract.
        unsafe { pack_im2col(self, pc, kc, jr, nr, dst) }
    }
}

/// [`Im2col`]'s panels: per 16 columns, one masked load per row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_im2col(g: &Im2col, pc: usize, kc: usize, jr: usize, nr: usize, dst: *mut f32) {
    for v in 0..NR / 16 {
        let j0 = jr + 16 * v;
        let exist = lanes(nr.saturating_sub(16 * v));
        if exist == 0 {
            for p in 0..kc {
                // SAFETY: row p of the panel.
                unsafe { _mm512_store_ps(dst.add(p * NR + 16 * v), _mm512_setzero_ps()) };
            }
            continue;
        }
        let (image, pixel) = (j0 / g.pq, j0 % g.pq);
        let base = g.x.wrapping_add(image * g.image + pixel);
        let masks = &g.masks[pixel / 16 * g.rs..][..g.rs];
        let (mut channel, mut offset) = (pc / g.rs, pc % g.rs);
        for p in 0..kc {
            let src = base.wrapping_offset((channel * g.plane) as isize + g.shift[offset]);
            // SAFETY: the masked lanes are pixels inside the image (`masks`) and columns that exist;
            // masked-off lanes are not read. Row p of the panel.
            unsafe { _mm512_store_ps(dst.add(p * NR + 16 * v), _mm512_maskz_loadu_ps(masks[offset] & exist, src)) };
            offset += 1;
            if offset == g.rs {
                offset = 0;
                channel += 1;
            }
        }
    }
}

/// `C (m × n) = [C +] A (m × k) · Bᵀ` where B is n × k: both with unit column stride (the inner
/// dimension contiguous), row strides `a.rs` and `b.rs`.
///
/// # Safety
/// As [`gemm_nn`], with B an n × k matrix.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments, reason = "a GEMM's sizes, operands and modes")]
pub(crate) unsafe fn gemm_nt(
    m: usize,
    n: usize,
    k: usize,
    a: View,
    b: View,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    debug_assert!(a.cs == 1 && b.cs == 1);
    if m == 0 || n == 0 {
        return;
    }
    // Tiles of B's rows outside, so that a TB-row stripe of B (TB × k floats) stays in L1 while
    // every TA-row stripe of A streams past it from L2.
    for j in (0..n).step_by(TB) {
        for i in (0..m).step_by(TA) {
            // SAFETY: the caller's contract; rows past m or n are clamped to the last one inside.
            unsafe { micro_nt(k, a, b, i, m, j, n, c, ldc, accumulate) }
        }
    }
}

/// Zeroes C (or leaves it, when accumulating): a product with an empty inner dimension.
unsafe fn clear(m: usize, n: usize, c: *mut f32, ldc: usize, accumulate: bool) {
    if !accumulate {
        for i in 0..m {
            // SAFETY: row i of the caller's C.
            unsafe { std::ptr::write_bytes(c.add(i * ldc), 0, n) };
        }
    }
}

/// The mask of the first `count` (at most 16) lanes.
fn lanes(count: usize) -> u16 {
    if count >= 16 { u16::MAX } else { (1u16 << count) - 1 }
}

/// Packs rows `ic..ic + mc`, columns `pc..pc + kc` of A into panels of MR rows: panel q holds
/// element (q·MR + i, p) at `q·MR·kc + p·MR + i`, rows past the block zero.
unsafe fn pack_a(a: View, ic: usize, mc: usize, pc: usize, kc: usize, dst: *mut f32) {
    for (q, i0) in (0..mc).step_by(MR).enumerate() {
        // SAFETY: the panel lies inside the packed block (sized for mc rounded up to MR).
        let panel = unsafe { dst.add(q * MR * kc) };
        for i in 0..MR {
            let row = ic + i0 + i;
            if i0 + i < mc {
                let src = a.ptr.wrapping_offset(row as isize * a.rs + pc as isize * a.cs);
                for p in 0..kc {
                    // SAFETY: element (row, pc + p) of the caller's A; slot p·MR + i of the panel.
                    unsafe { *panel.add(p * MR + i) = *src.offset(p as isize * a.cs) };
                }
            } else {
                for p in 0..kc {
                    // SAFETY: as above.
                    unsafe { *panel.add(p * MR + i) = 0.0 };
                }
            }
        }
    }
}

/// Packs rows `pc..pc + kc`, columns `jr..jr + nr` of B (unit column stride) into a kc × NR
/// panel (64-byte aligned), columns past nr zero: three masked vector copies a row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_b(b: View, pc: usize, kc: usize, jr: usize, nr: usize, dst: *mut f32) {
    let masks = [0, 16, 32].map(|j: usize| lanes(nr.saturating_sub(j)));
    for p in 0..kc {
        let src = b.ptr.wrapping_offset((pc + p) as isize * b.rs + jr as isize);
        for (j, mask) in masks.into_iter().enumerate() {
            // SAFETY: the masked lanes are columns jr.. of row pc + p of the caller's B; the
            // panel has kc aligned rows of NR floats.
            unsafe { _mm512_store_ps(dst.add(p * NR + 16 * j), _mm512_maskz_loadu_ps(mask, src.add(16 * j))) };
        }
    }
}

/// The transpose of an [`Im2col`] matrix: rows are the group's pixels, columns the (c, r, s)
/// rows of the im2col matrix: the right operand of a convolution's weight gradient
/// `dW = dy · colᵀ`, whose inner dimension is the pixels. Each 16 × 16 block of a panel is 16
/// masked row loads of the im2col matrix, transposed in registers.
pub(crate) struct Im2colT(pub(crate) Im2col);

#[cfg(target_arch = "x86_64")]
impl Panels for Im2colT {
    unsafe fn pack(&self, pc: usize, kc: usize, jr: usize, nr: usize, dst: *mut f32) {
        // SAFETY: the caller's contract.
        unsafe { pack_im2col_t(&self.0, pc, kc, jr, nr, dst) }
    }
}

/// [`Im2colT`]'s panels: `pc` and `kc` are multiples of 16 (the inner blocks of [`gemm_nn_from`],
/// and the group's pixel count, a multiple of 16 by [`Im2col::fits`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_im2col_t(g: &Im2col, pc: usize, kc: usize, jr: usize, nr: usize, dst: *mut f32) {
    debug_assert!(pc.is_multiple_of(16) && kc.is_multiple_of(16));
    for block in (0..kc).step_by(16) {
        let first = pc + block;
        let (image, pixel) = (first / g.pq, first % g.pq);
        let base = g.x.wrapping_add(image * g.image + pixel);
        let masks = &g.masks[pixel / 16 * g.rs..][..g.rs];
        for v in 0..NR / 16 {
            let mut rows = [_mm512_setzero_ps(); 16];
            for (t, row) in rows.iter_mut().enumerate() {
                let j = jr + 16 * v + t;
                if j < jr + nr {
                    let (channel, offset) = (j / g.rs, j % g.rs);
                    let src = base.wrapping_offset((channel * g.plane) as isize + g.shift[offset]);
                    // SAFETY: the masked lanes are pixels inside the image; the rest are not read.
                    *row = unsafe { _mm512_maskz_loadu_ps(masks[offset], src) };
                }
            }
            let columns = transpose16(rows);
            for (t, column) in columns.into_iter().enumerate() {
                // SAFETY: row block + t of the panel (kc rows of NR floats, 64-byte aligned).
                unsafe { _mm512_store_ps(dst.add((block + t) * NR + 16 * v), column) };
            }
        }
    }
}

/// The transpose of the rows × cols row-major matrix `a`, by 16 × 16 blocks transposed in
/// registers; the 16-column stripes of `a` (16 rows of the result each) are shared among the
/// pool's threads. A weight matrix's reorganization for `conv::taps`: column by column, a 512 ×
/// 4,608 transpose misses the cache on every write.
///
/// # Safety
/// The CPU must have AVX-512 F ([`available`]).
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    use rayon::prelude::*;
    assert_eq!(a.len(), rows * cols, "transpose: {} values for {rows} x {cols}", a.len());
    if a.is_empty() {
        return Vec::new();
    }
    let fill = |t: &mut [std::mem::MaybeUninit<f32>]| {
        t.par_chunks_mut(16 * rows).enumerate().for_each(|(stripe, out)| {
            // SAFETY: the CPU has AVX-512 F (the caller's contract); `out` is rows c0.. of the
            // result, `out.len() / rows` (at most 16) of them.
            unsafe { transpose_stripe(a, rows, cols, stripe * 16, out) }
        })
    };
    // SAFETY: every stripe writes all its `width × rows` values.
    unsafe { crate::simd::written(a.len(), fill) }
}

/// `a` (rows × cols) transposed into `out` (cols × rows), on this thread: for the many small
/// transposes of one parallel loop, where [`transpose`]'s own threads would only get in the way.
///
/// # Safety
/// The CPU must have AVX-512 F ([`available`]).
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn transpose_into(a: &[f32], rows: usize, cols: usize, out: &mut [std::mem::MaybeUninit<f32>]) {
    assert!(
        a.len() == rows * cols && out.len() == a.len(),
        "transpose_into: {} values, {} places for {rows} x {cols}",
        a.len(),
        out.len()
    );
    for (stripe, out) in out.chunks_mut(16 * rows.max(1)).enumerate() {
        // SAFETY: the CPU has AVX-512 F (the caller's contract); `out` is rows 16·stripe.. of
        // the result, at most 16 of them.
        unsafe { transpose_stripe(a, rows, cols, stripe * 16, out) }
    }
}

/// Columns `c0..c0 + out.len() / rows` of `a` (rows × cols) into `out` as rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_stripe(a: &[f32], rows: usize, cols: usize, c0: usize, out: &mut [std::mem::MaybeUninit<f32>]) {
    let width = out.len() / rows;
    let mask = lanes(width);
    for r0 in (0..rows).step_by(16) {
        let height = 16.min(rows - r0);
        let mut block = [_mm512_setzero_ps(); 16];
        for (i, v) in block.iter_mut().enumerate().take(height) {
            // SAFETY: the `width` masked lanes are a[r0 + i][c0..c0 + width], inside `a`.
            *v = unsafe { _mm512_maskz_loadu_ps(mask, a.as_ptr().add((r0 + i) * cols + c0)) };
        }
        let columns = transpose16(block);
        let stored = lanes(height);
        for (j, v) in columns.into_iter().enumerate().take(width) {
            // SAFETY: the `height` masked lanes are out[j·rows + r0..][..height], inside `out`.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(j * rows + r0).cast(), stored, v) };
        }
    }
}

/// The 16 × 16 transpose of 16 vectors: three rounds of interleaving (32-bit, 64-bit, then
/// 128-bit lanes twice).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 { _mm512_unpacklo_ps(a, b) } else { _mm512_unpackhi_ps(a, b) }
    });
    // Row 4g + c: rows 4g..4g + 3 of column 4L + c in each 128-bit lane L.
    let u: [__m512; 16] = std::array::from_fn(|i| {
        let g = i / 4 * 4;
        let (a, b) = match i % 4 {
            0 | 1 => (t[g], t[g + 2]),
            _ => (t[g + 1], t[g + 3]),
        };
        let (a, b) = (_mm512_castps_pd(a), _mm512_castps_pd(b));
        _mm512_castpd_ps(if i % 2 == 0 { _mm512_unpacklo_pd(a, b) } else { _mm512_unpackhi_pd(a, b) })
    });
    // Lanes 0 and 2 (0x88) or 1 and 3 (0xdd) of rows i and i + 4, for row blocks 0-7 and 8-15.
    let w: [__m512; 16] = std::array::from_fn(|i| {
        let base = if i < 8 { 0 } else { 8 };
        let c = i % 4;
        let (a, b) = (u[base + c], u[base + c + 4]);
        if i % 8 < 4 { _mm512_shuffle_f32x4::<0x88>(a, b) } else { _mm512_shuffle_f32x4::<0xdd>(a, b) }
    });
    std::array::from_fn(|i| {
        let c = i % 8;
        let (a, b) = (w[c], w[c + 8]);
        if i < 8 { _mm512_shuffle_f32x4::<0x88>(a, b) } else { _mm512_shuffle_f32x4::<0xdd>(a, b) }
    })
}

/// C's MR × NR tile (`rows` rows and the lanes in `masks` exist) `= [C +] Σ_p a[p] ⊗ b[p]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments, reason = "a micro-kernel's operands")]
unsafe fn micro_nn(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    masks: [u16; 3],
    load: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 3]; MR];
    for p in 0..kc {
        // SAFETY: the packed panels hold kc steps of NR (B) and MR (A) floats, B 64-byte aligned.
        unsafe {
            let bp = b.add(p * NR);
            let bv = [_mm512_load_ps(bp), _mm512_load_ps(bp.add(16)), _mm512_load_ps(bp.add(32))];
            let ap = a.add(p * MR);
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*ap.add(i));
                for (v, bj) in row.iter_mut().zip(bv) {
                    *v = _mm512_fmadd_ps(ai, bj, *v);
                }
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        if i >= rows {
            break;
        }
        for (j, (v, mask)) in row.iter().zip(masks).enumerate() {
            if mask == 0 {
                continue;
            }
            // SAFETY: the masked lanes of row i, columns 16·j.. exist in the caller's C.
            unsafe {
                let dst = c.add(i * ldc + 16 * j);
                let v = if load { _mm512_add_ps(*v, _mm512_maskz_loadu_ps(mask, dst)) } else { *v };
                _mm512_mask_storeu_ps(dst, mask, v);
            }
        }
    }
}

/// The TA × TB tile of `C = [C +] A · Bᵀ` at rows i.. and columns j..: rows of A past m (of B
/// past n) are computed from the last row and not stored.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments, reason = "a micro-kernel's operands")]
unsafe fn micro_nt(
    k: usize,
    a: View,
    b: View,
    i: usize,
    m: usize,
    j: usize,
    n: usize,
    c: *mut f32,
    ldc: usize,
    load: bool,
) {
    let ar: [*const f32; TA] = std::array::from_fn(|t| a.ptr.wrapping_offset((i + t).min(m - 1) as isize * a.rs));
    let br: [*const f32; TB] = std::array::from_fn(|t| b.ptr.wrapping_offset((j + t).min(n - 1) as isize * b.rs));
    let mut acc = [[_mm512_setzero_ps(); TB]; TA];
    let mut p = 0;
    while p < k {
        let mask = lanes(k - p);
        // SAFETY: the masked lanes p.. of each row lie inside the caller's rows of k floats.
        unsafe {
            let bv: [__m512; TB] = std::array::from_fn(|t| _mm512_maskz_loadu_ps(mask, br[t].add(p)));
            for (row, ap) in acc.iter_mut().zip(ar) {
                let av = _mm512_maskz_loadu_ps(mask, ap.add(p));
                for (v, bt) in row.iter_mut().zip(bv) {
                    *v = _mm512_fmadd_ps(av, bt, *v);
                }
            }
        }
        p += 16;
    }
    for (ti, row) in acc.iter().enumerate() {
        if i + ti >= m {
            break;
        }
        for (tj, v) in row.iter().enumerate() {
            if j + tj >= n {
                break;
            }
            // SAFETY: element (i + ti, j + tj) of the caller's C.
            unsafe {
                let dst = c.add((i + ti) * ldc + j + tj);
                let sum = _mm512_reduce_add_ps(*v);
                *dst = if load { *dst + sum } else { sum };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use proptest::prelude::*;

    use super::*;

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    /// The product in f64 by the definition, with strides.
    #[allow(clippy::too_many_arguments, reason = "a product's sizes and two strided operands")]
    fn reference(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        ars: usize,
        acs: usize,
        b: &[f32],
        brs: usize,
        bcs: usize,
    ) -> Vec<f64> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| f64::from(a[i * ars + p * acs]) * f64::from(b[p * brs + j * bcs])).sum();
            }
        }
        c
    }

    fn close(ours: &[f32], expected: &[f64], k: usize) {
        for (x, e) in ours.iter().zip(expected) {
            assert!((f64::from(*x) - e).abs() <= 1e-5 * (k as f64).sqrt() * (1.0 + e.abs()), "{x} vs {e}");
        }
    }

    /// Both kernels against the definition, over the edges of every block (m past MR and MC, n past
    /// NR, k past KC and not a multiple of 16), with and without accumulation, A transposed or not.
    fn check(m: usize, n: usize, k: usize, a_transposed: bool, accumulate: bool, seed: u64) {
        if !available() {
            eprintln!("note: this CPU has no AVX-512 (or LT_KERNELS_ISA caps it): the AVX-512 GEMM is not tested here");
            return;
        }
        let a = values(m * k, seed);
        let (ars, acs) = if a_transposed { (1, m) } else { (k, 1) };
        let b = values(k * n, seed + 1);
        let start = values(m * n, seed + 2);
        let mut expected = reference(m, n, k, &a, ars, acs, &b, n, 1);
        if accumulate {
            expected.iter_mut().zip(&start).for_each(|(e, s)| *e += f64::from(*s));
        }
        let av = View { ptr: a.as_ptr(), rs: ars as isize, cs: acs as isize };
        let mut c = start.clone();
        // SAFETY: the CPU has AVX-512 (checked); the buffers hold the matrices.
        unsafe { gemm_nn(m, n, k, av, View { ptr: b.as_ptr(), rs: n as isize, cs: 1 }, c.as_mut_ptr(), n, accumulate) };
        close(&c, &expected, k);
        if !a_transposed {
            // Bᵀ stored row-major (n × k) for the dot-product kernel.
            let bt: Vec<f32> = (0..n * k).map(|x| b[(x % k) * n + x / k]).collect();
            let mut c = start.clone();
            // SAFETY: as above.
            unsafe {
                gemm_nt(m, n, k, av, View { ptr: bt.as_ptr(), rs: k as isize, cs: 1 }, c.as_mut_ptr(), n, accumulate)
            };
            close(&c, &expected, k);
        }
    }

    /// The register-blocked transpose, over full and partial 16 × 16 blocks in both directions.
    #[test]
    fn transpose_matches_the_definition() {
        if !available() {
            eprintln!("note: this CPU has no AVX-512 (or LT_KERNELS_ISA caps it): the transpose is not tested here");
            return;
        }
        for (rows, cols) in [(1, 1), (16, 16), (9, 40), (17, 33), (520, 1800), (3, 1)] {
            let a = values(rows * cols, (rows * cols) as u64);
            // SAFETY: the CPU has AVX-512 (checked).
            let t = unsafe { transpose(&a, rows, cols) };
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], a[r * cols + c], "{rows} x {cols} at ({r}, {c})");
                }
            }
        }
    }

    #[test]
    fn block_edges_match_the_definition() {
        for (i, &(m, n, k)) in [
            (16, 1024, 144),
            (3, 5, 7),
            (MR + 1, NR + 1, KC + 1),
            (MC + 3, 2 * NR - 1, 2 * KC + 17),
            (1, 1, 1),
            (5, 7, 0),
        ]
        .iter()
        .enumerate()
        {
            for (t, acc) in [(false, false), (true, true), (false, true)] {
                check(m, n, k, t, acc, 10 * i as u64);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn random_shapes_match_the_definition(
            m in 1usize..40, n in 1usize..120, k in 0usize..300, t: bool, acc: bool, seed in 0u64..1000,
        ) {
            check(m, n, k, t, acc, seed);
        }
    }
}
