//! The lottery runner, branches and stability on real Fashion-MNIST with LeNet-300-100 at a tiny
//! scale: rewinding, masks, reuse of finished jobs, controls, and errors.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::collections::HashMap;

use lt_data::testing;
use lt_lottery::{
    Branch, BranchKind, BranchSpec, Context, Data, Event, Exec, Lottery, LotterySpec, PruneSpec, TrainSpec,
};
use lt_train::Preset;

/// Real Fashion-MNIST (the bundled sample where it is not installed: `lt_data::testing`).
fn data() -> Data {
    let fashion = testing::fashion_mnist("lt-lottery's tests");
    Data::open(fashion.name, Some(fashion.at_most(3000)), &fashion.locations).unwrap()
}

fn spec(rewind: u64) -> LotterySpec {
    let preset = Preset::named("lenet").unwrap();
    let fashion = testing::fashion_mnist("lt-lottery's tests");
    let mut train = TrainSpec::from_preset(preset, Some(fashion.name), 0, 50);
    train.iterations = 40;
    train.train_examples = Some(fashion.at_most(3000));
    LotterySpec { train, rewind, prune: PruneSpec::for_preset(preset) }
}

fn quiet() -> impl FnMut(Event) {
    |_| {}
}

#[test]
fn imp_prunes_layerwise_rewinds_to_w_k_and_reuses_finished_levels() {
    let store = tempfile::tempdir().unwrap();
    let data = data();
    let exec = Exec::default();
    let run = Lottery::create(store.path(), spec(10)).unwrap();
    let mut events = quiet();
    let outcomes = run.run(2, &mut Context { data: &data, exec: &exec, events: &mut events }).unwrap();
    assert_eq!(outcomes.len(), 3);
    assert_eq!(outcomes[0].density, 1.0);

    // Layer-wise: 20% of each hidden layer's survivors, 10% of the output layer's, per level.
    let m2 = run.mask(2).unwrap();
    let count = |n: usize, f: f64, levels: u32| (0..levels).fold(n, |s, _| s - (f * s as f64).round() as usize);
    assert_eq!(m2.survivors_of("fc_layers.0.weight"), count(784 * 300, 0.2, 2));
    assert_eq!(m2.survivors_of("fc.weight"), count(100 * 10, 0.1, 2));
    // A pruned weight never comes back.
    let m1 = run.mask(1).unwrap();
    for (name, _, bits) in m2.iter() {
        let (_, before) = m1.get(name).unwrap();
        assert!(bits.iter().zip(before).all(|(&now, &was)| now <= was), "{name} revived a weight");
    }

    // Rewinding restores exactly W_k for survivors and zero for pruned weights.
    let job = run.level_job(2).unwrap();
    let ctx = Context { data: &data, exec: &exec, events: &mut events };
    let fresh = tempfile::tempdir().unwrap();
    let trainer =
        lt_lottery::prepare(&run.spec().train, &lt_lottery::Job { dir: fresh.path().into(), ..job }, &ctx).unwrap();
    assert_eq!(trainer.iteration(), 10);
    let wk = lt_lottery::checkpoint_weights(&run.rewind_checkpoint(), None).unwrap();
    let state: HashMap<String, Vec<f32>> = trainer
        .model()
        .state()
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    for (name, w) in &wk {
        let expected: Vec<f32> = match m2.get(name) {
            Some((_, bits)) => w.iter().zip(bits).map(|(v, &b)| if b == 1 { *v } else { 0.0 }).collect(),
            None => w.clone(),
        };
        assert_eq!(state[name], expected, "{name}");
    }

    // Everything is done: a second call trains nothing and reports the same outcomes.
    let mut skipped = 0;
    let mut count_skips = |e: Event| {
        if let Event::Skipped { .. } = e {
            skipped += 1
        }
        assert!(!matches!(e, Event::Started { .. }), "a finished level was trained again");
    };
    let again = run.run(2, &mut Context { data: &data, exec: &exec, events: &mut count_skips }).unwrap();
    assert_eq!(again, outcomes);
    assert_eq!(skipped, 3);

    // Same spec, same folder; another spec, another folder.
    assert_eq!(Lottery::create(store.path(), spec(10)).unwrap().dir(), run.dir());
    assert_ne!(Lottery::create(store.path(), spec(0)).unwrap().dir(), run.dir());
    assert_eq!(Lottery::open(run.dir()).unwrap().spec(), run.spec());

    // Branches: random pruning keeps each tensor's count; reinit and reset keep the mask; SNIP the density.
    let mut ctx = Context { data: &data, exec: &exec, events: &mut events };
    let random = Branch::create(&run, BranchSpec::new(BranchKind::RandomPrune)).unwrap();
    let rmask = random.mask(2, &mut ctx).unwrap();
    for name in m2.names() {
        assert_eq!(rmask.survivors_of(name), m2.survivors_of(name), "{name}");
    }
    assert_ne!(rmask, m2);
    let snip = Branch::create(&run, BranchSpec::new(BranchKind::Snip)).unwrap();
    let smask = snip.mask(2, &mut ctx).unwrap();
    assert_eq!(smask.survivors(), m2.survivors());
    let results = Branch::create(&run, BranchSpec::new(BranchKind::Reinit)).unwrap().run(&[1], &mut ctx).unwrap();
    assert_eq!(results[0].1.density, m1.density());

    // Errors name the problem.
    let err = run.outcome(5).unwrap_err().to_string();
    assert!(err.contains("level 5 of run") && err.contains("levels 0-2 are"), "{err}");
    let err = Branch::create(&run, BranchSpec::new(BranchKind::Reset)).unwrap().run(&[4], &mut ctx).unwrap_err();
    assert!(err.to_string().contains("level 4"), "{err}");
    let err = Branch::create(&run, BranchSpec::new(BranchKind::Retrain)).unwrap_err().to_string();
    assert!(err.contains("needs a learning rate"), "{err}");
}

#[test]
fn stability_reuses_runs_and_measures_zero_for_a_network_and_itself() {
    let store = tempfile::tempdir().unwrap();
    let data = data();
    let exec = Exec::default();
    let run = Lottery::create(store.path(), spec(0)).unwrap();
    let mut started = Vec::new();
    let mut events = |e: Event| {
        if let Event::Started { label, .. } = e {
            started.push(label)
        }
    };
    let mut ctx = Context { data: &data, exec: &exec, events: &mut events };
    run.run(1, &mut ctx).unwrap();

    // With k = 0, level 0 is its own pruning partner: the distance is exactly zero.
    let r = lt_lottery::pruning(&run, 0, 1, false, &mut ctx).unwrap();
    assert_eq!(r.imp.l2.mean, 0.0);

    let d = lt_lottery::data_order(&run, 1, 2, true, &mut ctx).unwrap();
    assert_eq!(d.imp.pairs.len(), 1);
    assert!(d.imp.l2.mean > 0.0 && d.imp.angle.mean > 0.0 && d.imp.angle.mean < 90.0, "{d:?}");
    let random = d.random.as_ref().unwrap();
    assert!((random.density - d.imp.density).abs() < 1e-12);
    assert!(d.ratio_l2.unwrap() > 0.0);
    assert!(run.dir().join("stability/data-order-level_1-n2.json").is_file());

    let p = lt_lottery::pruning(&run, 1, 2, true, &mut ctx).unwrap();
    assert_eq!(p.imp.pairs.len(), 2);
    assert!(p.imp.l2.min > 0.0);
    // Reused: the level's own run is copy 0 and the dense run is its partner; copy 1 of each
    // subnetwork and one dense partner were trained once each, in either measurement.
    let trained: Vec<_> = started.iter().filter(|l| l.contains("data order")).collect();
    assert_eq!(trained.len(), 3, "{started:?}");

    let mut events = quiet();
    let mut ctx = Context { data: &data, exec: &exec, events: &mut events };
    let curve = lt_lottery::interpolate(&run, 1, 5, 0, &mut ctx).unwrap();
    assert_eq!(curve.errors.len(), 5);
    assert_eq!(curve.bn_batches, 0, "LeNet has no BatchNorm");
    let err = lt_lottery::data_order(&run, 1, 1, false, &mut ctx).unwrap_err().to_string();
    assert!(err.contains("at least 2 samples"), "{err}");
}

#[test]
fn dense_instability_takes_w_k_from_a_short_trajectory_and_reuses_every_copy() {
    let store = tempfile::tempdir().unwrap();
    let data = data();
    let exec = Exec::default();
    let train = spec(0).train; // LeNet, T = 40
    let runs = lt_lottery::DenseRuns::create(store.path(), train).unwrap();
    let ks = [0, 5, 10];
    let probe = lt_lottery::Probe { points: 3, bn_batches: 4, train_examples: 200 };
    let mut events = quiet();
    let out = runs.measure(&ks, &probe, &mut Context { data: &data, exec: &exec, events: &mut events }).unwrap();
    assert_eq!(out.iter().map(|m| m.rewind).collect::<Vec<_>>(), ks);
    for m in &out {
        assert_eq!(m.seeds, [0, 1]);
        let e = &m.path.test_errors;
        assert_eq!((e.len(), m.path.train_errors.len(), m.path.train_examples), (3, 3, 200));
        let top = e.iter().copied().fold(f64::MIN, f64::max);
        assert!((m.barrier - (top - (e[0] + e[2]) / 2.0)).abs() < 1e-12, "{m:?}");
        assert!(m.distance.total.l2 > 0.0, "different data orders give different networks");
        // LeNet has no BatchNorm: nothing to recompute, and the ends are the copies themselves.
        assert_eq!(m.path.bn_batches, 0);
        assert_eq!(m.accuracy_recomputed, m.accuracy_running);
    }

    // W_10 of the run that stops at 10 is W_10 of a run to T (the lottery's level 0 saves it).
    let run = Lottery::create(store.path(), spec(10)).unwrap();
    run.run(0, &mut Context { data: &data, exec: &exec, events: &mut events }).unwrap();
    let traj = std::fs::read_dir(runs.dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("trajectory-"))
        .unwrap();
    assert_eq!(
        lt_lottery::checkpoint_weights(&traj.join("step_10.safetensors"), None).unwrap(),
        lt_lottery::checkpoint_weights(&run.rewind_checkpoint(), None).unwrap()
    );

    // Measured once: a second call trains and evaluates nothing, and returns the same numbers.
    let mut started = 0;
    let mut count = |e: Event| started += matches!(e, Event::Started { .. }) as usize;
    let again = runs.measure(&ks, &probe, &mut Context { data: &data, exec: &exec, events: &mut count }).unwrap();
    assert_eq!(started, 0);
    assert_eq!(again, out);
    assert_eq!(runs.remaining(&ks).unwrap(), 0);
    assert!(runs.measure(&[40], &probe, &mut Context { data: &data, exec: &exec, events: &mut quiet() }).is_err());
}

/// Runs with the same training share level 0: a one-shot run and a run reset to 0 borrow the
/// finished dense level of a run rewound to k (which holds W_0 and W_k) instead of training it,
/// and so does a run rewound to another point the first run was asked to save for (a plan's
/// rewind grid); a run rewound anywhere else cannot (its W_k is not there) and trains its own.
#[test]
fn runs_with_the_same_training_borrow_a_finished_dense_level() {
    let store = tempfile::tempdir().unwrap();
    let data = data();
    let exec = Exec::default();
    let mut events = quiet();
    // 40 is the end of training: no run rewinds there, so nothing is saved for it.
    let first = Lottery::create(store.path(), spec(10)).unwrap().saving_for([20, 40]);
    let dense = first.run(0, &mut Context { data: &data, exec: &exec, events: &mut events }).unwrap()[0].clone();
    let mut one_shot = spec(10);
    one_shot.prune.one_shot = Some(0.3);
    assert!(!first.level_dir(0).join("step_40.safetensors").exists());
    for (other, borrows) in [(one_shot, true), (spec(0), true), (spec(20), true), (spec(30), false)] {
        let run = Lottery::create(store.path(), other).unwrap();
        let (mut labels, mut borrowed) = (Vec::new(), false);
        let mut events = |e: Event| match e {
            Event::Started { label, .. } => labels.push(label),
            Event::Borrowed { label, from, .. } => {
                borrowed |= label.starts_with("level 0") && from.starts_with("lenet-")
            }
            _ => {}
        };
        let outcomes = run.run(1, &mut Context { data: &data, exec: &exec, events: &mut events }).unwrap();
        assert_eq!(borrowed, borrows, "{labels:?}");
        if borrows {
            assert_eq!(outcomes[0], dense);
            let wk = run.rewind_checkpoint();
            let theirs = first.level_dir(0).join(wk.file_name().unwrap());
            assert!(std::fs::read(&wk).unwrap() == std::fs::read(theirs).unwrap(), "W_k differs");
        } else {
            assert!(labels.iter().any(|l| l.starts_with("level 0")), "{labels:?}");
        }
        assert!(run.outcome(1).is_ok());
    }
}
