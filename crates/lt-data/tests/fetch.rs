//! `fetch` and `verify` against a local HTTP server on 127.0.0.1, serving the real MNIST files
//! from `tests/data/mnist/` (byte-identical to the official ones), corrupted copies, 404s,
//! and generated CIFAR-10 archives.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

#[path = "../../../tests/support/http_server.rs"]
mod http_server;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use http_server::Server;
use lt_data::{Error, FetchOptions, FileStatus, Manifest, fetch, verify};

fn bundled_mnist() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/mnist")
}

/// The MNIST manifest reduced to the files these machines have.
fn mnist_test_manifest() -> Manifest {
    let mut m = Manifest::named("mnist").unwrap();
    m.files.retain(|f| f.name.starts_with("t10k"));
    m
}

fn serve_bundled(names: &[&str]) -> HashMap<String, Vec<u8>> {
    names.iter().map(|n| (n.to_string(), std::fs::read(bundled_mnist().join(n)).unwrap())).collect()
}

fn fetch_quietly(m: &Manifest, dest: &Path, base: &str) -> Result<(), Error> {
    fetch(m, dest, &FetchOptions { mirror: Some(base.into()) }, &mut |_| {})
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn fetch_downloads_verifies_and_skips_what_is_present() {
    let server = Server::start(serve_bundled(&["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]));
    let dest = tempfile::tempdir().unwrap();
    let m = mnist_test_manifest();
    let mut events = Vec::new();
    fetch(&m, dest.path(), &FetchOptions { mirror: Some(server.base.clone()) }, &mut |e| events.push(format!("{e:?}")))
        .unwrap();
    assert_eq!(names_in(dest.path()), ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]);
    assert!(events.iter().filter(|e| e.starts_with("Verified")).count() == 2, "{events:?}");
    let status = verify(&m, dest.path()).unwrap();
    assert!(status.iter().all(|(_, s)| *s == FileStatus::Ok), "{status:?}");
    // A second fetch downloads nothing.
    drop(server);
    events.clear();
    fetch(&m, dest.path(), &FetchOptions { mirror: Some("http://127.0.0.1:9".into()) }, &mut |e| {
        events.push(format!("{e:?}"))
    })
    .unwrap();
    assert!(events.iter().all(|e| e.starts_with("Present")), "{events:?}");
}

#[test]
fn corrupted_download_is_refused_and_leaves_nothing_behind() {
    let mut files = serve_bundled(&["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]);
    files.get_mut("t10k-labels-idx1-ubyte.gz").unwrap()[100] ^= 0xff;
    let server = Server::start(files);
    let dest = tempfile::tempdir().unwrap();
    let err = fetch_quietly(&mnist_test_manifest(), dest.path(), &server.base).unwrap_err().to_string();
    assert!(
        err.contains("t10k-labels-idx1-ubyte.gz")
            && err.contains("md5 checksum mismatch")
            && err.contains("ec29112dd5afa0611ce80d1b7f02629c"),
        "{err}"
    );
    // the good file stays, the bad one is not there under any name
    assert_eq!(names_in(dest.path()), ["t10k-images-idx3-ubyte.gz"]);
}

#[test]
fn a_404_names_the_url_and_keeps_the_file_already_in_place() {
    let server = Server::start(serve_bundled(&["t10k-images-idx3-ubyte.gz"]));
    let dest = tempfile::tempdir().unwrap();
    // A damaged file is in place: a failed fetch must not delete or replace it.
    std::fs::write(dest.path().join("t10k-labels-idx1-ubyte.gz"), b"old bytes").unwrap();
    let err = fetch_quietly(&mnist_test_manifest(), dest.path(), &server.base).unwrap_err().to_string();
    assert!(err.contains("/t10k-labels-idx1-ubyte.gz") && err.contains("HTTP status 404"), "{err}");
    assert_eq!(std::fs::read(dest.path().join("t10k-labels-idx1-ubyte.gz")).unwrap(), b"old bytes");
    assert_eq!(names_in(dest.path()), ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]);
    let status = verify(&mnist_test_manifest(), dest.path()).unwrap();
    assert!(matches!(&status[1].1, FileStatus::Mismatch(m) if m.contains("size mismatch")), "{status:?}");
}

#[test]
fn verify_accepts_recompressed_files_by_their_content() {
    // Debian recompresses Fashion-MNIST: the .gz md5 differs, the decompressed bytes are official.
    let Some(fashion) = lt_data::testing::full_fashion_mnist("verify_accepts_recompressed_files_by_their_content")
    else {
        return;
    };
    let m = Manifest::named("fashion-mnist").unwrap();
    let status = verify(&m, &fashion.locations.system_dir.join("fashion-mnist")).unwrap();
    assert!(status.iter().all(|(_, s)| *s == FileStatus::Recompressed), "{status:?}");
}

/// A CIFAR-10 archive in the official layout, with small batches, plus whatever extra members.
fn cifar_archive(extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // set_path refuses `..`; write the raw name so the test can build a hostile archive
        let bytes = name.as_bytes();
        header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    };
    let record = |label: u8| {
        let mut r = vec![label];
        r.extend((0..lt_data::CIFAR_PIXELS).map(|i| (i % 256) as u8));
        r
    };
    for n in 1..=5 {
        let data: Vec<u8> = (0..4).flat_map(|i| record((n + i) as u8 % 10)).collect();
        add(&format!("cifar-10-batches-bin/data_batch_{n}.bin"), &data);
    }
    add("cifar-10-batches-bin/test_batch.bin", &(0..3).flat_map(|i| record(i as u8)).collect::<Vec<_>>());
    add("cifar-10-batches-bin/batches.meta.txt", b"airplane\nautomobile\n");
    add("cifar-10-batches-bin/readme.html", b"<html></html>");
    for (name, data) in extra {
        add(name, data);
    }
    let mut gz = builder.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

fn cifar_manifest_for(archive: &[u8]) -> Manifest {
    let mut m = Manifest::named("cifar10").unwrap();
    let digests = {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, archive).unwrap();
        lt_data::digest_file(&p).unwrap()
    };
    let f = &mut m.files[0];
    f.size = Some(archive.len() as u64);
    f.md5 = Some(digests.md5);
    f.sha256 = Some(digests.sha256);
    m
}

#[test]
fn cifar_archive_is_fetched_unpacked_and_loadable() {
    let archive = cifar_archive(&[("cifar-10-batches-bin/unexpected.bin", b"skipped")]);
    let m = cifar_manifest_for(&archive);
    let server = Server::start(HashMap::from([("cifar-10-binary.tar.gz".to_string(), archive)]));
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("cifar10");
    fetch_quietly(&m, &dest, &server.base).unwrap();
    let mut members = names_in(&dest.join("cifar-10-batches-bin"));
    members.sort();
    assert_eq!(members.len(), 8, "{members:?}");
    assert!(!members.contains(&"unexpected.bin".to_string()));
    let loc = lt_data::Locations::isolated(root.path());
    let mut loc = loc;
    loc.data_dir = Some(root.path().to_path_buf());
    let train = lt_data::Dataset::open_manifest(m.clone(), "train", &loc).unwrap();
    assert_eq!(train.len(), 20);
    assert_eq!(train.label(4).unwrap(), 2, "first record of data_batch_2");
    assert!(verify(&m, &dest).unwrap().iter().all(|(_, s)| *s == FileStatus::Ok));
}

#[test]
fn archive_members_escaping_the_folder_are_refused() {
    let archive = cifar_archive(&[("../evil.bin", b"owned")]);
    let m = cifar_manifest_for(&archive);
    let server = Server::start(HashMap::from([("cifar-10-binary.tar.gz".to_string(), archive)]));
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("cifar10");
    let err = fetch_quietly(&m, &dest, &server.base).unwrap_err().to_string();
    assert!(err.contains("../evil.bin") && err.contains("refusing"), "{err}");
    assert!(!root.path().join("evil.bin").exists());
}
