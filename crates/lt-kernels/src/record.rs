//! Whether this crate's ops record their backward pass.
//!
//! candle records every op whose input tracks gradients, and a model's weights always do, so an
//! evaluation forward pass keeps every activation alive until its output is dropped: at batch 500
//! that is a gigabyte for VGG-19, where PyTorch under `no_grad` frees each one as it goes. Inside
//! [`without_gradients`] this crate's ops produce tensors with no backward op, so each
//! intermediate result is freed as soon as the next layer has read it.

use std::cell::Cell;

use candle_core::{CustomOp1, CustomOp2, CustomOp3, Result, Tensor};

thread_local! {
    static OFF: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with this thread's calls to this crate's ops recording no backward pass (candle's own
/// ops still record theirs). For evaluation: gradients through the result are not available.
pub fn without_gradients<R>(f: impl FnOnce() -> R) -> R {
    let before = OFF.with(|o| o.replace(true));
    // Restores the flag on the way out, panics included.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            OFF.with(|o| o.set(self.0));
        }
    }
    let _restore = Restore(before);
    f()
}

fn recording() -> bool {
    !OFF.with(Cell::get)
}

pub(crate) fn apply1(x: &Tensor, op: impl CustomOp1 + Send + Sync + 'static) -> Result<Tensor> {
    if recording() { x.apply_op1(op) } else { x.apply_op1_no_bwd(&op) }
}

pub(crate) fn apply2(a: &Tensor, b: &Tensor, op: impl CustomOp2 + Send + Sync + 'static) -> Result<Tensor> {
    if recording() { a.apply_op2(b, op) } else { a.apply_op2_no_bwd(b, &op) }
}

pub(crate) fn apply3(a: &Tensor, b: &Tensor, c: &Tensor, op: impl CustomOp3 + Send + Sync + 'static) -> Result<Tensor> {
    if recording() { a.apply_op3(b, c, op) } else { a.apply_op3_no_bwd(b, c, &op) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use candle_core::Var;

    use crate::testing::rand;

    #[test]
    fn ops_inside_record_nothing_and_the_flag_is_restored() {
        let x = rand(&[2, 3, 4, 4], 1);
        let w = Var::from_tensor(&rand(&[5, 3, 3, 3], 2)).unwrap();
        let inside = super::without_gradients(|| crate::conv2d(&x, w.as_tensor(), 1, 1).unwrap());
        let outside = crate::conv2d(&x, w.as_tensor(), 1, 1).unwrap();
        assert!(!inside.track_op(), "a tensor made inside tracks its op");
        assert!(outside.track_op(), "the flag leaked out");
        assert!(crate::testing::max_diff(&inside, &outside) == 0.0);
        let grads = outside.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(w.as_tensor()).is_some());
    }
}
