//! Fused optimizer updates: the whole update of one parameter (mask on the gradient, weight decay,
//! momentum or Adam's moments, the step) in one pass over its values, reading the tensors in place.
//! The arithmetic is PyTorch's (`torch.optim.SGD`, `torch.optim.Adam`), element by element in f32.

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use std::mem::MaybeUninit;

use crate::simd::multiversion;
use crate::slices::with_slice;

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// SGD hyperparameters of one step.
#[derive(Debug, Clone, Copy)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f64,
    /// Momentum (0: none, and no buffer is kept).
    pub momentum: f64,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f64,
}

/// Adam hyperparameters of one step, with the bias corrections of this step.
#[derive(Debug, Clone, Copy)]
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// L2 weight decay added to the gradient.
    pub weight_decay: f64,
    /// 1 − β1^t.
    pub bias_correction1: f64,
    /// 1 − β2^t.
    pub bias_correction2: f64,
}

/// Whether the fused updates can run on these tensors (f32 on the CPU).
pub fn fused_available(w: &Tensor) -> bool {
    w.device().is_cpu() && w.dtype() == DType::F32
}

fn with_optional<R>(t: Option<&Tensor>, f: impl FnOnce(Option<&[f32]>) -> Result<R>) -> Result<R> {
    match t {
        Some(t) => with_slice(t, |s| f(Some(s))),
        None => f(None),
    }
}

fn same_shape(w: &Tensor, others: &[Option<&Tensor>]) -> Result<()> {
    for t in others.iter().flatten() {
        if t.dims() != w.dims() {
            candle_core::bail!("optimizer update: shape {:?} next to weight {:?}", t.dims(), w.dims())
        }
    }
    Ok(())
}

/// One SGD step: returns the new weight and the new momentum buffer (`None` without momentum).
/// `buf` is the previous buffer (`None` at the first step); `mask` zeroes pruned gradients.
pub fn sgd_update(
    w: &Tensor,
    g: &Tensor,
    buf: Option<&Tensor>,
    mask: Option<&Tensor>,
    p: Sgd,
) -> Result<(Tensor, Option<Tensor>)> {
    same_shape(w, &[Some(g), buf, mask])?;
    let (w, g) = (w.contiguous()?, g.contiguous()?);
    let (buf, mask) = (buf.map(Tensor::contiguous).transpose()?, mask.map(Tensor::contiguous).transpose()?);
    let n = w.elem_count();
    let (lr, mu, wd) = (p.lr as f32, p.momentum as f32, p.weight_decay as f32);
    let keep = p.momentum != 0.0;
    let (mut new_w, mut new_b) = (Vec::with_capacity(n), Vec::with_capacity(if keep { n } else { 0 }));
    with_slice(&w, |ws| {
        with_slice(&g, |gs| {
            with_optional(buf.as_ref(), |bs| {
                with_optional(mask.as_ref(), |ms| {
                    let (nw, nb) = (&mut new_w.spare_capacity_mut()[..n], &mut new_b.spare_capacity_mut()[..]);
                    let at = |c: usize, len: usize| c * CHUNK..c * CHUNK + len;
                    if keep {
                        nw.par_chunks_mut(CHUNK).zip(nb[..n].par_chunks_mut(CHUNK)).enumerate().for_each(
                            |(c, (wc, bc))| {
                                let r = at(c, wc.len());
                                let (b, m) = (bs.map(|b| &b[r.clone()]), ms.map(|m| &m[r.clone()]));
                                sgd_chunk(wc, Some(bc), &ws[r.clone()], &gs[r], b, m, lr, mu, wd);
                            },
                        );
                    } else {
                        nw.par_chunks_mut(CHUNK).enumerate().for_each(|(c, wc)| {
                            let r = at(c, wc.len());
                            sgd_chunk(wc, None, &ws[r.clone()], &gs[r.clone()], None, ms.map(|m| &m[r]), lr, mu, wd);
                        });
                    }
                    Ok(())
                })
            })
        })
    })?;
    // SAFETY: the chunks above cover 0..n of each vector they were given, and `sgd_chunk` writes
    // every element of its outputs.
    unsafe {
        new_w.set_len(n);
        if keep {
            new_b.set_len(n);
        }
    }
    let dev = w.device();
    let new_w = Tensor::from_vec(new_w, w.dims(), dev)?;
    let new_b = if keep { Some(Tensor::from_vec(new_b, w.dims(), dev)?) } else { None };
    Ok((new_w, new_b))
}

/// One Adam step: returns the new weight and moments. `moments` are the previous (m, v)
/// (`None` at the first step); `mask` zeroes pruned gradients.
pub fn adam_update(
    w: &Tensor,
    g: &Tensor,
    moments: Option<(&Tensor, &Tensor)>,
    mask: Option<&Tensor>,
    p: Adam,
) -> Result<(Tensor, Tensor, Tensor)> {
    same_shape(w, &[Some(g), moments.map(|m| m.0), moments.map(|m| m.1), mask])?;
    let (w, g) = (w.contiguous()?, g.contiguous()?);
    let m_old = moments.map(|m| m.0.contiguous()).transpose()?;
    let v_old = moments.map(|m| m.1.contiguous()).transpose()?;
    let mask = mask.map(Tensor::contiguous).transpose()?;
    let n = w.elem_count();
    let (b1, b2, wd) = (p.beta1 as f32, p.beta2 as f32, p.weight_decay as f32);
    let (one_b1, one_b2) = ((1.0 - p.beta1) as f32, (1.0 - p.beta2) as f32);
    let (sqrt_bc2, eps, step_size) =
        (p.bias_correction2.sqrt() as f32, p.eps as f32, (p.lr / p.bias_correction1) as f32);
    let (mut new_w, mut new_m, mut new_v) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let consts = AdamConsts { b1, b2, one_b1, one_b2, wd, sqrt_bc2, eps, step_size };
    with_slice(&w, |ws| {
        with_slice(&g, |gs| {
            with_optional(m_old.as_ref(), |ms| {
                with_optional(v_old.as_ref(), |vs| {
                    with_optional(mask.as_ref(), |mk| {
                        let (nw, nm, nv) = (
                            &mut new_w.spare_capacity_mut()[..n],
                            &mut new_m.spare_capacity_mut()[..n],
                            &mut new_v.spare_capacity_mut()[..n],
                        );
                        nw.par_chunks_mut(CHUNK)
                            .zip(nm.par_chunks_mut(CHUNK).zip(nv.par_chunks_mut(CHUNK)))
                            .enumerate()
                            .for_each(|(c, (wc, (mc, vc)))| {
                                let r = c * CHUNK..c * CHUNK + wc.len();
                                let moments = ms.zip(vs).map(|(m, v)| (&m[r.clone()], &v[r.clone()]));
                                let mask = mk.map(|k| &k[r.clone()]);
                                adam_chunk(wc, mc, vc, &ws[r.clone()], &gs[r], moments, mask, consts);
                            });
                        Ok(())
                    })
                })
            })
        })
    })?;
    // SAFETY: the chunks above cover 0..n of each vector, and `adam_chunk` writes every element.
    unsafe {
        new_w.set_len(n);
        new_m.set_len(n);
        new_v.set_len(n);
    }
    let dev = w.device();
    Ok((
        Tensor::from_vec(new_w, w.dims(), dev)?,
        Tensor::from_vec(new_m, w.dims(), dev)?,
        Tensor::from_vec(new_v, w.dims(), dev)?,
    ))
}

multiversion! {
    /// One SGD chunk: `new_w` (and `new_b` with momentum) from the weights, gradients, previous
    /// buffer and mask of the same elements.
    #[allow(clippy::too_many_arguments, reason = "the operands of one fused update")]
    fn sgd_chunk(
        new_w: &mut [MaybeUninit<f32>],
        new_b: Option<&mut [MaybeUninit<f32>]>,
        w: &[f32],
        g: &[f32],
        b: Option<&[f32]>,
        mask: Option<&[f32]>,
        lr: f32,
        mu: f32,
        wd: f32,
    ) {
        // The direction: the gradient, masked, plus weight decay.
        let d = |i: usize| {
            let gi = match mask {
                Some(m) => g[i] * m[i],
                None => g[i],
            };
            gi + w[i] * wd
        };
        match new_b {
            Some(nb) => {
                for i in 0..w.len() {
                    let bi = match b {
                        Some(b) => b[i] * mu + d(i),
                        None => d(i),
                    };
                    new_w[i].write(w[i] - bi * lr);
                    nb[i].write(bi);
                }
            }
            None => {
                for i in 0..w.len() {
                    new_w[i].write(w[i] - d(i) * lr);
                }
            }
        }
    }
}

/// Adam's per-step constants, in f32.
#[derive(Clone, Copy)]
struct AdamConsts {
    b1: f32,
    b2: f32,
    one_b1: f32,
    one_b2: f32,
    wd: f32,
    sqrt_bc2: f32,
    eps: f32,
    step_size: f32,
}

multiversion! {
    /// One Adam chunk: new weights and moments from the weights, gradients, previous moments and
    /// mask of the same elements.
    #[allow(clippy::too_many_arguments, reason = "the operands of one fused update")]
    fn adam_chunk(
        new_w: &mut [MaybeUninit<f32>],
        new_m: &mut [MaybeUninit<f32>],
        new_v: &mut [MaybeUninit<f32>],
        w: &[f32],
        g: &[f32],
        moments: Option<(&[f32], &[f32])>,
        mask: Option<&[f32]>,
        k: AdamConsts,
    ) {
        for i in 0..w.len() {
            let gi = match mask {
                Some(m) => g[i] * m[i],
                None => g[i],
            };
            let d = gi + w[i] * k.wd;
            let (m, v) = match moments {
                Some((m, v)) => (m[i] * k.b1 + d * k.one_b1, v[i] * k.b2 + d * d * k.one_b2),
                None => (d * k.one_b1, d * d * k.one_b2),
            };
            let denom = v.sqrt() / k.sqrt_bc2 + k.eps;
            new_w[i].write(w[i] - (m / denom) * k.step_size);
            new_m[i].write(m);
            new_v[i].write(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{Isa, at_tier};

    /// The SGD and Adam chunks at every tier the CPU has give the baseline's results bit for bit
    /// (elementwise arithmetic, no sums); tiers the CPU lacks are skipped with a note.
    #[test]
    fn update_chunks_agree_across_tiers() {
        let n = 1000 + 13;
        let val = |i: usize, s: f32| (i as f32 * s).sin() * 0.5;
        let (w, g, b) = (
            (0..n).map(|i| val(i, 0.37)).collect::<Vec<_>>(),
            (0..n).map(|i| val(i, 0.11)).collect::<Vec<_>>(),
            (0..n).map(|i| val(i, 0.23)).collect::<Vec<_>>(),
        );
        let v: Vec<f32> = b.iter().map(|x| x * x).collect();
        let mask: Vec<f32> = (0..n).map(|i| (i % 3 != 0) as u8 as f32).collect();
        let run = || -> Vec<Vec<f32>> {
            let mut out = Vec::new();
            let (mut nw, mut nb) = (vec![MaybeUninit::new(0f32); n], vec![MaybeUninit::new(0f32); n]);
            sgd_chunk(&mut nw, Some(&mut nb), &w, &g, Some(&b), Some(&mask), 0.1, 0.9, 1e-4);
            // SAFETY: sgd_chunk wrote every element of both (they were initialized anyway).
            out.extend([nw, nb].map(|x| x.iter().map(|e| unsafe { e.assume_init() }).collect::<Vec<f32>>()));
            let k = AdamConsts {
                b1: 0.9,
                b2: 0.999,
                one_b1: 0.1,
                one_b2: 0.001,
                wd: 0.0,
                sqrt_bc2: 0.05,
                eps: 1e-8,
                step_size: 1e-3,
            };
            let (mut nw, mut nm, mut nv) =
                (vec![MaybeUninit::new(0f32); n], vec![MaybeUninit::new(0f32); n], vec![MaybeUninit::new(0f32); n]);
            adam_chunk(&mut nw, &mut nm, &mut nv, &w, &g, Some((&b, &v)), Some(&mask), k);
            // SAFETY: as above.
            out.extend([nw, nm, nv].map(|x| x.iter().map(|e| unsafe { e.assume_init() }).collect::<Vec<f32>>()));
            out
        };
        let base = at_tier(Isa::Baseline, run).expect("every CPU has the baseline");
        for isa in [Isa::Avx2, Isa::Avx512] {
            match at_tier(isa, run) {
                Some(wide) => assert_eq!(wide, base, "{} differs from the baseline", isa.name()),
                None => eprintln!("note: this CPU lacks {}: its update chunks were not compared", isa.name()),
            }
        }
    }
}
