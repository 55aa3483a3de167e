//! Dropout whose masks are a pure function of a key, so that a training run stays a function of
//! its seeds (candle's own dropout draws from an unseedable generator).
//!
//! Every [`Dropout`] of a model shares the model's key ([`crate::Model::set_dropout_key`]); each
//! layer mixes in its own salt. The trainer sets the key from the data-order seed and the
//! iteration before each step, so a resumed run draws exactly the masks of an uninterrupted one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use candle_core::Tensor;
use lt_data::Rng;

/// Inverted dropout with probability `p`: in training, each element is zeroed with probability
/// `p` and the rest are scaled by `1 / (1 - p)`; in evaluation it is the identity.
#[derive(Debug, Clone)]
pub(crate) struct Dropout {
    p: f64,
    key: Arc<AtomicU64>,
    salt: u64,
}

impl Dropout {
    pub fn new(p: f64, key: Arc<AtomicU64>, salt: u64) -> Self {
        Dropout { p, key, salt }
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(x.clone());
        }
        let mut rng = Rng::new(lt_data::derive_key(&[self.key.load(Ordering::Relaxed), self.salt]));
        let scale = (1.0 / (1.0 - self.p)) as f32;
        let mask: Vec<f32> = (0..x.elem_count()).map(|_| if rng.unit() < self.p { 0.0 } else { scale }).collect();
        x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?.to_dtype(x.dtype())?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use super::*;
    use candle_core::{Device, Var};

    fn ones(n: usize) -> Tensor {
        Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn the_same_key_gives_the_same_mask_and_another_key_another() {
        let key = Arc::new(AtomicU64::new(7));
        let d = Dropout::new(0.5, key.clone(), 1);
        let a: Vec<f32> = d.forward_t(&ones(1000), true).unwrap().to_vec1().unwrap();
        let b: Vec<f32> = d.forward_t(&ones(1000), true).unwrap().to_vec1().unwrap();
        assert_eq!(a, b);
        key.store(8, Ordering::Relaxed);
        let c: Vec<f32> = d.forward_t(&ones(1000), true).unwrap().to_vec1().unwrap();
        assert_ne!(a, c);
        // Another layer (salt) under the same key draws another mask.
        let e: Vec<f32> = Dropout::new(0.5, key, 2).forward_t(&ones(1000), true).unwrap().to_vec1().unwrap();
        assert_ne!(c, e);
    }

    #[test]
    fn zeroes_about_p_and_keeps_the_expected_value() {
        let d = Dropout::new(0.3, Arc::new(AtomicU64::new(0)), 0);
        let y: Vec<f32> = d.forward_t(&ones(100_000), true).unwrap().to_vec1().unwrap();
        let zeros = y.iter().filter(|v| **v == 0.0).count() as f64 / y.len() as f64;
        assert!((zeros - 0.3).abs() < 0.01, "{zeros}");
        assert!(y.iter().all(|v| *v == 0.0 || (*v - 1.0 / 0.7).abs() < 1e-6));
        let mean = y.iter().map(|v| *v as f64).sum::<f64>() / y.len() as f64;
        assert!((mean - 1.0).abs() < 0.02, "{mean}");
    }

    #[test]
    fn evaluation_is_the_identity_and_the_gradient_follows_the_mask() {
        let d = Dropout::new(0.5, Arc::new(AtomicU64::new(3)), 0);
        let x = Var::from_tensor(&ones(64)).unwrap();
        assert_eq!(d.forward_t(&x, false).unwrap().to_vec1::<f32>().unwrap(), vec![1.0; 64]);
        let y = d.forward_t(&x, true).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let (y, g): (Vec<f32>, Vec<f32>) = (y.to_vec1().unwrap(), g.get(x.as_tensor()).unwrap().to_vec1().unwrap());
        assert_eq!(y, g);
    }
}
