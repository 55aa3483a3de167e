//! Reading a CPU tensor's values in place.

use candle_core::{CpuStorage, Layout, Result, Tensor};

/// The contiguous f32 values of `s` under layout `l`.
pub(crate) fn contiguous<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("a kernel input must be contiguous"),
    }
}

/// Calls `f` with the contiguous f32 data of a CPU tensor, without copying it.
pub(crate) fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(cpu) => f(contiguous(cpu, layout)?),
        _ => candle_core::bail!("this kernel runs on the CPU only"),
    }
}
