//! The loaders on the real files: Fashion-MNIST as Debian's `dataset-fashion-mnist` installs it
//! (installed by `.ci/run`; where it is not installed, the bundled sample, or a skip with a note:
//! `lt_data::testing`), and the MNIST test set bundled in `tests/data/mnist/`. The expected
//! values were read with Python's `gzip` module, independently of this code.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;
use lt_data::{Dataset, Loader, Locations, Origin, testing};

fn system_locations() -> Locations {
    let mut loc = Locations::from_env(None);
    loc.data_dir = None;
    loc
}

fn bundled_datasets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}

fn open(name: &str, split: &str, loc: &Locations) -> Dataset {
    Dataset::open(name, split, loc).unwrap_or_else(|e| panic!("{e}\n(real datasets are installed by .ci/run)"))
}

fn histogram(d: &Dataset) -> Vec<usize> {
    let mut h = vec![0; 10];
    for i in 0..d.len() {
        h[d.label(i).unwrap() as usize] += 1;
    }
    h
}

fn pixel(d: &Dataset, i: usize, y: usize, x: usize) -> u8 {
    d.image(i).unwrap().data[y * 28 + x]
}

fn pixel_sum(d: &Dataset, i: usize) -> u64 {
    d.image(i).unwrap().data.iter().map(|&p| p as u64).sum()
}

#[test]
fn fashion_mnist_from_the_debian_package() {
    let Some(fashion) = testing::full_fashion_mnist("fashion_mnist_from_the_debian_package") else { return };
    let loc = fashion.locations;
    let train = open("fashion-mnist", "train", &loc);
    assert_eq!(train.location().1, Origin::System);
    assert_eq!(train.len(), 60_000);
    assert_eq!(histogram(&train), vec![6000; 10]);
    assert_eq!((0..10).map(|i| train.label(i).unwrap()).collect::<Vec<_>>(), [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(pixel(&train, 0, 14, 14), 217);
    assert_eq!(pixel(&train, 1, 10, 10), 252);
    assert_eq!(pixel_sum(&train, 0), 76_247);
    let all: u64 = (0..train.len()).map(|i| pixel_sum(&train, i)).sum();
    assert_eq!(all, 3_431_114_169);

    let test = open("fashion-mnist", "test", &loc);
    assert_eq!(test.len(), 10_000);
    assert_eq!(histogram(&test), vec![1000; 10]);
    assert_eq!(pixel(&test, 0, 14, 14), 110);
    assert_eq!(pixel(&test, 9999, 20, 5), 31);
    assert_eq!(pixel_sum(&test, 0), 33_456);
}

#[test]
fn mnist_test_set_from_the_bundled_copy() {
    let mut loc = system_locations();
    loc.data_dir = Some(bundled_datasets());
    let test = open("mnist", "test", &loc);
    assert_eq!(test.location().1, Origin::DataDir);
    assert_eq!(test.len(), 10_000);
    assert_eq!(histogram(&test), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    assert_eq!((0..10).map(|i| test.label(i).unwrap()).collect::<Vec<_>>(), [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    assert_eq!(pixel_sum(&test, 0), 18_454);
    let all: u64 = (0..test.len()).map(|i| pixel_sum(&test, i)).sum();
    assert_eq!(all, 264_923_200);
    // The training images are not on these machines: the error says so and how to get them.
    let err = Dataset::open("mnist", "train", &loc).unwrap_err().to_string();
    assert!(err.contains("train-images-idx3-ubyte") && err.contains("lt data fetch mnist"), "{err}");
}

#[test]
fn loader_batches_are_normalized_deterministic_and_seed_dependent() {
    let fashion = testing::fashion_mnist("loader_batches_are_normalized_deterministic_and_seed_dependent");
    let train = Arc::new(open(fashion.name, "train", &fashion.locations));
    let mut a = Loader::new(train.clone(), 3, 60, &Device::Cpu).unwrap();
    let mut b = Loader::new(train.clone(), 3, 60, &Device::Cpu).unwrap();
    let mut c = Loader::new(train.clone(), 4, 60, &Device::Cpu).unwrap();
    assert_eq!(a.order().iterations_per_epoch(), train.len().div_ceil(60));
    // b jumps straight to iteration 2501 (epoch 2); a walks there.
    let late_b = b.batch(2501).unwrap();
    for t in 0..3 {
        a.batch(t).unwrap();
    }
    let late_a = a.batch(2501).unwrap();
    assert_eq!(late_a.indices, late_b.indices);
    let (xa, xb) = (
        late_a.images.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        late_b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
    );
    assert_eq!(xa, xb, "bit-identical");
    assert_ne!(c.batch(2501).unwrap().indices, late_a.indices);

    assert_eq!(late_a.images.dims(), &[60, 1, 28, 28]);
    let labels = late_a.labels.to_vec1::<u32>().unwrap();
    for (k, &i) in late_a.indices.iter().enumerate() {
        assert_eq!(labels[k], train.label(i as usize).unwrap());
        let raw = train.image(i as usize).unwrap().data[14 * 28 + 14] as f32;
        let expect = (raw / 255.0 - 0.2860) / 0.3530;
        assert!((xa[k * 784 + 14 * 28 + 14] - expect).abs() < 1e-5);
    }
}

#[test]
fn evaluation_visits_every_test_example_once_in_order() {
    let fashion = testing::fashion_mnist("evaluation_visits_every_test_example_once_in_order");
    let test = Arc::new(open(fashion.name, "test", &fashion.locations));
    let mut seen = 0;
    for batch in test.eval_batches(1000, &Device::Cpu).unwrap() {
        let batch = batch.unwrap();
        assert_eq!(batch.indices[0] as usize, seen);
        seen += batch.indices.len();
    }
    assert_eq!(seen, if fashion.full { 10_000 } else { 500 });
}

#[test]
fn a_data_dir_is_a_folder_of_datasets_never_one_dataset_under_another_name() {
    // tests/data/mnist holds MNIST files whose names Fashion-MNIST shares: pointing the
    // data dir at that folder must not make them pass for Fashion-MNIST.
    let mut loc = system_locations();
    loc.data_dir = Some(bundled_datasets().join("mnist"));
    loc.system_dir = std::env::temp_dir().join("lt-no-system-datasets");
    let err = Dataset::open("fashion-mnist", "test", &loc).unwrap_err().to_string();
    assert!(err.contains("not found"), "{err}");
}
