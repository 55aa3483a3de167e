//! `lt-models` owns the networks of the paper as candle modules whose parameters are named like
//! PyTorch `state_dict` keys (`blocks.3.shortcut.0.weight`), and for each network the list of
//! prunable tensors (conv and linear weights) and of output-layer tensors.
//!
//! It does not own training, optimizers or masks: a [`Model`] is weights plus a forward pass.
//! Initialization is this crate's own and deterministic: every tensor is drawn from
//! `(seed, tensor name)`, so a model is a pure function of its name, input shape and seed.
//!
//! Networks: `mnist_lenet_N[_M...]` (fully connected, e.g. `mnist_lenet_300_100`),
//! `cifar_resnet_D[_W]` (D = 6n+2; `cifar_resnet_20` is the paper's "ResNet-18"),
//! `cifar_vgg_{11,13,16,19}`, and for ImageNet `imagenet_resnet_{18,34,50}` and
//! `imagenet_squeezenet_1_1`, `imagenet_inception_v3` (torchvision's definitions and names). Input channels, size and
//! classes come from the dataset.

mod dropout;
mod error;
mod imagenet;
mod inception;
mod init;
mod lenet;
mod model;
mod norm;
mod pool;
mod resnet;
mod vgg;

pub use error::Error;
pub use init::{BnWeightInit, InitConfig};
pub use model::{InputSpec, Model, ParamKind};
