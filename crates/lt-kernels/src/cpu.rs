//! What this CPU is, which instruction-set tier each kernel family of this crate runs at on it,
//! and its fp32 peak measured on the spot (for benchmarks' "% of peak", which a constant gets
//! wrong on every machine but the one it was measured on).

use std::time::{Duration, Instant};

/// An x86-64 vector tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// SSE2, every x86-64 (or not x86-64 at all).
    Baseline,
    /// AVX2 with FMA: 8 floats per vector.
    Avx2,
    /// AVX-512 (F, BW, VL, DQ): 16 floats per vector.
    Avx512,
}

impl Isa {
    /// The widest tier this CPU has.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") && has!("fma") {
                return Isa::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }

    /// The tier's name in reports: `baseline`, `avx2`, `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// The tier each kernel family runs at on this CPU: the `gemm` crate's micro-kernels (the
/// products this crate's own GEMM does not take), this crate's own GEMM (`sgemm`: AVX-512 only;
/// below that tier its products go to `gemm`), its elementwise loops (BatchNorm, ReLU, residual
/// adds, optimizer updates) and the sparse products (AVX2 at most). `LT_KERNELS_ISA=avx2|baseline`
/// caps the families of this crate (to compare tiers on one machine); `gemm` chooses for itself.
pub fn kernel_tiers() -> Vec<(&'static str, Isa)> {
    let own = crate::simd::tier();
    let sgemm = if crate::sgemm::available() { Isa::Avx512 } else { Isa::Baseline };
    vec![("gemm", Isa::detect()), ("sgemm", sgemm), ("elementwise", own), ("sparse", own.min(Isa::Avx2))]
}

/// The CPU's model name (`/proc/cpuinfo`), or "unknown".
pub fn model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// fp32 peak in GFLOP/s measured now: independent fused multiply-adds at the widest width this
/// CPU has, on `threads` threads at once, for about `time`.
pub fn measured_peak_gflops(threads: usize, time: Duration) -> f64 {
    let threads = threads.max(1);
    let flops: f64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(move || fma_loop(time))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum()
    });
    flops / 1e9
}

/// FLOP/s of one thread running FMAs for about `time`.
fn fma_loop(time: Duration) -> f64 {
    const ROUNDS: usize = 1 << 16;
    let start = Instant::now();
    let mut flops = 0.0;
    let mut sink = 0f32;
    while start.elapsed() < time {
        let (f, s) = fma_rounds(ROUNDS);
        flops += f;
        sink += s;
    }
    std::hint::black_box(sink);
    flops / start.elapsed().as_secs_f64()
}

/// `rounds` rounds of 12 independent vector FMAs (enough chains to cover the FMA latency of two
/// ports), at the widest tier: the FLOPs done and a value that keeps them from being optimized away.
fn fma_rounds(rounds: usize) -> (f64, f32) {
    #[cfg(target_arch = "x86_64")]
    match Isa::detect() {
        // SAFETY: the CPU has the features each function is compiled for (just detected).
        Isa::Avx512 => return unsafe { fma512(rounds) },
        Isa::Avx2 => return unsafe { fma256(rounds) },
        Isa::Baseline => {}
    }
    let mut acc = [1f32; 12];
    for _ in 0..rounds {
        for a in &mut acc {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    (rounds as f64 * 12.0 * 2.0, acc.iter().sum())
}

macro_rules! fma_kernel {
    ($name:ident, $feature:literal, $lanes:expr, $vec:ty, $set1:ident, $fmadd:ident, $store:ident) => {
        /// # Safety
        /// The CPU must have the features this function is compiled for.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name(rounds: usize) -> (f64, f32) {
            use std::arch::x86_64::*;
            let (a, b) = ($set1(0.999_999), $set1(1e-7));
            let mut acc: [$vec; 12] = [$set1(1.0); 12];
            for _ in 0..rounds {
                for v in &mut acc {
                    *v = $fmadd(*v, a, b);
                }
            }
            let mut out = [0f32; $lanes];
            let mut total = 0f32;
            for v in acc {
                // SAFETY: `out` holds one vector's lanes.
                unsafe { $store(out.as_mut_ptr(), v) };
                total += out.iter().sum::<f32>();
            }
            (rounds as f64 * 12.0 * 2.0 * $lanes as f64, total)
        }
    };
}

fma_kernel!(fma512, "avx512f", 16, __m512, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_storeu_ps);
fma_kernel!(fma256, "avx2,fma", 8, __m256, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_storeu_ps);

/// GFLOP/s of one thread multiplying an m × k by a k × n matrix (`b_transposed`: B given as its
/// n × k transpose, the inner dimension contiguous in both, as a convolution's weight gradient
/// has it), best of `reps`, with the kernel that `lt-kernels` picks on this CPU for that shape:
/// the GEMM alone, without a convolution's im2col or copies, for `cargo xtask bench conv`.
pub fn matmul_gflops(m: usize, n: usize, k: usize, b_transposed: bool, reps: usize) -> f64 {
    use crate::matmul::{Order, View, matmul};
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let mut c = vec![0f32; m * n];
    let av = View { ptr: a.as_ptr(), rs: k as isize, cs: 1 };
    let bv = if b_transposed {
        View { ptr: b.as_ptr(), rs: 1, cs: k as isize }
    } else {
        View { ptr: b.as_ptr(), rs: n as isize, cs: 1 }
    };
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) + 1 {
        let t = Instant::now();
        matmul(&mut c, Order::RowMajor, m, n, k, av, bv, false);
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&c);
    2.0 * (m * n * k) as f64 / best / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_positive_and_the_tiers_are_named() {
        let peak = measured_peak_gflops(1, Duration::from_millis(20));
        assert!(peak > 0.5, "{peak}");
        let tiers = kernel_tiers();
        assert_eq!(tiers.iter().map(|t| t.0).collect::<Vec<_>>(), ["gemm", "sgemm", "elementwise", "sparse"]);
        assert!(tiers.iter().all(|t| t.1 <= Isa::detect()));
    }
}
