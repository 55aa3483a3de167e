//! Where datasets are found, and where fetched data and caches go.
//!
//! Search order for dataset `NAME`: the data directory (`--data-dir` or `LT_DATA_DIR`), then Debian's
//! `/usr/share/datasets/NAME/` (where `apt-get install dataset-fashion-mnist` puts Fashion-MNIST;
//! `LT_SYSTEM_DATASETS` names another system folder, or an empty one to ignore it),
//! then the user cache (`LT_CACHE_DIR`, else `$XDG_CACHE_HOME/lt`, else `~/.cache/lt`) under
//! `datasets/NAME/`. A data directory is a folder *of* datasets: only `DIR/NAME/` is searched, never
//! `DIR` itself, because datasets share file names (MNIST and Fashion-MNIST both have
//! `train-images-idx3-ubyte.gz`) and a dataset must never be read under another's name. The first
//! location holding any of a dataset's files is the dataset's: its splits are never completed
//! from a later one (`locate_split`).

use std::path::{Path, PathBuf};

/// Which kind of location a dataset was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--data-dir` / `LT_DATA_DIR`.
    DataDir,
    /// The system's dataset folder (Debian's `/usr/share/datasets`).
    System,
    /// The user cache, where `lt data fetch` puts downloads by default.
    Cache,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::DataDir => "data dir",
            Origin::System => "system (Debian package)",
            Origin::Cache => "user cache",
        })
    }
}

/// The places datasets are searched for and written to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    /// An explicit data directory, searched first.
    pub data_dir: Option<PathBuf>,
    /// The system dataset root (`/usr/share/datasets`).
    pub system_dir: PathBuf,
    /// The cache root: fetched datasets under `datasets/`, decompressed files under `raw/`.
    pub cache_dir: PathBuf,
}

impl Locations {
    /// Locations from the environment: `data_dir` if given, else `LT_DATA_DIR`; the system folder
    /// from `LT_SYSTEM_DATASETS`, else `/usr/share/datasets`; `LT_CACHE_DIR`, `XDG_CACHE_HOME` or
    /// `HOME` for the cache.
    pub fn from_env(data_dir: Option<PathBuf>) -> Self {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let cache_dir = var("LT_CACHE_DIR")
            .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("lt")))
            .or_else(|| var("HOME").map(|p| p.join(".cache").join("lt")))
            .unwrap_or_else(|| std::env::temp_dir().join("lt-cache"));
        Locations {
            data_dir: data_dir.or_else(|| var("LT_DATA_DIR")),
            system_dir: var("LT_SYSTEM_DATASETS").unwrap_or_else(|| PathBuf::from("/usr/share/datasets")),
            cache_dir,
        }
    }

    /// The candidate folders for dataset `name`, in search order.
    pub fn candidates(&self, name: &str) -> Vec<(Origin, PathBuf)> {
        let mut out = Vec::new();
        if let Some(dir) = &self.data_dir {
            out.push((Origin::DataDir, dir.join(name)));
        }
        out.push((Origin::System, self.system_dir.join(name)));
        out.push((Origin::Cache, self.cache_dir.join("datasets").join(name)));
        out
    }

    /// Where `lt data fetch` puts dataset `name`: under the data directory if one is set, else in the cache.
    pub fn fetch_dir(&self, name: &str) -> PathBuf {
        match &self.data_dir {
            Some(dir) => dir.join(name),
            None => self.cache_dir.join("datasets").join(name),
        }
    }

    /// Locations with everything under one folder (for tests): no system folder is searched.
    pub fn isolated(root: &Path) -> Self {
        Locations { data_dir: Some(root.join("data")), system_dir: root.join("system"), cache_dir: root.join("cache") }
    }
}
