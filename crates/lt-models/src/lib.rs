//! `lt-models` will own the networks of the paper (LeNet-300-100, CIFAR ResNet-20 and VGG-19, the
//! ImageNet models) as named candle parameters, with the list of prunable tensors of each.
//!
//! Not built yet: see the training-engine issue. It will depend on `lt-data` only for input shapes.
