//! Max-pooling with a correct gradient.
//!
//! candle 0.11.1's `max_pool2d` backward multiplies the incoming gradient by the *fraction* of the
//! window that equals the maximum (1/4 for a unique maximum in a 2x2 window) where it should
//! divide by the *number* of maxima: every pooling layer shrinks the gradient 4x, and VGG-19's four
//! pools make its first layers' gradients 256x too small (found by the PyTorch step fixtures of
//! lt-train). `lt_kernels::max_pool2d` sends the whole gradient to the first maximum of each window,
//! as PyTorch does.

use candle_core::Tensor;

/// Max-pool with window `kh` x `kw` and the same stride, floor mode (rows/columns that do not fill
/// a window are dropped, as PyTorch does): `lt_kernels::max_pool2d`.
pub(crate) fn max_pool(x: &Tensor, kh: usize, kw: usize) -> candle_core::Result<Tensor> {
    lt_kernels::max_pool2d(x, kh, kw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn forward_equals_candle_and_the_gradient_goes_whole_to_the_maximum() {
        let x = Var::new(&[[[[1f32, 5.0, 2.0], [3.0, 4.0, 0.0], [9.0, 8.0, 7.0]]]], &Device::Cpu).unwrap();
        let y = max_pool(x.as_tensor(), 2, 2).unwrap();
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [5.0]);
        let direct = Tensor::rand(0f32, 1.0, (2, 3, 8, 6), &Device::Cpu).unwrap();
        let ours = max_pool(&direct, 2, 2).unwrap();
        let theirs = direct.max_pool2d(2).unwrap();
        assert_eq!(
            ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let grads = (y * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
        let g = grads.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(g, [0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
