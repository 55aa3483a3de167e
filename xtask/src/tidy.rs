//! Tidy checks of the source tree, run as ordinary tests: every Rust file opens with a `//!` doc,
//! no test is ignored or expects a panic, and every crate takes the workspace's lints.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                files(&path, ext, out);
            }
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["crates", "plugins", "tests", "xtask"] {
        files(&root().join(dir), "rs", &mut out);
    }
    assert!(out.len() > 10, "found only {} Rust files", out.len());
    out
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let missing: Vec<_> = sources()
        .into_iter()
        .filter(|p| !std::fs::read_to_string(p).unwrap_or_default().trim_start().starts_with("//!"))
        .collect();
    assert!(missing.is_empty(), "files without a leading //! doc: {missing:?}");
}

#[test]
fn no_test_is_ignored_or_expects_a_panic() {
    let (ignore, should_panic) = (["#[", "ignore]"].concat(), ["#[", "should_panic"].concat());
    let bad: Vec<_> = sources()
        .into_iter()
        .filter(|p| std::fs::read_to_string(p).is_ok_and(|s| s.contains(&ignore) || s.contains(&should_panic)))
        .collect();
    assert!(bad.is_empty(), "{bad:?}");
}

#[test]
fn every_crate_uses_the_workspace_lints() {
    let mut manifests = Vec::new();
    files(&root().join("crates"), "toml", &mut manifests);
    files(&root().join("plugins"), "toml", &mut manifests);
    manifests.push(root().join("xtask/Cargo.toml"));
    for m in manifests.iter().filter(|m| m.ends_with("Cargo.toml")) {
        let text = std::fs::read_to_string(m).unwrap_or_default();
        assert!(text.contains("[lints]\nworkspace = true"), "{} does not take the workspace lints", m.display());
    }
}
