//! Which Fashion-MNIST the tests of this workspace read.
//!
//! The full dataset where it is installed (Debian's `dataset-fashion-mnist`, which `.ci/run`
//! installs, or `LT_SYSTEM_DATASETS`), else the 2,000/500-example sample bundled in the repository's
//! `datasets/fashion-mnist-sample/`, so that `cargo test --workspace` passes on a fresh clone with
//! nothing installed. The fallback is said once per test binary, on the terminal (not in the
//! captured test output); a test that checks facts of the full files only (their counts, their
//! checksums) is skipped, each with a note.
//! With `LT_REAL_DATA=required` (CI) a missing full dataset fails the test instead, so real-data
//! coverage cannot silently disappear.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Once;

use crate::Locations;

/// The Fashion-MNIST a test reads.
#[derive(Debug, Clone)]
pub struct TestData {
    /// The dataset's registry name: `fashion-mnist` or `fashion-mnist-sample`.
    pub name: &'static str,
    /// Where to find it: the system folder, or the repository's `datasets/` as data directory.
    pub locations: Locations,
    /// Whether this is the full dataset (60,000 / 10,000 examples).
    pub full: bool,
}

impl TestData {
    /// `--data-dir DIR` for the `lt` binary when the sample is used; nothing for the full dataset.
    pub fn data_dir_args(&self) -> Vec<String> {
        match (&self.locations.data_dir, self.full) {
            (Some(dir), false) => vec!["--data-dir".into(), dir.display().to_string()],
            _ => Vec::new(),
        }
    }

    /// `n` training examples, or all the dataset has when it has fewer (the sample: 2,000).
    pub fn at_most(&self, n: usize) -> usize {
        let train = crate::Manifest::named(self.name).ok().and_then(|m| m.splits.get("train").map(|s| s.count));
        train.map_or(n, |count| n.min(count))
    }
}

/// The repository's `datasets/` folder (the bundled sample's data directory).
pub fn bundled_datasets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets")
}

/// The full dataset from the system folder, or the locations searched and a note to print.
/// Panics under `LT_REAL_DATA=required` when it is missing.
fn full(test: &str) -> Result<TestData, (Locations, String)> {
    let mut loc = Locations::from_env(None);
    loc.data_dir = None;
    let dir = loc.system_dir.join("fashion-mnist");
    // Every file of every split of the registry's manifest, raw or gzipped.
    let manifest = crate::Manifest::named("fashion-mnist").expect("fashion-mnist is in the built-in registry");
    let installed = manifest
        .splits
        .values()
        .flat_map(|split| &split.files)
        .all(|f| dir.join(f).is_file() || dir.join(format!("{f}.gz")).is_file());
    if installed {
        return Ok(TestData { name: "fashion-mnist", locations: loc, full: true });
    }
    let missing =
        format!("the full Fashion-MNIST is not in {} (Debian: `apt-get install dataset-fashion-mnist`)", dir.display());
    assert!(
        std::env::var("LT_REAL_DATA").map_or(true, |v| v != "required"),
        "{test}: LT_REAL_DATA=required but {missing}"
    );
    Err((loc, missing))
}

/// The full Fashion-MNIST from the system folder if installed, else the bundled sample (with a
/// note on stderr naming `test`). Panics under `LT_REAL_DATA=required` when the full one is missing.
pub fn fashion_mnist(test: &str) -> TestData {
    full(test).unwrap_or_else(|(mut loc, missing)| {
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            say(&format!("note: {test}: {missing}; running on the bundled 2,000-example sample instead"))
        });
        loc.data_dir = Some(bundled_datasets());
        TestData { name: "fashion-mnist-sample", locations: loc, full: false }
    })
}

/// The full Fashion-MNIST, or `None` (with a note on stderr) where a test that checks the full
/// files themselves must be skipped. Panics under `LT_REAL_DATA=required` when it is missing.
pub fn full_fashion_mnist(test: &str) -> Option<TestData> {
    full(test).map_err(|(_, missing)| say(&format!("note: skipping {test}: it checks the full files; {missing}"))).ok()
}

/// Straight to stderr, past the test harness's capture of `eprintln!`, so a passing run shows it.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
