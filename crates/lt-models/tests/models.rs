//! Parameter counts, names, prunable sets, shapes and determinism of the networks.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use lt_models::{InitConfig, InputSpec, Model};

const CIFAR: InputSpec = InputSpec { channels: 3, height: 32, width: 32, classes: 10 };
const FASHION: InputSpec = InputSpec { channels: 1, height: 28, width: 28, classes: 10 };

fn model(name: &str, input: InputSpec, seed: u64) -> Model {
    Model::new(name, input, seed, InitConfig::default(), &Device::Cpu).unwrap()
}

#[test]
fn parameter_counts_match_the_paper_and_pytorch() {
    // Counts of the PyTorch definitions in xtask/torch/nets.py (BatchNorm affine included).
    assert_eq!(model("mnist_lenet_300_100", FASHION, 0).num_parameters(), 266_610);
    assert_eq!(model("cifar_resnet_20", CIFAR, 0).num_parameters(), 272_474);
    assert_eq!(model("cifar_resnet_56", CIFAR, 0).num_parameters(), 855_770);
    assert_eq!(model("cifar_resnet_20", FASHION, 0).num_parameters(), 272_186);
    assert_eq!(model("cifar_vgg_19", CIFAR, 0).num_parameters(), 20_040_522);
}

#[test]
fn names_follow_pytorch_and_prunable_sets_exclude_the_output_layer() {
    let lenet = model("mnist_lenet_300_100", FASHION, 0);
    assert_eq!(lenet.prunable(), ["fc_layers.0.weight", "fc_layers.1.weight"]);
    assert_eq!(lenet.output_layer(), ["fc.weight", "fc.bias"]);
    let resnet = model("cifar_resnet_20", CIFAR, 0);
    let prunable = resnet.prunable();
    assert_eq!(prunable.len(), 1 + 18 + 2, "stem, 9 blocks x 2 convs, 2 projection shortcuts");
    assert!(prunable.contains(&"blocks.3.shortcut.0.weight".to_string()));
    let names: Vec<_> = resnet.tensors().into_iter().map(|(n, _, _)| n).collect();
    assert!(names.contains(&"blocks.8.bn2.running_var".to_string()));
    let vgg = model("cifar_vgg_11", CIFAR, 0);
    let prunable = vgg.prunable();
    assert_eq!(prunable.len(), 8);
    // positions in the PyTorch Sequential: conv, bn, relu, maxpool, conv, ...
    assert!(
        prunable.contains(&"layers.0.weight".to_string()) && prunable.contains(&"layers.4.weight".to_string()),
        "{prunable:?}"
    );
}

#[test]
fn forward_gives_logits_for_both_datasets_and_backward_reaches_every_parameter() {
    for (name, input) in [
        ("mnist_lenet_300_100", FASHION),
        ("cifar_resnet_8", CIFAR),
        ("cifar_resnet_8", FASHION),
        ("cifar_vgg_11", FASHION),
    ] {
        let m = model(name, input, 1);
        let x = Tensor::randn(0f32, 1.0, (4, input.channels, input.height, input.width), &Device::Cpu).unwrap();
        let logits = m.forward_t(&x, true).unwrap();
        assert_eq!(logits.dims(), &[4, 10], "{name}");
        let labels = Tensor::new(&[0u32, 1, 2, 3], &Device::Cpu).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &labels).unwrap();
        let grads = loss.backward().unwrap();
        for (pname, var) in m.parameters() {
            assert!(grads.get(var.as_tensor()).is_some(), "{name}: no gradient for {pname}");
        }
        assert_eq!(m.forward_t(&x, false).unwrap().dims(), &[4, 10]);
    }
}

#[test]
fn initialization_is_a_function_of_the_seed() {
    let state = |seed| -> Vec<Vec<f32>> {
        model("cifar_resnet_8", CIFAR, seed)
            .state()
            .unwrap()
            .into_iter()
            .map(|(_, t)| t.flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    };
    assert_eq!(state(3), state(3));
    assert_ne!(state(3), state(4));
    // Kaiming normal: std sqrt(2 / fan_in) for the first LeNet layer (fan_in 784).
    let lenet = model("mnist_lenet_300_100", FASHION, 0);
    let w = lenet.parameters().into_iter().find(|(n, _)| n == "fc_layers.0.weight").unwrap().1;
    let std = w.as_tensor().sqr().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap().sqrt();
    assert!((std - (2.0f32 / 784.0).sqrt()).abs() < 0.002, "{std}");
}

#[test]
fn bad_names_inputs_and_weights_are_refused_clearly() {
    let err = |r: Result<Model, lt_models::Error>| r.unwrap_err().to_string();
    let new = |name: &str, input| Model::new(name, input, 0, InitConfig::default(), &Device::Cpu);
    assert!(err(new("resnet_20", CIFAR)).contains("unknown model \"resnet_20\""));
    assert!(err(new("cifar_resnet_21", CIFAR)).contains("6n+2"));
    assert!(err(new("cifar_vgg_12", CIFAR)).contains("unknown model"));
    assert!(err(new("cifar_vgg_19", InputSpec { height: 8, width: 8, ..CIFAR })).contains("max-pools"));
    let m = model("mnist_lenet_300_100", FASHION, 0);
    let x = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
    assert!(m.forward_t(&x, false).unwrap_err().to_string().contains("(n, 1, 28, 28)"));
    // A state from another model is refused, naming the tensor, and leaves the weights as they were.
    let before: Vec<_> =
        m.state().unwrap().into_iter().map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
    let other: HashMap<_, _> = model("mnist_lenet_300_50", FASHION, 0).state().unwrap().into_iter().collect();
    let e = m.load_state(&other).unwrap_err().to_string();
    assert!(
        e.contains("mnist_lenet_300_100")
            && e.contains("fc.weight")
            && e.contains("shape [10, 50], the model has [10, 100]"),
        "{e}"
    );
    let after: Vec<_> =
        m.state().unwrap().into_iter().map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect();
    assert_eq!(before, after);
}

#[test]
fn imagenet_models_match_torchvision() {
    // torchvision's parameter counts (1000 classes).
    let imagenet = InputSpec { channels: 3, height: 224, width: 224, classes: 1000 };
    for (name, count) in [
        ("imagenet_resnet_18", 11_689_512),
        ("imagenet_resnet_34", 21_797_672),
        ("imagenet_resnet_50", 25_557_032),
        ("imagenet_squeezenet_1_1", 1_235_496),
        // torchvision's 27,161,264 less the auxiliary classifier (3,326,696), which is not built
        ("imagenet_inception_v3", 23_834_568),
    ] {
        let m = model(name, imagenet, 0);
        assert_eq!(m.num_parameters(), count, "{name}");
    }
    let r50 = model("imagenet_resnet_50", imagenet, 0);
    let names: Vec<_> = r50.tensors().into_iter().map(|(n, _, _)| n).collect();
    for expected in ["conv1.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.running_mean", "fc.weight"] {
        assert!(names.contains(&expected.to_string()), "{expected}");
    }
    assert_eq!(r50.output_layer(), ["fc.weight", "fc.bias"]);
    let sq = model("imagenet_squeezenet_1_1", imagenet, 0);
    assert_eq!(sq.output_layer(), ["classifier.1.weight", "classifier.1.bias"]);
    assert!(sq.prunable().contains(&"features.12.expand3x3.weight".to_string()));
}

#[test]
fn imagenet_models_run_forward_and_backward() {
    // Small inputs keep this fast; every layer still runs (the pools stay >= 1x1).
    for (name, side) in [
        ("imagenet_resnet_18", 64),
        ("imagenet_resnet_50", 64),
        ("imagenet_squeezenet_1_1", 64),
        ("imagenet_inception_v3", 75),
    ] {
        let input = InputSpec { channels: 3, height: side, width: side, classes: 7 };
        let m = model(name, input, 1);
        let x = Tensor::randn(0f32, 1.0, (2, 3, side, side), &Device::Cpu).unwrap();
        let logits = m.forward_t(&x, true).unwrap();
        assert_eq!(logits.dims(), &[2, 7], "{name}");
        let loss = candle_nn::loss::cross_entropy(&logits, &Tensor::new(&[0u32, 6], &Device::Cpu).unwrap()).unwrap();
        let grads = loss.backward().unwrap();
        for (pname, var) in m.parameters() {
            assert!(grads.get(var.as_tensor()).is_some(), "{name}: no gradient for {pname}");
        }
    }
}

#[test]
fn padded_and_ceil_mode_pooling_match_pytorch_output_sizes() {
    // torch: MaxPool2d(3, 2, padding=1)(112x112) -> 56; MaxPool2d(3, 2, ceil_mode=True)(111) -> 55, (55) -> 27, (27) -> 13.
    let imagenet = InputSpec { channels: 3, height: 224, width: 224, classes: 10 };
    let m = model("imagenet_squeezenet_1_1", imagenet, 0);
    let x = Tensor::zeros((1, 3, 224, 224), DType::F32, &Device::Cpu).unwrap();
    assert_eq!(m.forward_t(&x, false).unwrap().dims(), &[1, 10]);
}

#[test]
fn dropout_in_training_is_a_function_of_the_dropout_key() {
    // SqueezeNet and Inception-v3 drop half of the classifier's inputs in training; evaluation is
    // deterministic and the training pass depends only on the key the trainer sets.
    for (name, side) in [("imagenet_squeezenet_1_1", 64), ("imagenet_inception_v3", 75)] {
        let input = InputSpec { channels: 3, height: side, width: side, classes: 7 };
        let m = model(name, input, 1);
        let x = Tensor::randn(0f32, 1.0, (2, 3, side, side), &Device::Cpu).unwrap();
        let run = |key: u64, train: bool| -> Vec<f32> {
            m.set_dropout_key(key);
            m.forward_t(&x, train).unwrap().flatten_all().unwrap().to_vec1().unwrap()
        };
        assert_eq!(run(1, false), run(2, false), "{name}: evaluation must not drop");
        let (a, b) = (run(5, true), run(5, true));
        assert_eq!(a, b, "{name}: same key, same pass");
        assert_ne!(a, run(6, true), "{name}: another key draws another mask");
    }
}

/// A LeNet whose first layer is pruned to 5% computes it with the sparse kernels: the same logits
/// and the same gradients on kept weights as the dense kernels, 0 on pruned ones. Its 300 x 100
/// layer is too small for the sparse path and its 50%-dense masks too dense.
#[test]
fn sparse_kernels_match_the_dense_ones_below_the_crossover() {
    use std::collections::BTreeMap;
    let dev = Device::Cpu;
    let m = model("mnist_lenet_300_100", FASHION, 3);
    let params: HashMap<String, candle_core::Var> = m.parameters().into_iter().collect();
    let keep = |name: &str, density: f64| {
        let w = params[name].as_tensor();
        let n = w.elem_count();
        let mask: Vec<f32> = (0..n).map(|i| f32::from(((i * 7919) % 1000) as f64 / 1000.0 < density)).collect();
        let mask = Tensor::from_vec(mask, w.dims(), &dev).unwrap();
        params[name].set(&(w * &mask).unwrap()).unwrap();
        mask
    };
    let masks = BTreeMap::from([
        ("fc_layers.0.weight".to_string(), keep("fc_layers.0.weight", 0.05)),
        ("fc_layers.1.weight".to_string(), keep("fc_layers.1.weight", 0.05)),
    ]);
    let x = Tensor::rand(0f32, 1f32, (9, 1, 28, 28), &dev).unwrap();
    let run = || {
        let logits = m.forward_t(&x, true).unwrap();
        let grads = logits.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let g = |n: &str| grads.get(params[n].as_tensor()).unwrap().clone();
        (logits, g("fc_layers.0.weight"), g("fc_layers.0.bias"), g("fc_layers.1.weight"))
    };
    let dense = run();
    assert_eq!(m.use_sparse_kernels(&masks).unwrap(), ["fc_layers.0.weight"]);
    let sparse = run();
    let diff = |a: &Tensor, b: &Tensor| a.sub(b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(diff(&dense.0, &sparse.0) < 1e-4, "logits");
    let masked = (&dense.1 * &masks["fc_layers.0.weight"]).unwrap();
    assert!(diff(&masked, &sparse.1) < 1e-3, "kept weights' gradient");
    assert!(diff(&dense.2, &sparse.2) < 1e-3, "bias gradient");
    assert!(diff(&dense.3, &sparse.3) < 1e-3, "the dense layer's gradient");
    // Without masks every layer is dense again.
    assert!(m.use_sparse_kernels(&BTreeMap::new()).unwrap().is_empty());
    assert!(diff(&dense.0, &run().0) == 0.0);
}
