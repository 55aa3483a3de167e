//! Learning-rate schedules: a base rate, optional linear warmup from 0, and ×gamma at milestones,
//! as OpenLTH composes them (`lr(t) = base · min(1, t / warmup) · gamma^(milestones ≤ t)`).

use serde::{Deserialize, Serialize};

use crate::Error;

/// A learning-rate schedule over iterations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Base learning rate.
    pub lr: f64,
    /// Iterations at which the rate is multiplied by `gamma`.
    pub milestones: Vec<u64>,
    /// The factor at each milestone.
    pub gamma: f64,
    /// Length of the linear warmup from 0 (0 = none).
    pub warmup: u64,
}

impl Schedule {
    /// A constant rate.
    pub fn constant(lr: f64) -> Self {
        Schedule { lr, milestones: vec![], gamma: 1.0, warmup: 0 }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), Error> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::Config(format!("learning rate must be positive, got {}", self.lr)));
        }
        if !(self.gamma.is_finite() && self.gamma > 0.0) {
            return Err(Error::Config(format!("gamma must be positive, got {}", self.gamma)));
        }
        if self.milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Config(format!("milestones must increase, got {:?}", self.milestones)));
        }
        Ok(())
    }

    /// The rate at iteration `t` (zero-based).
    pub fn lr_at(&self, t: u64) -> f64 {
        let warm = if self.warmup > 0 { (t as f64 / self.warmup as f64).min(1.0) } else { 1.0 };
        let drops = self.milestones.iter().filter(|&&m| m <= t).count() as i32;
        self.lr * warm * self.gamma.powi(drops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_and_milestones_compose() {
        let s = Schedule { lr: 0.1, milestones: vec![20_000, 25_000], gamma: 0.1, warmup: 10_000 };
        assert_eq!(s.lr_at(0), 0.0);
        assert!((s.lr_at(5_000) - 0.05).abs() < 1e-12);
        assert!((s.lr_at(19_999) - 0.1).abs() < 1e-12);
        assert!((s.lr_at(20_000) - 0.01).abs() < 1e-12);
        assert!((s.lr_at(29_999) - 0.001).abs() < 1e-12);
        assert!(Schedule { milestones: vec![5, 5], ..s.clone() }.validate().is_err());
        assert!(Schedule::constant(-1.0).validate().is_err());
    }
}
