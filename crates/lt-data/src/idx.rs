//! The IDX format of MNIST and Fashion-MNIST: a big-endian header (two zero bytes, a type code,
//! the number of dimensions, one `u32` per dimension) followed by the raw values. Images are
//! `u8` of shape `[n, rows, cols]`, labels `u8` of shape `[n]`. The pixels are used in place,
//! straight from the memory map.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::mmap::Mapped;
use crate::source::{ImageSource, ImageView};

const TYPE_U8: u8 = 0x08;

/// A parsed IDX header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxHeader {
    /// The dimensions, outermost first.
    pub dims: Vec<u32>,
    /// Offset of the first value.
    pub data_offset: usize,
}

/// Parses and checks the header of an unsigned-byte IDX file with `ndims` dimensions, and checks
/// that the file's length is exactly what the header promises.
pub fn parse_header(bytes: &[u8], path: &Path, ndims: u8) -> Result<IdxHeader, Error> {
    let format =
        |what, expected: String, found: String| Error::Format { path: path.to_path_buf(), what, expected, found };
    if bytes.len() < 4 {
        return Err(Error::Size {
            path: path.into(),
            what: "IDX header".into(),
            expected: 4,
            found: bytes.len() as u64,
        });
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let expected_magic = ((TYPE_U8 as u32) << 8) | ndims as u32;
    if magic != expected_magic {
        return Err(format(
            "magic number",
            format!("{expected_magic:#010x} (unsigned bytes, {ndims} dimensions)"),
            format!("{magic:#010x}"),
        ));
    }
    let data_offset = 4 + 4 * ndims as usize;
    if bytes.len() < data_offset {
        return Err(Error::Size {
            path: path.into(),
            what: format!("IDX header with {ndims} dimensions"),
            expected: data_offset as u64,
            found: bytes.len() as u64,
        });
    }
    let dims: Vec<u32> = (0..ndims as usize)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]])
        })
        .collect();
    let values: u64 = dims.iter().map(|&d| d as u64).product();
    let expected = data_offset as u64 + values;
    if bytes.len() as u64 != expected {
        let shape = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
        return Err(Error::Size {
            path: path.into(),
            what: format!("header says {shape} values"),
            expected,
            found: bytes.len() as u64,
        });
    }
    Ok(IdxHeader { dims, data_offset })
}

/// Images and labels of one IDX split.
#[derive(Debug)]
pub struct IdxSource {
    images: Mapped,
    labels: Mapped,
    image_offset: usize,
    label_offset: usize,
    count: usize,
    rows: u32,
    cols: u32,
}

impl IdxSource {
    /// Maps and checks an (uncompressed) image file and label file. Labels are checked against
    /// `classes` here, once: the label file is small.
    pub fn open(images_path: &Path, labels_path: &Path, classes: u32) -> Result<Self, Error> {
        let images = Mapped::open(images_path)?;
        let labels = Mapped::open(labels_path)?;
        let ih = parse_header(images.bytes(), images_path, 3)?;
        let lh = parse_header(labels.bytes(), labels_path, 1)?;
        if ih.dims[0] != lh.dims[0] {
            return Err(Error::CountMismatch {
                images_path: images_path.into(),
                images: ih.dims[0] as u64,
                labels_path: labels_path.into(),
                labels: lh.dims[0] as u64,
            });
        }
        if let Some((index, &label)) =
            labels.bytes()[lh.data_offset..].iter().enumerate().find(|(_, l)| u32::from(**l) >= classes)
        {
            return Err(Error::LabelOutOfRange {
                path: labels_path.into(),
                index: index as u64,
                label: label.into(),
                classes,
            });
        }
        Ok(IdxSource {
            count: ih.dims[0] as usize,
            rows: ih.dims[1],
            cols: ih.dims[2],
            image_offset: ih.data_offset,
            label_offset: lh.data_offset,
            images,
            labels,
        })
    }
}

impl ImageSource for IdxSource {
    fn len(&self) -> usize {
        self.count
    }

    fn image(&self, i: usize) -> Result<ImageView<'_>, Error> {
        let size = (self.rows * self.cols) as usize;
        let start = self.image_offset + i * size;
        Ok(ImageView {
            data: &self.images.bytes()[start..start + size],
            channels: 1,
            height: self.rows,
            width: self.cols,
        })
    }

    fn label(&self, i: usize) -> Result<u32, Error> {
        Ok(self.labels.bytes()[self.label_offset + i].into())
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.images.path().to_path_buf(), self.labels.path().to_path_buf()]
    }
}

/// Writes an IDX file of unsigned bytes (for fixtures, tests and the bundled sample dataset).
pub fn write_idx(path: &Path, dims: &[u32], values: &[u8]) -> Result<(), Error> {
    let mut bytes = Vec::with_capacity(4 + 4 * dims.len() + values.len());
    bytes.extend_from_slice(&[0, 0, TYPE_U8, dims.len() as u8]);
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(values);
    crate::atomic::write(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(dir: &Path, n: u32, labels: &[u8]) -> (PathBuf, PathBuf) {
        let (i, l) = (dir.join("img"), dir.join("lab"));
        write_idx(&i, &[n, 2, 3], &(0..n * 6).map(|v| v as u8).collect::<Vec<_>>()).unwrap();
        write_idx(&l, &[labels.len() as u32], labels).unwrap();
        (i, l)
    }

    #[test]
    fn reads_images_and_labels_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (i, l) = fixture(dir.path(), 2, &[3, 9]);
        let src = IdxSource::open(&i, &l, 10).unwrap();
        assert_eq!(src.len(), 2);
        let img = src.image(1).unwrap();
        assert_eq!((img.channels, img.height, img.width), (1, 2, 3));
        assert_eq!(img.data, &[6, 7, 8, 9, 10, 11]);
        assert_eq!(src.label(1).unwrap(), 9);
    }

    #[test]
    fn wrong_magic_names_the_file_and_both_values() {
        let dir = tempfile::tempdir().unwrap();
        let (i, l) = fixture(dir.path(), 2, &[1, 2]);
        let err = IdxSource::open(&l, &i, 10).unwrap_err().to_string();
        assert!(
            err.contains("lab")
                && err.contains("magic number")
                && err.contains("0x00000803")
                && err.contains("0x00000801"),
            "{err}"
        );
    }

    #[test]
    fn truncated_file_reports_expected_and_found_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let (i, l) = fixture(dir.path(), 2, &[1, 2]);
        let bytes = std::fs::read(&i).unwrap();
        std::fs::write(&i, &bytes[..bytes.len() - 1]).unwrap();
        let err = IdxSource::open(&i, &l, 10).unwrap_err().to_string();
        assert!(err.contains("expected 28 bytes, found 27") && err.contains("2x2x3"), "{err}");
        std::fs::write(&i, &bytes[..2]).unwrap();
        assert!(matches!(IdxSource::open(&i, &l, 10), Err(Error::Size { .. })));
    }

    #[test]
    fn count_mismatch_names_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (i, l) = fixture(dir.path(), 2, &[1, 2, 3]);
        let err = IdxSource::open(&i, &l, 10).unwrap_err().to_string();
        assert!(err.contains("2 images") && err.contains("3 labels"), "{err}");
    }

    #[test]
    fn label_out_of_range_names_the_example() {
        let dir = tempfile::tempdir().unwrap();
        let (i, l) = fixture(dir.path(), 2, &[1, 10]);
        let err = IdxSource::open(&i, &l, 10).unwrap_err().to_string();
        assert!(err.contains("example 1 has label 10") && err.contains("10 classes"), "{err}");
    }
}
