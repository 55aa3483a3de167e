//! MD5 and SHA-256 of files and streams, computed in one pass.

use std::io::Read;
use std::path::Path;

use md5::{Digest, Md5};
use sha2::Sha256;

use crate::error::{Error, IoContext};

/// Both digests of some bytes, as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// Hex MD5.
    pub md5: String,
    /// Hex SHA-256.
    pub sha256: String,
    /// Number of bytes hashed.
    pub len: u64,
}

/// An incremental hasher of both digests.
#[derive(Default)]
pub struct Hasher {
    md5: Md5,
    sha256: Sha256,
    len: u64,
}

impl Hasher {
    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.md5.update(bytes);
        self.sha256.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// The digests of everything added.
    pub fn finish(self) -> Digests {
        Digests { md5: hex(&self.md5.finalize()), sha256: hex(&self.sha256.finalize()), len: self.len }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes everything `reader` yields; errors are attributed to `path`.
pub fn digest_reader(mut reader: impl Read, path: &Path) -> Result<Digests, Error> {
    let mut hasher = Hasher::default();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).at(path)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

/// Hashes a file.
pub fn digest_file(path: &Path) -> Result<Digests, Error> {
    digest_reader(std::fs::File::open(path).at(path)?, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_of_abc() {
        let mut h = Hasher::default();
        h.update(b"abc");
        let d = h.finish();
        assert_eq!(d.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(d.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(d.len, 3);
    }
}
