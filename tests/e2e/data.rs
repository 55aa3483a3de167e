//! `lt data ...` on real files, broken files and a local HTTP server.

use std::collections::HashMap;

use crate::http_server::Server;
use crate::{Sandbox, bundled_datasets, stderr, stdout};

#[test]
fn info_finds_fashion_mnist_from_the_debian_package() {
    let Some(fashion) = lt_data::testing::full_fashion_mnist("info_finds_fashion_mnist_from_the_debian_package") else {
        return;
    };
    let sb = Sandbox::new();
    let o = sb.lt(&["data", "info", "fashion-mnist"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let system = fashion.locations.system_dir.join("fashion-mnist");
    assert!(out.contains(&format!("split train: 60000 examples, found in {}", system.display())), "{out}");
    assert!(out.contains("split test: 10000 examples"), "{out}");
    assert!(out.contains("t10k-images-idx3-ubyte.gz: ok"), "{out}");
}

#[test]
fn list_shows_partial_datasets() {
    let sb = Sandbox::new();
    let o = sb.lt(&["--data-dir", bundled_datasets().to_str().unwrap(), "data", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mnist = out.lines().find(|l| l.starts_with("mnist")).unwrap();
    assert!(mnist.contains("test:") && !mnist.contains("train:"), "{mnist}");
    assert!(out.lines().any(|l| l.starts_with("cifar10") && l.ends_with("not found")), "{out}");
}

#[test]
fn a_truncated_file_is_named_with_expected_and_found_sizes() {
    let sb = Sandbox::new();
    let dir = sb.path().join("data/fashion-mnist");
    std::fs::create_dir_all(&dir).unwrap();
    lt_data::write_idx(&dir.join("t10k-labels-idx1-ubyte"), &[3], &[1, 2, 3]).unwrap();
    let images = dir.join("t10k-images-idx3-ubyte");
    lt_data::write_idx(&images, &[3, 28, 28], &vec![0u8; 3 * 784]).unwrap();
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..1000]).unwrap();
    let o = sb.lt(&["--data-dir", sb.path().join("data").to_str().unwrap(), "data", "info", "fashion-mnist"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("t10k-images-idx3-ubyte") && err.contains("expected 2368 bytes, found 1000"), "{err}");
    assert_eq!(std::fs::read(&images).unwrap().len(), 1000, "nothing rewritten");
}

#[test]
fn verify_reports_a_bad_cifar_label_and_fails() {
    let sb = Sandbox::new();
    let dir = sb.path().join("data/cifar10/cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let px = [7u8; lt_data::CIFAR_PIXELS];
    for n in 1..=5 {
        lt_data::write_cifar_batch(&dir.join(format!("data_batch_{n}.bin")), [(1, px), (2, px)]).unwrap();
    }
    lt_data::write_cifar_batch(&dir.join("test_batch.bin"), [(3, px), (11, px)]).unwrap();
    let o = sb.lt(&["--data-dir", sb.path().join("data").to_str().unwrap(), "data", "verify", "cifar10"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("split train: 10 examples read"), "{out}");
    assert!(out.contains("split test: BAD") && out.contains("test_batch.bin") && out.contains("label 11"), "{out}");
}

#[test]
fn fetch_from_a_local_mirror_reports_a_404_and_keeps_what_was_verified() {
    let sb = Sandbox::new();
    let served: HashMap<String, Vec<u8>> =
        ["train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
            .iter()
            .map(|n| (n.to_string(), std::fs::read(bundled_datasets().join("mnist").join(n)).unwrap()))
            .collect();
    let server = Server::start(served);
    let data = sb.path().join("data");
    let o = sb.lt(&["--data-dir", data.to_str().unwrap(), "data", "fetch", "mnist", "--mirror", &server.base]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("train-images-idx3-ubyte.gz") && err.contains("404"), "{err}");
    // The missing file left nothing under its name (nor a temporary); the other three were fetched and verified.
    let mut present: Vec<_> = std::fs::read_dir(data.join("mnist"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    present.sort();
    assert_eq!(present, ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"]);
    assert!(stdout(&o).contains("t10k-images-idx3-ubyte.gz: downloaded, checksum ok"), "{}", stdout(&o));
    // ... and the test split is usable straight away.
    let o = sb.lt(&["--data-dir", data.to_str().unwrap(), "data", "info", "mnist"]);
    assert!(stdout(&o).contains("split test: 10000 examples"), "{}", stdout(&o));
}

#[test]
fn fetch_refuses_a_corrupted_file_by_its_size_and_checksum() {
    let sb = Sandbox::new();
    let mut served: HashMap<String, Vec<u8>> =
        ["train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
            .iter()
            .map(|n| (n.to_string(), std::fs::read(bundled_datasets().join("mnist").join(n)).unwrap()))
            .collect();
    // The train images are not on these machines: serve a corrupted stand-in to see the checksum refused.
    served.insert("train-images-idx3-ubyte.gz".into(), b"not the real file".to_vec());
    let server = Server::start(served);
    let data = sb.path().join("data");
    let o = sb.lt(&["--data-dir", data.to_str().unwrap(), "data", "fetch", "mnist", "--mirror", &server.base]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("size mismatch: expected 9912422 bytes, found 17"), "{}", stderr(&o));
    assert!(!data.join("mnist/train-images-idx3-ubyte.gz").exists());
}

/// A miniature ImageNet tree: three classes, `n` JPEGs of each per split (train, val).
fn write_mini_imagenet(src: &std::path::Path, train: u32, val: u32) {
    for (split, n) in [("train", train), ("val", val)] {
        for (c, wnid) in ["n01440764", "n01443537", "n01484850"].iter().enumerate() {
            let dir = src.join(split).join(wnid);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let shade = (40 * c as u32 + 7 * i) as u8;
                image::RgbImage::from_fn(50, 40 + i, |x, y| image::Rgb([shade, (x * 5) as u8, (y * 6) as u8]))
                    .save(dir.join(format!("{i}.JPEG")))
                    .unwrap();
            }
        }
    }
}

/// The miniature tree in `SANDBOX/tree`, packed into `SANDBOX/data/imagenet` at a shorter side of 32.
fn pack_mini_imagenet(sb: &Sandbox, train: u32, val: u32) -> (std::path::PathBuf, std::process::Output) {
    let src = sb.path().join("tree");
    write_mini_imagenet(&src, train, val);
    let out = sb.path().join("data/imagenet");
    let o = sb.lt(&["data", "pack", "imagenet", src.to_str().unwrap(), out.to_str().unwrap(), "--short-side", "32"]);
    assert!(o.status.success(), "{}", stderr(&o));
    (src, o)
}

#[test]
fn pack_imagenet_then_read_it_back() {
    let sb = Sandbox::new();
    let (src, o) = pack_mini_imagenet(&sb, 2, 1);
    let out = sb.path().join("data/imagenet");
    assert!(stdout(&o).contains("train: 6 images") && stdout(&o).contains("3 classes"), "{}", stdout(&o));
    let data = sb.path().join("data");
    let hint = format!("`lt` finds it with `--data-dir {}`", data.display());
    assert!(stdout(&o).contains(&hint), "{}", stdout(&o));
    let o = sb.lt(&["--data-dir", data.to_str().unwrap(), "data", "verify", "imagenet"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("split val: 3 examples read"), "{}", stdout(&o));
    // Packing over an existing pack is refused.
    let o = sb.lt(&["data", "pack", "imagenet", src.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    // Without OUT, the pack goes where `lt` looks (here the sandbox's cache) and is found there.
    let o = sb.lt(&["data", "pack", "imagenet", src.to_str().unwrap(), "--short-side", "32"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("`lt` finds it there (user cache)"), "{}", stdout(&o));
    let o = sb.lt(&["data", "info", "imagenet"]);
    assert!(o.status.success() && stdout(&o).contains("user cache"), "{}{}", stdout(&o), stderr(&o));
    // A truncated JPEG stops a pack, naming it; with --skip-unreadable the same command resumes
    // the pack and leaves the file out, listing it.
    let bad = src.join("train/n01443537/1.JPEG");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let again = sb.path().join("data/imagenet-2");
    let args = ["data", "pack", "imagenet", src.to_str().unwrap(), again.to_str().unwrap(), "--shard-images", "2"];
    let o = sb.lt(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("1.JPEG"), "{}", stderr(&o));
    let o = sb.lt(&[&args[..], &["--skip-unreadable"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("resumed: 2 images") && text.contains("train: 5 images"), "{text}");
    assert!(text.contains("skipped 1 unreadable file(s)") && text.contains("1.JPEG"), "{text}");
}

#[test]
fn an_incomplete_data_dir_copy_is_refused_not_completed_from_elsewhere() {
    // Fashion-MNIST with the test labels missing: the test split must not take its labels from
    // Debian's copy (or any other), and verify must fail.
    let sb = Sandbox::new();
    let dir = sb.path().join("data/fashion-mnist");
    std::fs::create_dir_all(&dir).unwrap();
    let images = |n: u32| vec![0u8; n as usize * 784];
    lt_data::write_idx(&dir.join("train-images-idx3-ubyte"), &[4, 28, 28], &images(4)).unwrap();
    lt_data::write_idx(&dir.join("train-labels-idx1-ubyte"), &[4], &[0, 1, 2, 3]).unwrap();
    lt_data::write_idx(&dir.join("t10k-images-idx3-ubyte"), &[2, 28, 28], &images(2)).unwrap();
    let data = sb.path().join("data");
    let o = sb.lt(&["--data-dir", data.to_str().unwrap(), "data", "verify", "fashion-mnist"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{}", stderr(&o));
    assert!(out.contains("t10k-labels-idx1-ubyte") && !out.contains("fashion-mnist: ok"), "{out}");
    assert!(!out.contains("/usr/share/datasets"), "nothing read from another copy: {out}");
    let o = train_two_steps(&sb, &data, &sb.path().join("run"));
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("t10k-labels-idx1-ubyte") && err.contains(dir.to_str().unwrap()), "{err}");
    assert!(!sb.path().join("run/final.safetensors").exists());
}

#[test]
fn an_error_in_a_gz_file_names_the_gz_not_its_cached_copy() {
    let sb = Sandbox::new();
    let dir = sb.path().join("data/fashion-mnist");
    std::fs::create_dir_all(&dir).unwrap();
    let gz = |name: &str, bytes: &[u8]| std::fs::write(dir.join(format!("{name}.gz")), gzip(bytes)).unwrap();
    // A label file whose header says 5 labels, holding 3.
    let mut labels = vec![0, 0, 8, 1, 0, 0, 0, 5];
    labels.extend([1, 2, 3]);
    gz("t10k-labels-idx1-ubyte", &labels);
    let raw = sb.path().join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    lt_data::write_idx(&raw.join("images"), &[5, 28, 28], &vec![0u8; 5 * 784]).unwrap();
    gz("t10k-images-idx3-ubyte", &std::fs::read(raw.join("images")).unwrap());
    std::fs::copy(dir.join("t10k-images-idx3-ubyte.gz"), dir.join("train-images-idx3-ubyte.gz")).unwrap();
    gz("train-labels-idx1-ubyte", &[0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 3, 4, 5]);
    let o = sb.lt(&["--data-dir", sb.path().join("data").to_str().unwrap(), "data", "info", "fashion-mnist"]);
    let err = stderr(&o) + &stdout(&o);
    let named = dir.join("t10k-labels-idx1-ubyte.gz");
    assert!(err.contains(&format!("{}:", named.display())), "the .gz is named first: {err}");
    assert!(err.contains("decompressed content, read from") && err.contains("cache"), "{err}");
}

/// `lt train` of LeNet on the Fashion-MNIST of data dir `data`, two steps of batch 2, into `run`.
fn train_two_steps(sb: &Sandbox, data: &std::path::Path, run: &std::path::Path) -> std::process::Output {
    let (data, run) = (data.to_str().unwrap(), run.to_str().unwrap());
    sb.lt(&[
        "--data-dir",
        data,
        "train",
        "--preset",
        "lenet",
        "--dataset",
        "fashion-mnist",
        "--iters",
        "2it",
        "--batch",
        "2",
        "--out",
        run,
    ])
}

/// A well-formed miniature Fashion-MNIST in `dir` (raw IDX files: 6 train, 4 test examples).
fn write_mini_fashion(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (prefix, n) in [("train", 6u32), ("t10k", 4)] {
        let images: Vec<u8> = (0..n as usize * 784).map(|i| (i % 251) as u8).collect();
        lt_data::write_idx(&dir.join(format!("{prefix}-images-idx3-ubyte")), &[n, 28, 28], &images).unwrap();
        let labels: Vec<u8> = (0..n as u8).map(|i| i % 10).collect();
        lt_data::write_idx(&dir.join(format!("{prefix}-labels-idx1-ubyte")), &[n], &labels).unwrap();
    }
}

/// Replaces raw file `name` in `dir` by `name.gz` holding `make(the raw bytes)`; returns the `.gz`.
fn as_gz(dir: &std::path::Path, name: &str, make: impl FnOnce(Vec<u8>) -> Vec<u8>) -> std::path::PathBuf {
    let raw = dir.join(name);
    let bytes = std::fs::read(&raw).unwrap();
    std::fs::remove_file(&raw).unwrap();
    let gz = dir.join(format!("{name}.gz"));
    std::fs::write(&gz, make(bytes)).unwrap();
    gz
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Each broken folder is refused by `lt data verify` (exit 1, or 2 where the folder cannot be
/// read at all) and by `lt train` (exit 2) with an error naming the broken file and what is wrong
/// with it, and `lt train` writes nothing under a final name.
#[test]
fn a_corpus_of_broken_dataset_folders_is_refused_with_the_file_named() {
    type Break = fn(&std::path::Path) -> std::path::PathBuf;
    let cases: [(&str, Break, &[&str]); 8] = [
        (
            "truncated",
            |d| {
                let f = d.join("t10k-images-idx3-ubyte");
                let bytes = std::fs::read(&f).unwrap();
                std::fs::write(&f, &bytes[..bytes.len() - 100]).unwrap();
                f
            },
            &["expected 3152 bytes, found 3052"],
        ),
        (
            "wrong magic",
            |d| {
                let f = d.join("train-labels-idx1-ubyte");
                let mut bytes = std::fs::read(&f).unwrap();
                bytes[2] = 0x0D; // float32 instead of unsigned bytes
                std::fs::write(&f, bytes).unwrap();
                f
            },
            &["magic"],
        ),
        (
            "counts disagree",
            |d| {
                let f = d.join("t10k-labels-idx1-ubyte");
                lt_data::write_idx(&f, &[3], &[1, 2, 3]).unwrap();
                f
            },
            &["holds 4 images but", "holds 3 labels"],
        ),
        (
            "label out of range",
            |d| {
                let f = d.join("train-labels-idx1-ubyte");
                lt_data::write_idx(&f, &[6], &[0, 1, 2, 10, 4, 5]).unwrap();
                f
            },
            &["example 3 has label 10", "10 classes"],
        ),
        (
            "missing file",
            |d| {
                let f = d.join("train-images-idx3-ubyte");
                std::fs::remove_file(&f).unwrap();
                f
            },
            &["lacks"],
        ),
        (
            "empty file",
            |d| {
                let f = d.join("t10k-labels-idx1-ubyte");
                std::fs::write(&f, b"").unwrap();
                f
            },
            &["found 0"],
        ),
        (
            "not gzip",
            |d| as_gz(d, "train-images-idx3-ubyte", |_| b"this is not a gzip stream at all".to_vec()),
            &["gzip"],
        ),
        (
            "gzip cut short",
            |d| {
                as_gz(d, "t10k-images-idx3-ubyte", |raw| {
                    let packed = gzip(&raw);
                    packed[..packed.len() / 2].to_vec()
                })
            },
            &[],
        ),
    ];
    for (case, break_it, says) in cases {
        let sb = Sandbox::new();
        let data = sb.path().join("data");
        let dir = data.join("fashion-mnist");
        write_mini_fashion(&dir);
        let broken = break_it(&dir);
        let o = sb.lt(&["--data-dir", data.to_str().unwrap(), "data", "verify", "fashion-mnist"]);
        let text = stdout(&o) + &stderr(&o);
        assert!(matches!(o.status.code(), Some(1 | 2)), "{case}: verify exits non-zero: {text}");
        let named = broken.file_name().unwrap().to_str().unwrap();
        assert!(text.contains(named), "{case}: verify names {named}: {text}");
        assert!(!text.contains("fashion-mnist: ok"), "{case}: {text}");
        let run = sb.path().join("run");
        let o = train_two_steps(&sb, &data, &run);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{case}: train refuses: {}{err}", stdout(&o));
        assert!(err.contains(named), "{case}: train names {named}: {err}");
        for s in says {
            assert!(err.contains(s), "{case}: the error says {s:?}: {err}");
        }
        for f in ["final.safetensors", "checkpoint.safetensors", "metrics.jsonl"] {
            assert!(!run.join(f).exists(), "{case}: nothing written under a final name ({f})");
        }
    }
}

/// A CIFAR-10 batch that is not a whole number of 3,073-byte records is refused, named.
#[test]
fn a_cifar_batch_that_is_not_whole_records_is_refused() {
    let sb = Sandbox::new();
    let data = sb.path().join("data");
    let dir = data.join("cifar10/cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    let px = [7u8; lt_data::CIFAR_PIXELS];
    for n in 1..=5 {
        lt_data::write_cifar_batch(&dir.join(format!("data_batch_{n}.bin")), [(1, px), (2, px)]).unwrap();
    }
    lt_data::write_cifar_batch(&dir.join("test_batch.bin"), [(3, px), (4, px)]).unwrap();
    let f = dir.join("data_batch_3.bin");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes.extend_from_slice(&[0; 100]);
    std::fs::write(&f, bytes).unwrap();
    let o = sb.lt(&["--data-dir", data.to_str().unwrap(), "data", "verify", "cifar10"]);
    let text = stdout(&o) + &stderr(&o);
    assert!(matches!(o.status.code(), Some(1 | 2)) && text.contains("data_batch_3.bin"), "{text}");
    let run = sb.path().join("run");
    let o = sb.lt(&[
        "--data-dir",
        data.to_str().unwrap(),
        "train",
        "--preset",
        "resnet18-standard",
        "--dataset",
        "cifar10",
        "--iters",
        "1it",
        "--batch",
        "2",
        "--out",
        run.to_str().unwrap(),
    ]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("data_batch_3.bin") && err.contains("3073"), "{err}");
    assert!(!run.join("final.safetensors").exists());
}

/// The ImageNet presets train on a packed tree: one IMP level with rewinding of SqueezeNet (the
/// paper's schedule in epochs, here of 2 iterations each), and a step of ResNet-50 and of
/// Inception-v3 (RMSProp) at small input sizes, top-5 beside top-1.
#[test]
fn the_imagenet_presets_train_on_a_packed_tree() {
    let sb = Sandbox::new();
    pack_mini_imagenet(&sb, 4, 1);
    let data = sb.path().join("data");
    let data = data.to_str().unwrap();
    let store = sb.path().join("store");
    let o = sb.lt(&[
        "--data-dir",
        data,
        "lottery",
        "--preset",
        "squeezenet",
        "--batch",
        "6",
        "--iters",
        "2it",
        "--rewind",
        "1it",
        "--levels",
        "1",
        "--out",
        store.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("rewind to k = 1") && text.contains("top-5"), "{text}");
    let o = sb.lt(&["runs", "export", "--out", store.to_str().unwrap()]);
    let csv = stdout(&o);
    assert!(csv.lines().next().is_some_and(|h| h.ends_with(",loss,top5")), "{csv}");
    assert!(csv.lines().nth(1).is_some_and(|l| !l.ends_with(',')), "every level has a top-5: {csv}");
    assert_eq!(text.lines().filter(|l| l.trim_start().starts_with(['0', '1']) && l.contains('%')).count(), 2, "{text}");
    // At small input sizes (Inception-v3's stem and reductions need at least 75 pixels).
    for (preset, size) in [("resnet50", "64"), ("inception-v3", "80")] {
        let run = sb.path().join(preset);
        let o = sb.lt(&[
            "--data-dir",
            data,
            "train",
            "--preset",
            preset,
            "--batch",
            "2",
            "--iters",
            "1it",
            "--image-size",
            size,
            "--out",
            run.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{preset}: {}", stderr(&o));
        assert!(stdout(&o).contains("done: 1 iterations"), "{preset}: {}", stdout(&o));
        // 3 images of 3 classes, 1,000 outputs: the top-5 is reported beside the top-1.
        assert!(stdout(&o).contains("(top-5 "), "{preset}: {}", stdout(&o));
    }
}

/// `lt data fetch imagenet-miniature` generates the miniature ImageNet (nothing to download) where
/// `lt` finds it, and it verifies; a wrong --image-size for a dataset without crops is refused.
#[test]
fn the_miniature_imagenet_is_generated_by_fetch() {
    let sb = Sandbox::new();
    let o = sb.lt(&["data", "fetch", "imagenet-miniature"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = sb.lt(&["data", "verify", "imagenet-miniature"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("split train: 240 examples read"), "{}", stdout(&o));
    let o = sb.lt(&[
        "lottery",
        "--preset",
        "squeezenet",
        "--dataset",
        "imagenet-miniature",
        "--batch",
        "8",
        "--accumulate",
        "3",
        "--iters",
        "2it",
        "--out",
        sb.path().join("store").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a multiple of 3"), "{}", stderr(&o));
}
