//! Fused optimizer updates: the whole update of one parameter (mask on the gradient, weight decay,
//! momentum or Adam's moments, the step) in one pass over its values, reading the tensors in place.
//! The arithmetic is PyTorch's (`torch.optim.SGD`, `torch.optim.Adam`), element by element in f32.

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

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
    let mut new_w = vec![0f32; n];
    let mut new_b = if keep { vec![0f32; n] } else { Vec::new() };
    with_slice(&w, |ws| {
        with_slice(&g, |gs| {
            with_optional(buf.as_ref(), |bs| {
                with_optional(mask.as_ref(), |ms| {
                    let step = |i: usize, nw: &mut f32, nb: Option<&mut f32>| {
                        let mut d = gs[i];
                        if let Some(m) = ms {
                            d *= m[i];
                        }
                        if wd != 0.0 {
                            d += ws[i] * wd;
                        }
                        let b = match bs {
                            Some(b) if keep => b[i] * mu + d,
                            _ => d,
                        };
                        *nw = ws[i] - b * lr;
                        if let Some(nb) = nb {
                            *nb = b;
                        }
                    };
                    if keep {
                        new_w.par_chunks_mut(CHUNK).zip(new_b.par_chunks_mut(CHUNK)).enumerate().for_each(
                            |(c, (wc, bc))| {
                                for (j, (nw, nb)) in wc.iter_mut().zip(bc.iter_mut()).enumerate() {
                                    step(c * CHUNK + j, nw, Some(nb));
                                }
                            },
                        );
                    } else {
                        new_w.par_chunks_mut(CHUNK).enumerate().for_each(|(c, wc)| {
                            for (j, nw) in wc.iter_mut().enumerate() {
                                step(c * CHUNK + j, nw, None);
                            }
                        });
                    }
                    Ok(())
                })
            })
        })
    })?;
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
    let (mut new_w, mut new_m, mut new_v) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
    with_slice(&w, |ws| {
        with_slice(&g, |gs| {
            with_optional(m_old.as_ref(), |ms| {
                with_optional(v_old.as_ref(), |vs| {
                    with_optional(mask.as_ref(), |mk| {
                        new_w
                            .par_chunks_mut(CHUNK)
                            .zip(new_m.par_chunks_mut(CHUNK).zip(new_v.par_chunks_mut(CHUNK)))
                            .enumerate()
                            .for_each(|(c, (wc, (mc, vc)))| {
                                for (j, (nw, (nm, nv))) in
                                    wc.iter_mut().zip(mc.iter_mut().zip(vc.iter_mut())).enumerate()
                                {
                                    let i = c * CHUNK + j;
                                    let mut d = gs[i];
                                    if let Some(k) = mk {
                                        d *= k[i];
                                    }
                                    if wd != 0.0 {
                                        d += ws[i] * wd;
                                    }
                                    let (m, v) = match (ms, vs) {
                                        (Some(m), Some(v)) => (m[i] * b1 + d * one_b1, v[i] * b2 + d * d * one_b2),
                                        _ => (d * one_b1, d * d * one_b2),
                                    };
                                    let denom = v.sqrt() / sqrt_bc2 + eps;
                                    *nw = ws[i] - (m / denom) * step_size;
                                    *nm = m;
                                    *nv = v;
                                }
                            });
                        Ok(())
                    })
                })
            })
        })
    })?;
    let dev = w.device();
    Ok((
        Tensor::from_vec(new_w, w.dims(), dev)?,
        Tensor::from_vec(new_m, w.dims(), dev)?,
        Tensor::from_vec(new_v, w.dims(), dev)?,
    ))
}
