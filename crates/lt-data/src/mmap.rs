//! Read-only file bytes: a memory map where the platform allows it, a plain read otherwise.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, IoContext};

/// The whole contents of a file, mapped (or read, for empty files and where mapping fails).
#[derive(Debug)]
pub struct Mapped {
    path: PathBuf,
    bytes: Bytes,
}

#[derive(Debug)]
enum Bytes {
    Map(Mmap),
    Owned(Vec<u8>),
}

impl Mapped {
    /// Maps `path` read-only.
    ///
    /// The dataset files this maps are treated as immutable: they are written once, atomically
    /// (temp file + rename), and never modified in place by this project. A file truncated by another
    /// process while mapped would fault on access; that is the standard caveat of memory maps.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        let bytes = if len == 0 {
            Bytes::Owned(Vec::new())
        } else {
            // SAFETY: the file is opened read-only and the project never writes to a published dataset
            // file in place (see above); the map lives as long as `self`, which owns it.
            match unsafe { Mmap::map(&file) } {
                Ok(map) => Bytes::Map(map),
                Err(_) => Bytes::Owned(std::fs::read(path).at(path)?),
            }
        };
        Ok(Mapped { path: path.to_path_buf(), bytes })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Map(m) => m,
            Bytes::Owned(v) => v,
        }
    }

    /// The file this maps.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
}
