//! The CIFAR-10 binary format: files of records, each one label byte followed by 3,072 pixel bytes
//! (1,024 red, 1,024 green, 1,024 blue; rows of 32). Records are read in place from the maps;
//! labels are checked as they are read, so opening a split stays O(1) in its size.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::mmap::Mapped;
use crate::source::{ImageSource, ImageView};

/// Bytes of pixels in one record.
pub const PIXELS: usize = 3 * 32 * 32;
/// Bytes of one record (label + pixels).
pub const RECORD: usize = 1 + PIXELS;

/// The records of one split, spread over one or more batch files.
#[derive(Debug)]
pub struct CifarSource {
    files: Vec<Mapped>,
    /// `starts[f]` is the index of the first record of file `f`; one extra entry holds the total.
    starts: Vec<usize>,
    classes: u32,
}

impl CifarSource {
    /// Maps the batch files of a split, in order.
    pub fn open(paths: &[PathBuf], classes: u32) -> Result<Self, Error> {
        let mut files = Vec::with_capacity(paths.len());
        let mut starts = vec![0];
        for path in paths {
            let map = Mapped::open(path)?;
            let len = map.len();
            if len == 0 || len % RECORD as u64 != 0 {
                return Err(Error::Size {
                    path: path.clone(),
                    what: format!("a whole number of {RECORD}-byte records (1 label + {PIXELS} pixels)"),
                    expected: (len / RECORD as u64).max(1) * RECORD as u64,
                    found: len,
                });
            }
            starts.push(starts[starts.len() - 1] + (len / RECORD as u64) as usize);
            files.push(map);
        }
        Ok(CifarSource { files, starts, classes })
    }

    fn record(&self, i: usize) -> (&Mapped, usize, usize) {
        // `starts` is sorted; the file holding record i is the last whose start is <= i.
        let f = self.starts.partition_point(|&s| s <= i) - 1;
        let local = i - self.starts[f];
        (&self.files[f], local * RECORD, local)
    }

    /// Checks every label of the split (`lt data verify`): reads the whole split.
    pub fn check_labels(&self) -> Result<(), Error> {
        (0..self.len()).try_for_each(|i| self.label(i).map(|_| ()))
    }
}

impl ImageSource for CifarSource {
    fn len(&self) -> usize {
        self.starts[self.starts.len() - 1]
    }

    fn image(&self, i: usize) -> Result<ImageView<'_>, Error> {
        let (file, offset, _) = self.record(i);
        Ok(ImageView { data: &file.bytes()[offset + 1..offset + RECORD], channels: 3, height: 32, width: 32 })
    }

    fn label(&self, i: usize) -> Result<u32, Error> {
        let (file, offset, local) = self.record(i);
        let label = u32::from(file.bytes()[offset]);
        if label >= self.classes {
            return Err(Error::LabelOutOfRange {
                path: file.path().into(),
                index: local as u64,
                label,
                classes: self.classes,
            });
        }
        Ok(label)
    }

    fn files(&self) -> Vec<PathBuf> {
        self.files.iter().map(|m| m.path().to_path_buf()).collect()
    }
}

/// Writes a CIFAR-10 batch file of `(label, pixels)` records (for tests and benchmarks).
pub fn write_batch(path: &Path, records: impl IntoIterator<Item = (u8, [u8; PIXELS])>) -> Result<(), Error> {
    let mut bytes = Vec::new();
    for (label, pixels) in records {
        bytes.push(label);
        bytes.extend_from_slice(&pixels);
    }
    crate::atomic::write(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixels(seed: u8) -> [u8; PIXELS] {
        std::array::from_fn(|i| (i as u8).wrapping_mul(seed))
    }

    #[test]
    fn reads_records_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("data_batch_1.bin"), dir.path().join("data_batch_2.bin"));
        write_batch(&a, [(0, pixels(1)), (1, pixels(2))]).unwrap();
        write_batch(&b, [(9, pixels(3))]).unwrap();
        let src = CifarSource::open(&[a, b], 10).unwrap();
        assert_eq!(src.len(), 3);
        assert_eq!(src.label(2).unwrap(), 9);
        let img = src.image(2).unwrap();
        assert_eq!(img.data, &pixels(3)[..]);
        assert_eq!((img.channels, img.height, img.width), (3, 32, 32));
        assert_eq!(src.image(1).unwrap().data[1024], pixels(2)[1024], "green plane starts at 1024");
    }

    #[test]
    fn truncated_batch_is_refused_with_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("test_batch.bin");
        write_batch(&a, [(0, pixels(1)), (1, pixels(2))]).unwrap();
        let bytes = std::fs::read(&a).unwrap();
        std::fs::write(&a, &bytes[..bytes.len() - 100]).unwrap();
        let err = CifarSource::open(std::slice::from_ref(&a), 10).unwrap_err().to_string();
        assert!(
            err.contains("test_batch.bin") && err.contains("3073-byte records") && err.contains("found 6046"),
            "{err}"
        );
    }

    #[test]
    fn bad_label_is_reported_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("data_batch_1.bin");
        write_batch(&a, [(0, pixels(1)), (10, pixels(2))]).unwrap();
        let src = CifarSource::open(std::slice::from_ref(&a), 10).unwrap();
        let err = src.label(1).unwrap_err().to_string();
        assert!(err.contains("data_batch_1.bin") && err.contains("example 1 has label 10"), "{err}");
        assert!(src.check_labels().is_err());
    }
}
