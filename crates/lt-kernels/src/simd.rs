//! Elementwise loops compiled three times, for AVX-512, for AVX2+FMA and for the baseline x86-64
//! (SSE2), chosen at run time; and output buffers that are written once instead of zeroed first.
//!
//! The workspace builds for the baseline target so that binaries run on any x86-64 machine; the
//! `gemm` crate already dispatches its micro-kernels at run time, and this module does the same
//! for this crate's own loops. Loops here are written so that LLVM vectorizes them without
//! fast-math: no reductions in one accumulator (see [`sum_and_sum_sq`]'s lanes), no calls.
//! `LT_KERNELS_ISA=avx2|baseline` caps the tier (to compare tiers on one machine); tests compare
//! each tier's results on the same inputs with [`at_tier`].

#[cfg(test)]
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

pub(crate) use crate::cpu::Isa;

/// Defines a function whose body is compiled once each for AVX-512, for AVX2 with FMA and for
/// the baseline, and calls the widest that [`tier`] allows.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])* $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn inner($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    inner($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    inner($($arg),*)
                }
                match $crate::simd::tier() {
                    // SAFETY: `tier` never exceeds what the CPU has (`Isa::detect`).
                    $crate::simd::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    $crate::simd::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::simd::Isa::Baseline => {}
                }
            }
            inner($($arg),*)
        }
    };
}
pub(crate) use multiversion;

/// The widest tier this CPU has, capped by `LT_KERNELS_ISA` (read once).
fn detected() -> Isa {
    static TIER: OnceLock<Isa> = OnceLock::new();
    *TIER.get_or_init(|| {
        let cap = match std::env::var("LT_KERNELS_ISA").as_deref() {
            Ok("baseline") => Isa::Baseline,
            Ok("avx2") => Isa::Avx2,
            _ => Isa::Avx512,
        };
        Isa::detect().min(cap)
    })
}

#[cfg(test)]
thread_local! {
    /// A per-thread cap, set only by [`at_tier`] (tests: the kernels' calls pay for no lookup).
    static CAP: Cell<Isa> = const { Cell::new(Isa::Avx512) };
}

/// The tier this crate's loops run at (on this thread, in tests).
pub(crate) fn tier() -> Isa {
    #[cfg(test)]
    return detected().min(CAP.with(Cell::get));
    #[cfg(not(test))]
    detected()
}

/// Runs `f` with this thread's loops capped at `isa` (on this thread only: kernels that fan out
/// to other threads are not capped); `None` where the CPU lacks `isa`.
#[cfg(test)]
pub(crate) fn at_tier<R>(isa: Isa, f: impl FnOnce() -> R) -> Option<R> {
    if detected() < isa {
        return None;
    }
    let before = CAP.with(|c| c.replace(isa));
    let out = f();
    CAP.with(|c| c.set(before));
    Some(out)
}

/// Whether this thread's loops may use AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    tier() >= Isa::Avx2
}

/// A vector of `n` floats whose every element `fill` writes; no pass zeroes it first.
///
/// # Safety
/// `fill` must write every element of the slice it is given (typically by splitting it into
/// chunks that a kernel fills completely). Elements it leaves unwritten would be read as
/// uninitialized memory.
pub(crate) unsafe fn written(n: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: the caller guarantees that `fill` initialized all `n` elements.
    unsafe { v.set_len(n) };
    v
}

/// Lanes of the sums (one AVX2 vector). Not 16 for AVX-512: the sums' rounding moves BatchNorm's
/// statistics, and with them ReLU gates that sit on the kink, enough to take ResNet-20's step
/// 7x past the PyTorch fixture's bound (`lt-train/tests/torch_fixtures.rs`), and every tier must
/// compute the same sums.
const LANES: usize = 8;

multiversion! {
    /// The sum and the sum of squares of `x`, in f32 with 8 independent lanes per sum (which
    /// vectorizes and is more accurate than one running sum).
    pub(crate) fn sum_and_sum_sq(x: &[f32]) -> (f32, f32) {
        let (mut s, mut q) = ([0f32; LANES], [0f32; LANES]);
        let chunks = x.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for l in 0..LANES {
                s[l] += c[l];
                q[l] += c[l] * c[l];
            }
        }
        let (mut a, mut b) = (s.iter().sum::<f32>(), q.iter().sum::<f32>());
        for v in rest {
            a += v;
            b += v * v;
        }
        (a, b)
    }
}

/// `Σ g'` and `Σ g'·x` over one plane, where `g' = g`, or `g · (y > 0)` when the output `y` of a
/// fused ReLU is given; 8 lanes per sum. LLVM turns the gate into a branch per lane, so the AVX2
/// version is written with intrinsics.
pub(crate) fn gated_sums(g: &[f32], x: &[f32], y: Option<&[f32]>) -> (f32, f32) {
    assert!(x.len() == g.len() && y.is_none_or(|y| y.len() == g.len()));
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (just checked); the lengths match (asserted).
        return unsafe { gated_sums_avx2(g, x, y) };
    }
    gated_sums_tail(g, x, y, 0, [0.0; LANES], [0.0; LANES])
}

/// The sums from element `from` on, added to lane sums `s` and `q`.
fn gated_sums_tail(
    g: &[f32],
    x: &[f32],
    y: Option<&[f32]>,
    from: usize,
    s: [f32; LANES],
    q: [f32; LANES],
) -> (f32, f32) {
    let (mut a, mut b) = (s.iter().sum::<f32>(), q.iter().sum::<f32>());
    for i in from..g.len() {
        let gv = if y.is_some_and(|y| y[i] <= 0.0) { 0.0 } else { g[i] };
        a += gv;
        b += gv * x[i];
    }
    (a, b)
}

/// # Safety
/// The CPU must have AVX2 and FMA; `x` and `y` must be as long as `g`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gated_sums_avx2(g: &[f32], x: &[f32], y: Option<&[f32]>) -> (f32, f32) {
    use std::arch::x86_64::*;
    let n = g.len() / LANES * LANES;
    let (mut s, mut q) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let zero = _mm256_setzero_ps();
    for i in (0..n).step_by(LANES) {
        // SAFETY: i + 8 <= n <= the length of all three slices.
        unsafe {
            let mut gv = _mm256_loadu_ps(g.as_ptr().add(i));
            if let Some(y) = y {
                let keep = _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_loadu_ps(y.as_ptr().add(i)), zero);
                gv = _mm256_and_ps(gv, keep);
            }
            s = _mm256_add_ps(s, gv);
            q = _mm256_fmadd_ps(gv, _mm256_loadu_ps(x.as_ptr().add(i)), q);
        }
    }
    let (mut sl, mut ql) = ([0f32; LANES], [0f32; LANES]);
    // SAFETY: both arrays hold 8 floats.
    unsafe {
        _mm256_storeu_ps(sl.as_mut_ptr(), s);
        _mm256_storeu_ps(ql.as_mut_ptr(), q);
    }
    gated_sums_tail(g, x, y, n, sl, ql)
}

multiversion! {
    /// `Σ x` with 8 lanes.
    pub(crate) fn sum(x: &[f32]) -> f32 {
        let mut s = [0f32; LANES];
        let chunks = x.chunks_exact(LANES);
        let rest: f32 = chunks.remainder().iter().sum();
        for c in chunks {
            for l in 0..LANES {
                s[l] += c[l];
            }
        }
        s.iter().sum::<f32>() + rest
    }
}

multiversion! {
    /// `x = max(x, 0)` for every element.
    pub(crate) fn relu_in_place(x: &mut [f32]) {
        x.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

multiversion! {
    /// `x += b` for every element.
    pub(crate) fn add_scalar(x: &mut [f32], b: f32) {
        x.iter_mut().for_each(|v| *v += b);
    }
}

multiversion! {
    /// `out = x · s + t`, then `max(·, 0)` when `relu`.
    pub(crate) fn scale_shift(out: &mut [MaybeUninit<f32>], x: &[f32], s: f32, t: f32, relu: bool) {
        debug_assert_eq!(out.len(), x.len());
        if relu {
            out.iter_mut().zip(x).for_each(|(o, x)| {
                o.write((x * s + t).max(0.0));
            });
        } else {
            out.iter_mut().zip(x).for_each(|(o, x)| {
                o.write(x * s + t);
            });
        }
    }
}

multiversion! {
    /// `out = a · g' + b · x + c`, with `g'` as in [`gated_sums`]: BatchNorm's input gradient.
    pub(crate) fn gated_affine(
        out: &mut [MaybeUninit<f32>],
        g: &[f32],
        x: &[f32],
        y: Option<&[f32]>,
        a: f32,
        b: f32,
        c: f32,
    ) {
        debug_assert!(out.len() == g.len() && g.len() == x.len());
        match y {
            Some(y) => out.iter_mut().zip(g.iter().zip(x.iter().zip(y))).for_each(|(o, (g, (x, y)))| {
                let gv = if *y > 0.0 { *g } else { 0.0 };
                o.write(a * gv + b * x + c);
            }),
            None => out.iter_mut().zip(g.iter().zip(x)).for_each(|(o, (g, x))| {
                o.write(a * g + b * x + c);
            }),
        }
    }
}

multiversion! {
    /// `out = max(a + b, 0)`.
    pub(crate) fn add_relu(out: &mut [MaybeUninit<f32>], a: &[f32], b: &[f32]) {
        debug_assert!(out.len() == a.len() && a.len() == b.len());
        out.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (a, b))| {
            o.write((a + b).max(0.0));
        });
    }
}

multiversion! {
    /// `out = dy · (y > 0)`.
    pub(crate) fn relu_grad(out: &mut [MaybeUninit<f32>], y: &[f32], dy: &[f32]) {
        debug_assert!(out.len() == y.len() && y.len() == dy.len());
        out.iter_mut().zip(y.iter().zip(dy)).for_each(|(o, (y, d))| {
            o.write(if *y > 0.0 { *d } else { 0.0 });
        });
    }
}

multiversion! {
    /// `dst += src`.
    pub(crate) fn add_into(dst: &mut [f32], src: &[f32]) {
        debug_assert_eq!(dst.len(), src.len());
        dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every loop of this module at every tier the CPU has, on the same inputs: the results of
    /// the wider tiers within float tolerance of the baseline's (bit-identical for the loops
    /// without sums). Tiers the CPU lacks are skipped with a note.
    #[test]
    fn every_tier_computes_what_the_baseline_computes() {
        type Outputs = Vec<Vec<f32>>;
        let run = || -> Outputs {
            let n = 1000 + 37;
            let (x, g) = (numbers(n), numbers(n + 5)[5..].to_vec());
            let y: Vec<f32> = x.iter().map(|v| v - 0.5).collect();
            let (s, q) = sum_and_sum_sq(&x);
            let (a, b) = gated_sums(&g, &x, Some(&y));
            let mut out = vec![vec![s, q, sum(&x), a, b]];
            let mut r = x.clone();
            relu_in_place(&mut r);
            add_scalar(&mut r, 0.25);
            add_into(&mut r, &g);
            out.push(r);
            let written = |f: &dyn Fn(&mut [MaybeUninit<f32>])| {
                // SAFETY: each kernel below writes every element of its output.
                unsafe { super::written(n, |o| f(o)) }
            };
            out.push(written(&|o| scale_shift(o, &x, 1.5, -0.25, true)));
            out.push(written(&|o| gated_affine(o, &g, &x, Some(&y), 0.5, -2.0, 0.125)));
            out.push(written(&|o| add_relu(o, &x, &g)));
            out.push(written(&|o| relu_grad(o, &y, &g)));
            out
        };
        let base = at_tier(Isa::Baseline, run).expect("every CPU has the baseline");
        for isa in [Isa::Avx2, Isa::Avx512] {
            let Some(wide) = at_tier(isa, run) else {
                eprintln!("note: this CPU lacks {}: its loops were not compared", isa.name());
                continue;
            };
            for (k, (w, b)) in wide.iter().zip(&base).enumerate() {
                for (i, (w, b)) in w.iter().zip(b).enumerate() {
                    let tol = if k == 0 { 1e-5 * (1.0 + b.abs()) * 1000.0f32.sqrt() } else { 1e-6 * (1.0 + b.abs()) };
                    assert!((w - b).abs() <= tol, "{}: output {k}[{i}]: {w} vs baseline {b}", isa.name());
                }
            }
        }
    }

    fn numbers(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i as f32) * 0.37).sin() * 3.0 + 0.5).collect()
    }

    #[test]
    fn sums_match_f64_for_every_length_around_the_lane_count() {
        for n in [0, 1, 7, 8, 9, 17, 1000, 1027] {
            let x = numbers(n);
            let (s, q) = sum_and_sum_sq(&x);
            let s64: f64 = x.iter().map(|v| *v as f64).sum();
            let q64: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum();
            assert!((s as f64 - s64).abs() <= 1e-5 * (1.0 + q64), "n {n}: {s} vs {s64}");
            assert!((q as f64 - q64).abs() <= 1e-5 * (1.0 + q64), "n {n}: {q} vs {q64}");
            let g = numbers(n + 3)[3..].to_vec();
            let y: Vec<f32> = x.iter().map(|v| v - 0.5).collect();
            let (a, b) = gated_sums(&g, &x, Some(&y));
            let keep = |i: usize| if y[i] > 0.0 { g[i] as f64 } else { 0.0 };
            let a64: f64 = (0..n).map(keep).sum();
            let b64: f64 = (0..n).map(|i| keep(i) * x[i] as f64).sum();
            assert!((a as f64 - a64).abs() <= 1e-4 * (1.0 + a64.abs()) + 1e-4, "n {n}: {a} vs {a64}");
            assert!((b as f64 - b64).abs() <= 1e-4 * (1.0 + b64.abs()) + 1e-4, "n {n}: {b} vs {b64}");
            let (a, b) = gated_sums(&g, &x, None);
            let a64: f64 = g.iter().map(|v| *v as f64).sum();
            let b64: f64 = g.iter().zip(&x).map(|(g, x)| *g as f64 * *x as f64).sum();
            assert!((a as f64 - a64).abs() <= 1e-4 * (1.0 + a64.abs()) + 1e-4, "n {n}: {a} vs {a64}");
            assert!((b as f64 - b64).abs() <= 1e-4 * (1.0 + b64.abs()) + 1e-4, "n {n}: {b} vs {b64}");
        }
    }

    #[test]
    fn written_vectors_hold_what_the_kernels_wrote() {
        let x = numbers(37);
        // SAFETY: scale_shift writes every element of a slice as long as `x`.
        let y = unsafe { written(x.len(), |out| scale_shift(out, &x, 2.0, 1.0, true)) };
        assert_eq!(y, x.iter().map(|v| (v * 2.0 + 1.0).max(0.0)).collect::<Vec<_>>());
        let mut d = x.clone();
        add_into(&mut d, &x);
        assert_eq!(d, x.iter().map(|v| v + v).collect::<Vec<_>>());
    }
}
