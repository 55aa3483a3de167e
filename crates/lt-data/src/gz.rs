//! Gzip-compressed dataset files are decompressed once into the cache directory and the raw copy
//! is what gets memory-mapped. The cache entry is keyed by the compressed file's path, size and
//! modification time, so a replaced source file is decompressed again, never served stale.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::atomic::AtomicFile;
use crate::error::{Error, IoContext};
use crate::rng::key;

/// Whether `path` names a gzip file (by extension).
pub fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// The uncompressed file for `path`: `path` itself if it is not gzip, else a cached decompressed copy
/// under `cache_dir` (created on first use).
pub fn raw_file(path: &Path, cache_dir: &Path) -> Result<PathBuf, Error> {
    if !is_gzip(path) {
        return Ok(path.to_path_buf());
    }
    let meta = std::fs::metadata(path).at(path)?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64);
    let canonical = std::fs::canonicalize(path).at(path)?;
    let path_hash = canonical.to_string_lossy().bytes().fold(0u64, |h, b| key(&[h, b as u64]));
    let dir = cache_dir.join("raw").join(format!("{:016x}", key(&[path_hash, meta.len(), mtime])));
    let stem = path.file_stem().map(|s| s.to_os_string()).unwrap_or_default();
    let raw = dir.join(stem);
    if raw.is_file() {
        return Ok(raw);
    }
    let mut out = AtomicFile::create(&raw)?;
    let mut decoder = GzDecoder::new(std::fs::File::open(path).at(path)?);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = decoder.read(&mut buf).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            what: "gzip stream",
            expected: "a complete gzip file".into(),
            found: e.to_string(),
        })?;
        if n == 0 {
            break;
        }
        std::io::Write::write_all(&mut out, &buf[..n]).at(out.temp_path())?;
    }
    out.commit()?;
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn decompresses_once_and_reuses_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("x-idx1-ubyte.gz");
        std::fs::write(&gz, gzip(b"hello")).unwrap();
        let cache = dir.path().join("cache");
        let raw = raw_file(&gz, &cache).unwrap();
        assert_eq!(raw.file_name().unwrap(), "x-idx1-ubyte");
        assert_eq!(std::fs::read(&raw).unwrap(), b"hello");
        assert_eq!(raw_file(&gz, &cache).unwrap(), raw);
    }

    #[test]
    fn truncated_gzip_names_the_file_and_leaves_no_cache_entry() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("y.gz");
        let bytes = gzip(&[7u8; 10_000]);
        std::fs::write(&gz, &bytes[..bytes.len() / 2]).unwrap();
        let cache = dir.path().join("cache");
        let err = raw_file(&gz, &cache).unwrap_err().to_string();
        assert!(err.contains("y.gz") && err.contains("gzip"), "{err}");
        let leftovers: Vec<_> = walk(&cache);
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return vec![];
        };
        rd.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
    }
}
