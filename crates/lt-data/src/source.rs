//! [`ImageSource`]: random access to the examples of one split, whatever the file format.

use crate::Error;

/// One example's pixels, borrowed from the mapped file: `u8`, channel-major (CHW).
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    /// `channels * height * width` bytes.
    pub data: &'a [u8],
    /// Number of channels (1 or 3).
    pub channels: u32,
    /// Height in pixels.
    pub height: u32,
    /// Width in pixels.
    pub width: u32,
}

/// Random access to the examples of one split. Implemented by the IDX, CIFAR-10 and shard readers.
pub trait ImageSource: Send + Sync + std::fmt::Debug {
    /// Number of examples.
    fn len(&self) -> usize;
    /// Whether the source has no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The pixels of example `i` (`i < len()`).
    fn image(&self, i: usize) -> Result<ImageView<'_>, Error>;
    /// The label of example `i` (`i < len()`); an out-of-range label is an error naming the file.
    fn label(&self, i: usize) -> Result<u32, Error>;
    /// The files this source reads, for messages and checksums.
    fn files(&self) -> Vec<std::path::PathBuf>;
}
