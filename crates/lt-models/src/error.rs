//! The error type of `lt-models`.

/// An error building or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model name is not one this crate builds.
    #[error(
        "unknown model {name:?}; models are mnist_lenet_N[_M...], cifar_resnet_D[_W] (D = 6n+2), cifar_vgg_{{11,13,16,19}}, imagenet_resnet_{{18,34,50}}, imagenet_squeezenet_1_1, imagenet_inception_v3"
    )]
    UnknownModel {
        /// The name asked for.
        name: String,
    },
    /// The model cannot take this input.
    #[error("model {model}: {message}")]
    Shape {
        /// The model.
        model: String,
        /// What does not fit.
        message: String,
    },
    /// Weights given for this model do not fit it.
    #[error("weights for {model}: tensor {tensor}: {message}")]
    Weights {
        /// The model.
        model: String,
        /// The tensor.
        tensor: String,
        /// What is wrong (missing, shape, dtype).
        message: String,
    },
    /// A tensor operation failed.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}
