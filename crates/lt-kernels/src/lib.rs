//! `lt-kernels` owns the fast CPU implementations of the hot training operations, as candle
//! custom ops with their backward passes, so that models keep candle's `Tensor`/`Var` and autograd
//! and only the arithmetic underneath changes: 2-D convolution (forward, backward-data and
//! backward-weight, optional fused bias) by im2col and cache-blocked GEMM (on AVX-512 CPUs this
//! crate's own kernels, which generate the im2col matrix of stride-1 convolutions panel by panel
//! instead of storing it, and run the convolutions of images of at most 16 pixels as one product per
//! kernel tap, skipping the padding; elsewhere the `gemm` crate's), parallel over the batch so that both
//! cores stay busy on ResNet-20's small 16-channel layers too; linear layers with fused bias and ReLU; batch normalization fused with
//! the ReLU that follows it (training and evaluation mode); the residual add fused with its ReLU;
//! max-pooling; optimizer updates (SGD with momentum, Adam) fused with weight decay and the
//! pruning mask, one pass per parameter.
//!
//! It does not own layers, parameters or initialization (`lt-models`). On devices other than the
//! CPU, and for dtypes other than f32, every function falls back to candle's own op, so the CUDA
//! path never depends on this crate's code.

mod add_relu;
mod alloc;
mod batch_norm;
mod conv;
pub mod cpu;
mod linear;
mod matmul;
mod max_pool;
mod optim;
mod record;
mod sgemm;
mod simd;
mod slices;
mod sparse;
#[cfg(test)]
mod testing;

pub use add_relu::add_relu;
pub use alloc::keep_freed_buffers;
pub use batch_norm::{BatchNormOutput, batch_norm_train, channel_affine};
pub use conv::{conv2d, conv2d_bias};
pub use linear::linear;
pub use max_pool::max_pool2d;
pub use optim::{Adam, Sgd, adam_update, fused_available, sgd_update};
pub use record::without_gradients;
pub use sparse::{Pattern, SPARSE_BELOW, SPARSE_MIN_WEIGHTS, sparse_linear};
