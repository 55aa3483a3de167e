//! The one error type of `lt-data`. Every variant that concerns a file names it, and every
//! format error says what was expected and what was found.

use std::path::PathBuf;

/// An error of the data layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file's contents are not what its format requires.
    #[error("{}: {what}: expected {expected}, found {found}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// Which part of the format disagrees (e.g. "magic number").
        what: &'static str,
        /// What the format requires.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// A file is shorter (or longer) than its header or record size says.
    #[error("{}: {what}: expected {expected} bytes, found {found} (truncated or not this format)", path.display())]
    Size {
        /// The file.
        path: PathBuf,
        /// What the size was derived from.
        what: String,
        /// Expected size in bytes.
        expected: u64,
        /// Actual size in bytes.
        found: u64,
    },
    /// An image file and its label file disagree on the number of examples.
    #[error("{} holds {images} images but {} holds {labels} labels", images_path.display(), labels_path.display())]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Its count.
        images: u64,
        /// The label file.
        labels_path: PathBuf,
        /// Its count.
        labels: u64,
    },
    /// A label is not a valid class index.
    #[error("{}: example {index} has label {label}, but the dataset has {classes} classes (0..{classes})", path.display())]
    LabelOutOfRange {
        /// The file holding the label.
        path: PathBuf,
        /// The example's index in that file.
        index: u64,
        /// The label found.
        label: u32,
        /// Number of classes.
        classes: u32,
    },
    /// A file's checksum is not the manifest's.
    #[error("{}: {algorithm} checksum mismatch: expected {expected}, found {found}", path.display())]
    Checksum {
        /// The file.
        path: PathBuf,
        /// "md5" or "sha256".
        algorithm: &'static str,
        /// The manifest's value.
        expected: String,
        /// The file's value.
        found: String,
    },
    /// No dataset of this name is registered.
    #[error("unknown dataset {name:?}; known datasets: {}", known.join(", "))]
    UnknownDataset {
        /// The name asked for.
        name: String,
        /// The registered names.
        known: Vec<String>,
    },
    /// A dataset split's files were not found in any searched location.
    #[error("dataset {dataset:?}, split {split:?}: {missing} not found; searched {}{hint}",
        searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// The dataset.
        dataset: String,
        /// The split.
        split: String,
        /// The first file that was missing.
        missing: String,
        /// The directories searched, in order.
        searched: Vec<PathBuf>,
        /// How to get it.
        hint: String,
    },
    /// A dataset's folder lacks files of a split (files of one dataset never come from two places).
    #[error(
        "dataset {dataset:?} in {}: split {split:?} lacks {} (the files of one dataset must all be in one folder: complete this one or remove it; `lt data verify {dataset}` checks it){hint}",
        dir.display(),
        missing.join(", ")
    )]
    Incomplete {
        /// The dataset.
        dataset: String,
        /// The split.
        split: String,
        /// The folder that holds some of the dataset's files.
        dir: PathBuf,
        /// The split's files that are not in it (IDX: neither raw nor `.gz`).
        missing: Vec<String>,
        /// How to get them.
        hint: String,
    },
    /// An error in the content of a gzip file, found in its decompressed copy in the cache (the
    /// inner error names the `.gz`).
    #[error("{source} (in its decompressed content, read from {})", copy.display())]
    Decompressed {
        /// The decompressed copy that was read.
        copy: PathBuf,
        /// The error, naming the `.gz` file.
        source: Box<Error>,
    },
    /// A dataset manifest is malformed.
    #[error("manifest {name}: {message}")]
    Manifest {
        /// The manifest's name or path.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A download failed.
    #[error("download of {url} failed: {message}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong (an HTTP status, a network error).
        message: String,
    },
    /// Every source of a file failed; each failure is listed.
    #[error("could not fetch {file}:\n  {}", failures.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  "))]
    FetchFailed {
        /// The file.
        file: String,
        /// One error per URL tried.
        failures: Vec<Error>,
    },
    /// An archive holds a member that is not safe or not expected to extract.
    #[error("{}: refusing archive member {member:?}: {reason}", archive.display())]
    ArchiveMember {
        /// The archive.
        archive: PathBuf,
        /// The member's name.
        member: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An image could not be decoded.
    #[error("{}: cannot decode image: {message}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// An output would overwrite something already in place.
    #[error("{}: already exists; refusing to overwrite it", path.display())]
    Exists {
        /// The path in the way.
        path: PathBuf,
    },
    /// An invalid argument or configuration.
    #[error("{0}")]
    Config(String),
    /// A tensor could not be built.
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// This error with every decompressed copy of `files` (pairs of the file the user has and the
    /// copy that was read) named by the user's file, the copy kept as a detail: an error must name
    /// the file the user has, not a cache entry.
    pub(crate) fn naming_originals(self, files: &[(&std::path::Path, &std::path::Path)]) -> Self {
        let original = |p: &PathBuf| files.iter().find(|(_, copy)| p == copy).map(|(file, copy)| (*file, *copy));
        let mut copy = None;
        let mut rename = |p: &mut PathBuf| {
            if let Some((file, c)) = original(p) {
                copy.get_or_insert(c.to_path_buf());
                *p = file.to_path_buf();
            }
        };
        let mut e = self;
        match &mut e {
            Error::Io { path, .. }
            | Error::Format { path, .. }
            | Error::Size { path, .. }
            | Error::LabelOutOfRange { path, .. } => rename(path),
            Error::CountMismatch { images_path, labels_path, .. } => {
                rename(images_path);
                rename(labels_path);
            }
            _ => {}
        }
        match copy {
            Some(copy) => Error::Decompressed { copy, source: Box::new(e) },
            None => e,
        }
    }
}

/// Attaches a path to `std::io` results.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T, Error>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T, Error> {
        self.map_err(|e| Error::io(path, e))
    }
}
