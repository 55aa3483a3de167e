//! Linear layers whose weights follow a fixed sparsity pattern (a pruning mask): the products skip
//! the pruned weights instead of multiplying by their zeros.
//!
//! With the batch as the vector dimension (activations transposed to features × batch, the batch
//! padded to a multiple of [`BLOCK`]), every kept weight is one multiply-add of a weight by a row
//! of [`BLOCK`] activations into [`BLOCK`] accumulators held in registers:
//! - forward: `yᵀ[o] = Σ_{i ∈ row o} W[o,i] · xᵀ[i]` (the pattern by rows);
//! - backward-data: `dxᵀ[i] = Σ_{o ∈ column i} W[o,i] · dyᵀ[o]` (the pattern by columns);
//! - backward-weight, only at kept weights: `dW[o,i] = dyᵀ[o] · xᵀ[i]`; elsewhere 0, which is what
//!   the masked optimizer step makes of those weights' gradients anyway.
//!
//! A dense GEMM reuses each loaded value across a register tile and this cannot, so the sparse
//! path wins only below some density; `cargo xtask bench sparse` measures where, and
//! [`SPARSE_BELOW`] is that measurement.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::linear::{column_sums, fast_path, product_gradient};
use crate::record::{apply2, apply3};
use crate::simd::{add_into, relu_in_place};
use crate::slices::{contiguous, with_slice};

/// Batch columns per accumulator block: eight AVX registers of eight floats.
pub const BLOCK: usize = 64;

/// Density (kept / all weights) below which a [`Pattern`] is worth using for a linear layer of at
/// least [`SPARSE_MIN_WEIGHTS`] weights: the crossover that `cargo xtask bench sparse` measured
/// for LeNet-300-100's first layer in training (see BENCHMARKS.md), rounded down.
pub const SPARSE_BELOW: f64 = 0.1;

/// Smaller layers than this never gained from the sparse path (LeNet-300-100's 300 x 100 layer
/// lost at every density down to 1%: its fixed costs, the transposes, outweigh its products).
pub const SPARSE_MIN_WEIGHTS: usize = 100_000;

/// The kept weights of an (outputs × inputs) matrix, by rows and by columns. An entry is (the
/// other index, the weight's position `o·inputs + i` in the row-major matrix), built once per
/// pattern so that the products only read it; every index is in range by construction.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    outputs: usize,
    inputs: usize,
    /// By rows (outputs): `by_row[row_ptr[o]..row_ptr[o + 1]]` are row o's (input, position).
    row_ptr: Vec<usize>,
    by_row: Vec<(u32, usize)>,
    /// By columns (inputs): `by_col[col_ptr[i]..col_ptr[i + 1]]` are column i's (output, position).
    col_ptr: Vec<usize>,
    by_col: Vec<(u32, usize)>,
}

impl Pattern {
    /// The pattern of the nonzero entries of `mask` (outputs × inputs, row-major).
    pub fn from_mask(mask: &[f32], outputs: usize, inputs: usize) -> Result<Self> {
        if mask.len() != outputs * inputs || u32::try_from(outputs.max(inputs)).is_err() {
            candle_core::bail!("sparse pattern: a mask of {} values for {outputs} x {inputs} weights", mask.len())
        }
        let (mut row_ptr, mut by_row) = (vec![0], Vec::new());
        let mut per_col = vec![0usize; inputs];
        for (o, row) in mask.chunks_exact(inputs.max(1)).take(outputs).enumerate() {
            for (i, _) in row.iter().enumerate().filter(|(_, m)| **m != 0.0) {
                by_row.push((i as u32, o * inputs + i));
                per_col[i] += 1;
            }
            row_ptr.push(by_row.len());
        }
        let mut col_ptr = vec![0usize; inputs + 1];
        for i in 0..inputs {
            col_ptr[i + 1] = col_ptr[i] + per_col[i];
        }
        let mut next = col_ptr.clone();
        let mut by_col = vec![(0u32, 0usize); by_row.len()];
        for o in 0..outputs {
            for &(i, position) in &by_row[row_ptr[o]..row_ptr[o + 1]] {
                by_col[next[i as usize]] = (o as u32, position);
                next[i as usize] += 1;
            }
        }
        Ok(Pattern { outputs, inputs, row_ptr, by_row, col_ptr, by_col })
    }

    /// Kept weights / all weights.
    pub fn density(&self) -> f64 {
        self.by_row.len() as f64 / (self.outputs * self.inputs).max(1) as f64
    }

    /// (outputs, inputs).
    pub fn dims(&self) -> (usize, usize) {
        (self.outputs, self.inputs)
    }
}

/// Batch size rounded up to whole [`BLOCK`]s.
fn padded(n: usize) -> usize {
    n.div_ceil(BLOCK).max(1) * BLOCK
}

/// Tile side of the transposes: a 16 × 16 tile of either side fits in L1.
const TILE: usize = 16;

/// `x` (n × f, row-major) transposed to f × padded(n), the padding zero.
fn transpose_padded(x: &[f32], n: usize, f: usize) -> Vec<f32> {
    let np = padded(n);
    let mut t = vec![0f32; f * np];
    for b0 in (0..n).step_by(TILE) {
        for j0 in (0..f).step_by(TILE) {
            for b in b0..(b0 + TILE).min(n) {
                for j in j0..(j0 + TILE).min(f) {
                    t[j * np + b] = x[b * f + j];
                }
            }
        }
    }
    t
}

/// `t` (f × padded(n)) transposed back to n × f.
fn untranspose(t: &[f32], n: usize, f: usize) -> Vec<f32> {
    let np = padded(n);
    let mut x = vec![0f32; n * f];
    for j0 in (0..f).step_by(TILE) {
        for b0 in (0..n).step_by(TILE) {
            for j in j0..(j0 + TILE).min(f) {
                for b in b0..(b0 + TILE).min(n) {
                    x[b * f + j] = t[j * np + b];
                }
            }
        }
    }
    x
}

/// One output row of a sparse × dense product: `out = Σ_e w[weight(e)] · src[index(e)]`, rows
/// of `src` being `cols` long (a multiple of [`BLOCK`]). The AVX2 version keeps the block's 64
/// sums in eight registers and uses FMA (Rust does not contract `a * b + c` by itself).
///
/// # Safety
/// Every entry's weight position must be inside `w` and its row inside `src` ([`spmm`] checks
/// the sizes once; a [`Pattern`]'s entries are in range by construction).
unsafe fn sparse_row(out: &mut [f32], entries: &[(u32, usize)], w: &[f32], src: &[f32], cols: usize) {
    assert!(out.len() == cols && cols.is_multiple_of(BLOCK));
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx2() {
        // SAFETY: AVX2 and FMA are present; the caller bounds every index the kernel reads.
        return unsafe { sparse_row_avx2(out, entries, w, src, cols) };
    }
    for (o, block) in out.chunks_exact_mut(BLOCK).enumerate() {
        let mut acc = [0f32; BLOCK];
        for &(index, weight) in entries {
            let v = w[weight];
            for (a, s) in acc.iter_mut().zip(&src[index as usize * cols + o * BLOCK..][..BLOCK]) {
                *a += v * s;
            }
        }
        block.copy_from_slice(&acc);
    }
}

/// # Safety
/// The CPU must have AVX2 and FMA; `out.len() == cols`, `cols` a multiple of [`BLOCK`], every
/// entry's weight index inside `w` and row inside `src`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sparse_row_avx2(out: &mut [f32], entries: &[(u32, usize)], w: &[f32], src: &[f32], cols: usize) {
    use std::arch::x86_64::*;
    for o in (0..cols).step_by(BLOCK) {
        let mut acc = [_mm256_setzero_ps(); BLOCK / 8];
        for &(index, weight) in entries {
            // SAFETY: the caller's bounds (above).
            unsafe {
                let v = _mm256_set1_ps(*w.get_unchecked(weight));
                let row = src.as_ptr().add(index as usize * cols + o);
                for (l, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(v, _mm256_loadu_ps(row.add(8 * l)), *a);
                }
            }
        }
        for (l, a) in acc.iter().enumerate() {
            // SAFETY: o + 64 <= cols = out.len().
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(o + 8 * l), *a) };
        }
    }
}

/// `Σ a · b` over two rows of equal, [`BLOCK`]-multiple length.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert!(a.len() == b.len() && a.len().is_multiple_of(BLOCK));
    #[cfg(target_arch = "x86_64")]
    if crate::simd::has_avx2() {
        // SAFETY: AVX2 and FMA are present; the lengths are checked above.
        return unsafe { dot_avx2(a, b) };
    }
    let mut acc = [0f32; 8];
    for (a, b) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += a[l] * b[l];
        }
    }
    acc.iter().sum()
}

/// # Safety
/// The CPU must have AVX2 and FMA; `a` and `b` of equal length, a multiple of [`BLOCK`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); BLOCK / 8];
    for o in (0..a.len()).step_by(BLOCK) {
        for (l, s) in acc.iter_mut().enumerate() {
            // SAFETY: o + 64 <= the length of both.
            unsafe {
                let (x, y) = (_mm256_loadu_ps(a.as_ptr().add(o + 8 * l)), _mm256_loadu_ps(b.as_ptr().add(o + 8 * l)));
                *s = _mm256_fmadd_ps(x, y, *s);
            }
        }
    }
    // A tree of vector adds, then the eight lanes.
    let s = _mm256_add_ps(
        _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])),
        _mm256_add_ps(_mm256_add_ps(acc[4], acc[5]), _mm256_add_ps(acc[6], acc[7])),
    );
    let q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    _mm_cvtss_f32(_mm_add_ss(q, _mm_shuffle_ps::<1>(q, q)))
}

/// The sparse × dense product over the pattern's rows (`by_rows`: out = W · src, one row per
/// output) or columns (out = Wᵀ · src, one row per input), `src` rows `cols` long.
fn spmm(p: &Pattern, w: &[f32], src: &[f32], cols: usize, by_rows: bool) -> Vec<f32> {
    let (rows_out, src_rows, ptr, entries) = if by_rows {
        (p.outputs, p.inputs, &p.row_ptr, &p.by_row)
    } else {
        (p.inputs, p.outputs, &p.col_ptr, &p.by_col)
    };
    assert!(w.len() == p.outputs * p.inputs && src.len() >= src_rows * cols);
    let mut out = vec![0f32; rows_out * cols];
    out.par_chunks_mut(cols).enumerate().for_each(|(r, row)| {
        // SAFETY: positions < outputs·inputs = w.len() and indices < src_rows (the pattern's
        // construction), and src holds src_rows rows (asserted above).
        unsafe { sparse_row(row, &entries[ptr[r]..ptr[r + 1]], w, src, cols) }
    });
    out
}

/// `y = x · Wᵀ (+ b)`, then ReLU when `relu`, with `W`'s kept weights given by `pattern`;
/// differentiable in all three (the weight gradient only at kept weights). Falls back to the
/// dense [`crate::linear`] where the fast path does not apply.
pub fn sparse_linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, relu: bool, pattern: &Arc<Pattern>) -> Result<Tensor> {
    let (o, i) = w.dims2()?;
    if pattern.dims() != (o, i) {
        candle_core::bail!("sparse linear: a pattern of {:?} for weights of {:?}", pattern.dims(), w.dims())
    }
    // A mismatched input goes to the dense layer too, which names the problem.
    if !fast_path(x, w, b) || x.dims()[1] != i {
        return crate::linear(x, w, b, relu);
    }
    let op = SparseLinear { n: x.dims()[0], relu, pattern: pattern.clone() };
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match b {
        Some(b) if b.dims() != [o] => candle_core::bail!("linear: bias of shape {:?} for {o} outputs", b.dims()),
        Some(b) => apply3(&x, &w, &b.contiguous()?, op),
        None => apply2(&x, &w, op),
    }
}

struct SparseLinear {
    n: usize,
    relu: bool,
    pattern: Arc<Pattern>,
}

impl SparseLinear {
    fn forward(&self, x: &[f32], w: &[f32], b: Option<&[f32]>) -> (CpuStorage, Shape) {
        let (o, i) = self.pattern.dims();
        let xt = transpose_padded(x, self.n, i);
        let yt = spmm(&self.pattern, w, &xt, padded(self.n), true);
        let mut y = untranspose(&yt, self.n, o);
        if let Some(b) = b {
            y.chunks_exact_mut(o.max(1)).for_each(|row| add_into(row, b));
        }
        if self.relu {
            relu_in_place(&mut y);
        }
        (CpuStorage::F32(y), Shape::from((self.n, o)))
    }

    /// (dx, dw, db) from the output gradient, each where its tensor tracks gradients.
    fn backward(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (o, i) = self.pattern.dims();
        let n = self.n;
        let dy = product_gradient(res, dy, self.relu)?;
        let gt = with_slice(&dy, |g| Ok(transpose_padded(g, n, o)))?;
        let dev = dy.device();
        let dx = if x.track_op() {
            let dxt = with_slice(&w.contiguous()?, |w| Ok(spmm(&self.pattern, w, &gt, padded(n), false)))?;
            Some(Tensor::from_vec(untranspose(&dxt, n, i), (n, i), dev)?)
        } else {
            None
        };
        let dw = if w.track_op() {
            let xt = with_slice(&x.contiguous()?, |x| Ok(transpose_padded(x, n, i)))?;
            let np = padded(n);
            let p = &self.pattern;
            let mut dw = vec![0f32; o * i];
            dw.par_chunks_mut(i.max(1)).enumerate().for_each(|(r, row)| {
                for &(c, _) in &p.by_row[p.row_ptr[r]..p.row_ptr[r + 1]] {
                    row[c as usize] = dot(&gt[r * np..(r + 1) * np], &xt[c as usize * np..(c as usize + 1) * np]);
                }
            });
            Some(Tensor::from_vec(dw, (o, i), dev)?)
        } else {
            None
        };
        let db = match b {
            Some(b) if b.track_op() => Some(column_sums(&dy)?),
            _ => None,
        };
        Ok((dx, dw, db))
    }
}

impl CustomOp2 for SparseLinear {
    fn name(&self) -> &'static str {
        "lt-sparse-linear"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok(self.forward(contiguous(s1, l1)?, contiguous(s2, l2)?, None))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = self.backward(x, w, None, res, dy)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for SparseLinear {
    fn name(&self) -> &'static str {
        "lt-sparse-linear-bias"
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
        Ok(self.forward(contiguous(s1, l1)?, contiguous(s2, l2)?, Some(contiguous(s3, l3)?)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.backward(x, w, Some(b), res, dy)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use candle_core::{Device, Var};
    use proptest::prelude::*;

    use super::*;
    use crate::testing::{max_diff, rand};

    /// A 0/1 mask keeping about `density` of an o × i matrix.
    fn mask(o: usize, i: usize, density: f64, seed: u64) -> Vec<f32> {
        let r: Vec<f32> = rand(&[o, i], seed).flatten_all().unwrap().to_vec1().unwrap();
        r.iter().map(|v| f32::from((*v as f64 + 1.0) / 2.0 < density)).collect()
    }

    /// Forward and every gradient against the dense layer with masked weights; the weight
    /// gradient matches the dense one on kept weights and is zero on pruned ones.
    fn check(n: usize, i: usize, o: usize, density: f64, bias: bool, relu: bool, seed: u64) {
        let m = mask(o, i, density, seed + 9);
        let mt = Tensor::from_vec(m.clone(), (o, i), &Device::Cpu).unwrap();
        let pattern = Arc::new(Pattern::from_mask(&m, o, i).unwrap());
        let x = Var::from_tensor(&rand(&[n, i], seed)).unwrap();
        let w = Var::from_tensor(&(rand(&[o, i], seed + 1) * &mt).unwrap()).unwrap();
        let b = Var::from_tensor(&rand(&[o], seed + 2)).unwrap();
        let bt = bias.then(|| b.as_tensor());
        let ours = sparse_linear(x.as_tensor(), w.as_tensor(), bt, relu, &pattern).unwrap();
        let dense = crate::linear(x.as_tensor(), w.as_tensor(), bt, relu).unwrap();
        let tol = 1e-5 * (i as f32).max(1.0);
        assert!(max_diff(&ours, &dense) <= tol, "forward");
        let probe = rand(ours.dims(), seed + 3);
        let g1 = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&dense * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let tol = 1e-5 * (n.max(o) as f32);
        let dx = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        assert!(max_diff(dx.0, dx.1) <= tol, "input gradient");
        let dw_dense_masked = (g2.get(w.as_tensor()).unwrap() * &mt).unwrap();
        assert!(max_diff(g1.get(w.as_tensor()).unwrap(), &dw_dense_masked) <= tol, "weight gradient");
        if bias {
            assert!(max_diff(g1.get(b.as_tensor()).unwrap(), g2.get(b.as_tensor()).unwrap()) <= tol, "bias gradient");
        }
    }

    #[test]
    fn lenet_shapes_match_the_dense_layer() {
        check(60, 784, 300, 0.2, true, true, 1);
        check(60, 300, 100, 0.05, true, true, 2);
        check(130, 100, 10, 0.5, true, false, 3);
    }

    #[test]
    fn patterns_count_and_index_the_kept_weights() {
        let m = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0];
        let p = Pattern::from_mask(&m, 2, 3).unwrap();
        assert_eq!((p.row_ptr.clone(), p.by_row.clone()), (vec![0, 2, 3], vec![(0, 0), (2, 2), (2, 5)]));
        assert_eq!((p.col_ptr.clone(), p.by_col.clone()), (vec![0, 1, 1, 3], vec![(0, 0), (0, 2), (1, 5)]));
        assert!((p.density() - 0.5).abs() < 1e-12);
        let e = Pattern::from_mask(&m, 3, 3).unwrap_err().to_string();
        assert!(e.contains("a mask of 6 values for 3 x 3 weights"), "{e}");
        let w = Tensor::zeros((4, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let x = Tensor::zeros((1, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let e = sparse_linear(&x, &w, None, false, &Arc::new(p)).unwrap_err().to_string();
        assert!(e.contains("a pattern of (2, 3) for weights of [4, 3]"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn random_shapes_match_the_dense_layer(
            n in 1usize..150, i in 1usize..50, o in 1usize..40, density in 0.0f64..1.0,
            bias: bool, relu: bool, seed in 0u64..1000,
        ) {
            check(n, i, o, density, bias, relu, seed);
        }
    }
}
