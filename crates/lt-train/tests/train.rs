//! Training runs on real Fashion-MNIST (the bundled sample where it is not installed:
//! `lt_data::testing`): the optimizers' arithmetic, masks, bit-identical resume, divergence, and
//! that a LeNet actually learns.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::sync::Arc;

use candle_core::{Device, Tensor, Var};
use lt_data::{Dataset, testing};
use lt_models::{InitConfig, InputSpec, Model};
use lt_train::{Masks, Optimizer, OptimizerConfig, Progress, RunConfig, Schedule, Trainer};

const FASHION: InputSpec = InputSpec { channels: 1, height: 28, width: 28, classes: 10 };

/// The first `n` examples of a split (all of them where the sample has fewer).
fn fashion(split: &str, n: usize) -> Arc<Dataset> {
    let data = testing::fashion_mnist("lt-train's tests");
    let d = Dataset::open(data.name, split, &data.locations).unwrap();
    let n = n.min(d.len());
    Arc::new(d.truncate(n).unwrap())
}

fn lenet(seed: u64) -> Model {
    Model::new("mnist_lenet_300_100", FASHION, seed, InitConfig::default(), &Device::Cpu).unwrap()
}

fn config(iterations: u64, optimizer: OptimizerConfig, lr: f64) -> RunConfig {
    RunConfig {
        start_iteration: 0,
        iterations,
        batch_size: 60,
        optimizer,
        schedule: Schedule::constant(lr),
        data_order_seed: 11,
        eval_every: 0,
        checkpoint_every: 10,
        save_at: vec![0, 5],
        accumulate: 1,
    }
}

/// A LeNet run on the first `n` training examples with `config`, in `dir`.
fn lenet_run(model: Model, n: usize, config: RunConfig, dir: &std::path::Path) -> Result<Trainer, lt_train::Error> {
    Trainer::new(model, fashion("train", n), None, Masks::new(), config, dir, &Device::Cpu)
}

fn weights(m: &Model) -> Vec<(String, Vec<f32>)> {
    m.state().unwrap().into_iter().map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1().unwrap())).collect()
}

/// Two steps on f(w) = sum(w * c), whose gradient is c, against PyTorch's formulas worked by hand.
#[test]
fn optimizer_updates_follow_pytorch() {
    let c = Tensor::new(&[0.5f32, -2.0], &Device::Cpu).unwrap();
    let run = |config: OptimizerConfig| -> Vec<f32> {
        let w = Var::new(&[1.0f32, 3.0], &Device::Cpu).unwrap();
        let mut opt = Optimizer::new(config).unwrap();
        for _ in 0..2 {
            let grads = (w.as_tensor() * &c).unwrap().sum_all().unwrap().backward().unwrap();
            opt.step(&[("w".into(), w.clone())], &grads, 0.1, &Masks::new()).unwrap();
        }
        w.as_tensor().to_vec1().unwrap()
    };
    // SGD, momentum 0.9, wd 0.01: g1 = c + 0.01 w0, b1 = g1, w1 = w0 - 0.1 b1; g2 = c + 0.01 w1, b2 = 0.9 b1 + g2.
    let sgd = run(OptimizerConfig::Sgd { momentum: 0.9, weight_decay: 0.01 });
    let expect = |w0: f64, c: f64| {
        let g1 = c + 0.01 * w0;
        let w1 = w0 - 0.1 * g1;
        let b2 = 0.9 * g1 + c + 0.01 * w1;
        w1 - 0.1 * b2
    };
    assert!(
        (sgd[0] as f64 - expect(1.0, 0.5)).abs() < 1e-6 && (sgd[1] as f64 - expect(3.0, -2.0)).abs() < 1e-6,
        "{sgd:?}"
    );
    // Adam on a constant gradient moves each weight by lr per step (m̂ = g, v̂ = g²), up to ε.
    let adam = run(OptimizerConfig::adam());
    assert!((adam[0] - 0.8).abs() < 1e-5 && (adam[1] - 3.2).abs() < 1e-5, "{adam:?}");
}

#[test]
fn pruned_weights_stay_exactly_zero() {
    let model = lenet(1);
    let w = model.parameters().into_iter().find(|(n, _)| n == "fc_layers.0.weight").unwrap().1;
    let mask = Tensor::rand(0f32, 1.0, w.dims(), &Device::Cpu)
        .unwrap()
        .ge(0.8)
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap();
    let masks = Masks::from([("fc_layers.0.weight".to_string(), mask.clone())]);
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(
        model,
        fashion("train", 3000),
        None,
        masks,
        config(30, OptimizerConfig::Sgd { momentum: 0.9, weight_decay: 1e-4 }, 0.1),
        dir.path(),
        &Device::Cpu,
    )
    .unwrap();
    t.run(&mut |_| {}).unwrap();
    let w = t.model().parameters().into_iter().find(|(n, _)| n == "fc_layers.0.weight").unwrap().1;
    let (w, m): (Vec<f32>, Vec<f32>) =
        (w.as_tensor().flatten_all().unwrap().to_vec1().unwrap(), mask.flatten_all().unwrap().to_vec1().unwrap());
    assert!(w.iter().zip(&m).all(|(w, m)| *m == 1.0 || *w == 0.0), "a pruned weight moved");
    assert!(w.iter().zip(&m).filter(|(w, m)| **m == 1.0 && **w != 0.0).count() > 40_000, "survivors train");
    // the momentum buffer of pruned weights is zero too
    let ckpt = lt_train::Checkpoint::load(&dir.path().join("checkpoint.safetensors"), &Device::Cpu).unwrap();
    let buf: Vec<f32> = ckpt
        .optimizer
        .iter()
        .find(|(n, _)| n == "fc_layers.0.weight/0")
        .unwrap()
        .1
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(buf.iter().zip(&m).all(|(b, m)| *m == 1.0 || *b == 0.0));
}

#[test]
fn a_resumed_run_is_bit_identical_to_an_uninterrupted_one() {
    let train = fashion("train", 2000);
    let adam = OptimizerConfig::adam();
    let whole = tempfile::tempdir().unwrap();
    let mut a =
        Trainer::new(lenet(2), train.clone(), None, Masks::new(), config(20, adam, 1.2e-3), whole.path(), &Device::Cpu)
            .unwrap();
    a.run(&mut |_| {}).unwrap();

    let split = tempfile::tempdir().unwrap();
    let mut b =
        Trainer::new(lenet(2), train.clone(), None, Masks::new(), config(10, adam, 1.2e-3), split.path(), &Device::Cpu)
            .unwrap();
    b.run(&mut |_| {}).unwrap();
    // A new process would rebuild the model from its seed; the checkpoint overrides it.
    let mut resumed = Vec::new();
    let mut c =
        Trainer::new(lenet(99), train, None, Masks::new(), config(20, adam, 1.2e-3), split.path(), &Device::Cpu)
            .unwrap();
    c.run(&mut |p| {
        if let Progress::Resumed { iteration } = p {
            resumed.push(iteration)
        }
    })
    .unwrap();
    assert_eq!(resumed, [10]);
    assert_eq!(weights(a.model()), weights(c.model()));
    assert!(split.path().join("step_5.safetensors").is_file() && split.path().join("step_0.safetensors").is_file());
}

#[test]
fn divergence_stops_with_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = Trainer::new(
        lenet(3),
        fashion("train", 3000),
        None,
        Masks::new(),
        config(40, OptimizerConfig::Sgd { momentum: 0.9, weight_decay: 0.0 }, 1e4),
        dir.path(),
        &Device::Cpu,
    )
    .unwrap();
    let err = t.run(&mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("diverged") && err.contains("checkpoint"), "{err}");
}

#[test]
fn a_checkpoint_of_another_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || config(10, OptimizerConfig::adam(), 1e-3);
    lenet_run(lenet(4), 600, cfg(), dir.path()).unwrap().run(&mut |_| {}).unwrap();
    let other = Model::new("mnist_lenet_100", FASHION, 0, InitConfig::default(), &Device::Cpu).unwrap();
    let err = lenet_run(other, 600, cfg(), dir.path()).unwrap_err().to_string();
    assert!(err.contains("mnist_lenet_300_100") && err.contains("mnist_lenet_100"), "{err}");
    std::fs::write(dir.path().join("checkpoint.safetensors"), b"garbage").unwrap();
    let err = lenet_run(lenet(4), 600, cfg(), dir.path()).unwrap_err().to_string();
    assert!(err.contains("checkpoint.safetensors") && err.contains("not a safetensors file"), "{err}");
}

#[test]
fn lenet_learns_fashion_mnist() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(500, OptimizerConfig::adam(), 1.2e-3);
    cfg.eval_every = 250;
    let mut t = Trainer::new(
        lenet(5),
        fashion("train", 60_000),
        Some(fashion("test", 10_000)),
        Masks::new(),
        cfg,
        dir.path(),
        &Device::Cpu,
    )
    .unwrap();
    let summary = t.run(&mut |_| {}).unwrap();
    let acc = summary.evaluation.unwrap().accuracy;
    // 2,000 examples (the sample) generalize less than 60,000.
    let floor = if testing::fashion_mnist("lenet_learns_fashion_mnist").full { 0.80 } else { 0.75 };
    assert!(acc > floor, "test accuracy after 500 iterations: {acc}");
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 2);
    assert!(lines.contains("\"test_accuracy\""));
}

#[test]
fn a_run_rewound_to_k_continues_the_schedule_and_the_data_order_from_k() {
    let train = fashion("train", 1200);
    // Plain SGD keeps no optimizer state, so a run restarted from W_k with a fresh optimizer must
    // reproduce the uninterrupted run bit for bit: only the same batches and rates can do that.
    let sgd = OptimizerConfig::Sgd { momentum: 0.0, weight_decay: 0.0 };
    let mut whole_config = config(12, sgd, 0.05);
    whole_config.schedule = Schedule { lr: 0.05, milestones: vec![9], gamma: 0.1, warmup: 4 };
    whole_config.eval_every = 1;
    whole_config.save_at = vec![6];
    let whole = tempfile::tempdir().unwrap();
    let mut a =
        Trainer::new(lenet(3), train.clone(), None, Masks::new(), whole_config.clone(), whole.path(), &Device::Cpu)
            .unwrap();
    a.run(&mut |_| {}).unwrap();

    let w6 = lt_train::Checkpoint::load(&whole.path().join("step_6.safetensors"), &Device::Cpu).unwrap();
    let model = lenet(77);
    model.load_state(&w6.model).unwrap();
    let rewound = tempfile::tempdir().unwrap();
    let b_config = RunConfig { start_iteration: 6, save_at: vec![], ..whole_config };
    let mut b = Trainer::new(model, train, None, Masks::new(), b_config, rewound.path(), &Device::Cpu).unwrap();
    assert_eq!(b.iteration(), 6);
    b.run(&mut |_| {}).unwrap();
    let lrs = |t: &Trainer| t.records().iter().map(|r| (r.iteration, r.lr)).collect::<Vec<_>>();
    assert_eq!(lrs(&b), lrs(&a)[6..]);
    assert_eq!(lrs(&b)[0], (7, 0.05));
    assert_eq!(weights(a.model()), weights(b.model()));
}

#[test]
fn a_start_past_the_end_is_refused() {
    let mut c = config(10, OptimizerConfig::adam(), 1e-3);
    c.start_iteration = 11;
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("start iteration 11 is past the end of training (10)"), "{err}");
}

/// Gradient accumulation: three micro-batches of 20 give LeNet (no BatchNorm, no dropout) the
/// step of one batch of 60, up to the order of the sums; a batch that does not split evenly is
/// refused before training.
#[test]
fn accumulated_micro_batches_take_the_step_of_the_whole_batch() {
    let run = |accumulate: usize| {
        let dir = tempfile::tempdir().unwrap();
        let config = RunConfig {
            accumulate,
            save_at: vec![],
            ..config(3, OptimizerConfig::Sgd { momentum: 0.9, weight_decay: 1e-4 }, 0.05)
        };
        let mut trainer = lenet_run(lenet(3), 600, config, dir.path()).unwrap();
        let summary = trainer.run(&mut |_| {}).unwrap();
        assert_eq!(summary.iterations, 3);
        weights(trainer.model())
    };
    let (whole, parts) = (run(1), run(3));
    for ((name, a), (_, b)) in whole.iter().zip(&parts) {
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-5, "{name}: {worst}");
    }
    let dir = tempfile::tempdir().unwrap();
    let config =
        RunConfig { accumulate: 7, ..config(3, OptimizerConfig::Sgd { momentum: 0.9, weight_decay: 1e-4 }, 0.05) };
    let err = lenet_run(lenet(3), 600, config, dir.path()).err().unwrap().to_string();
    assert!(err.contains("not a multiple of 7"), "{err}");
}
