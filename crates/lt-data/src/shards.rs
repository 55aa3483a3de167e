//! ImageNet as memory-mapped shards, written once by [`pack_imagenet`] from the standard tree
//! (`train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG`) and read in place by [`ShardSource`].
//!
//! A pack folder holds `index.json` (format, version, shorter side, class wnids in label order,
//! the shards of each split) and shard files `SPLIT-NNNNN.ltshard`. A shard is:
//!
//! ```text
//! magic "LTSHARD1" | version u32 LE | count u32 LE
//! count entries of { offset u64, height u32, width u32, label u32, channels u32 } (LE, 24 bytes)
//! pixels: u8 CHW, each image at its entry's offset
//! ```
//!
//! Images are stored resized so their shorter side is the pack's `short_side` (aspect kept), which
//! bounds the dataset's size and the work of each augmentation.

use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::atomic::AtomicFile;
use crate::error::{Error, IoContext};
use crate::mmap::Mapped;
use crate::source::{ImageSource, ImageView};

const MAGIC: &[u8; 8] = b"LTSHARD1";
const VERSION: u32 = 1;
const HEADER: usize = 16;
const ENTRY: usize = 24;
/// The `format` value of a pack's `index.json`.
pub const INDEX_FORMAT: &str = "lt-image-shards";

/// A pack's `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackIndex {
    /// Always [`INDEX_FORMAT`].
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// Shorter side of the stored images.
    pub short_side: u32,
    /// Class folder names (wnids), in label order.
    pub classes: Vec<String>,
    /// The splits and their shards.
    pub splits: std::collections::BTreeMap<String, PackSplit>,
}

/// One split of a pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackSplit {
    /// Shard file names, in order.
    pub shards: Vec<String>,
    /// Number of images.
    pub count: usize,
}

/// How to pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackOptions {
    /// Shorter side of the stored images (256 suits 224 crops).
    pub short_side: u32,
    /// Images per shard.
    pub shard_images: usize,
    /// Splits to pack (folders of the source tree).
    pub splits: Vec<String>,
    /// Leave out files that cannot be decoded (each is reported, and listed beside its shard in
    /// `SPLIT-NNNNN.skipped`) instead of stopping at the first.
    pub skip_unreadable: bool,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            short_side: 256,
            shard_images: 5000,
            splits: vec!["train".into(), "val".into()],
            skip_unreadable: false,
        }
    }
}

/// What packing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackReport {
    /// Images per split.
    pub counts: Vec<(String, usize)>,
    /// Number of classes.
    pub classes: usize,
    /// Files left out as undecodable, with the reason (`skip_unreadable`).
    pub skipped: Vec<(PathBuf, String)>,
    /// Files whose shard an earlier, interrupted pack had already written.
    pub resumed: usize,
}

/// One decoded image as a shard stores it: CHW pixels, height, width, label.
type Packed = (Vec<u8>, u32, u32, u32);

/// What a pack in progress was started with (`pack.json`, removed when the index is written), so
/// that running the same pack again continues it and a different one is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PackState {
    short_side: u32,
    shard_images: usize,
    splits: Vec<String>,
    files: usize,
}

/// Packs the tree at `src` into shards in `out`, decoding in parallel. Refuses to write into a
/// folder that already holds a pack; every file is written under a temporary name and renamed when
/// complete, and the index last, so an interrupted pack is never mistaken for a finished one.
/// Running the same pack again resumes it: shards already complete are kept (`pack.json` records
/// the options; a pack with other options or another file list is refused there).
/// `progress(done, total)` is called as images are packed (resumed ones at once).
pub fn pack_imagenet(
    src: &Path,
    out: &Path,
    options: &PackOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<PackReport, Error> {
    if options.short_side == 0 || options.shard_images == 0 {
        return Err(Error::Config("short side and images per shard must be positive".into()));
    }
    let index_path = out.join("index.json");
    if index_path.exists() {
        return Err(Error::Exists { path: index_path });
    }
    let train = src.join("train");
    let classes = class_folders(&train)?;
    if classes.is_empty() {
        return Err(Error::Format {
            path: train,
            what: "class folders",
            expected: "at least one <wnid>/ folder".into(),
            found: "none".into(),
        });
    }
    let mut work = Vec::new();
    for split in &options.splits {
        let dir = src.join(split);
        let mut files = Vec::new();
        for name in class_folders(&dir)? {
            let Some(label) = classes.iter().position(|c| *c == name) else {
                return Err(Error::Format {
                    path: dir.join(&name),
                    what: "class folder",
                    expected: "one of the train split's classes".into(),
                    found: name,
                });
            };
            let mut images: Vec<PathBuf> = list(&dir.join(&name))?.into_iter().filter(|p| p.is_file()).collect();
            images.sort();
            files.extend(images.into_iter().map(|p| (p, label as u32)));
        }
        work.push((split.clone(), files));
    }
    let total: usize = work.iter().map(|(_, f)| f.len()).sum();
    std::fs::create_dir_all(out).at(out)?;
    let state = PackState {
        short_side: options.short_side,
        shard_images: options.shard_images,
        splits: options.splits.clone(),
        files: total,
    };
    let state_path = out.join("pack.json");
    let state_json = serde_json::to_vec_pretty(&state).map_err(|e| Error::Config(e.to_string()))?;
    if state_path.exists() {
        let text = std::fs::read(&state_path).at(&state_path)?;
        let earlier: Option<PackState> = serde_json::from_slice(&text).ok();
        if earlier.as_ref() != Some(&state) {
            return Err(Error::Format {
                path: state_path,
                what: "interrupted pack",
                expected: format!("one made with these options and files: {}", String::from_utf8_lossy(&state_json)),
                found: format!("{} (remove the folder to start over)", String::from_utf8_lossy(&text)),
            });
        }
    } else {
        crate::atomic::write(&state_path, &state_json)?;
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let mut index = PackIndex {
        format: INDEX_FORMAT.into(),
        version: VERSION,
        short_side: options.short_side,
        classes: classes.clone(),
        splits: Default::default(),
    };
    let (mut counts, mut skipped, mut resumed) = (Vec::new(), Vec::new(), 0);
    for (split, files) in work {
        let (mut shards, mut count) = (Vec::new(), 0);
        for (n, chunk) in files.chunks(options.shard_images).enumerate() {
            let name = format!("{split}-{n:05}.ltshard");
            let (path, skip_list) = (out.join(&name), out.join(format!("{split}-{n:05}.skipped")));
            // A shard under its final name is complete (written atomically), and so is its list
            // of skipped files, written before it.
            if let Ok(images) = shard_count(&path) {
                progress(done.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed) + chunk.len(), total);
                skipped.extend(read_skipped(&skip_list)?);
                (resumed, count) = (resumed + chunk.len(), count + images);
                shards.push(name);
                continue;
            }
            let decoded: Vec<Result<Packed, Error>> = chunk
                .par_iter()
                .map(|(path, label)| {
                    let r = decode(path, options.short_side).map(|(px, h, w)| (px, h, w, *label));
                    progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
                    r
                })
                .collect();
            let (mut images, mut bad) = (Vec::with_capacity(chunk.len()), Vec::new());
            for (r, (file, _)) in decoded.into_iter().zip(chunk) {
                match r {
                    Ok(image) => images.push(image),
                    Err(e) if options.skip_unreadable => bad.push((file.clone(), e.to_string())),
                    Err(e) => return Err(e),
                }
            }
            if !bad.is_empty() {
                let lines: String =
                    bad.iter().map(|(p, why)| format!("{}\t{}\n", p.display(), why.replace('\n', " "))).collect();
                crate::atomic::write(&skip_list, lines.as_bytes())?;
            }
            write_shard(&path, &images)?;
            count += images.len();
            skipped.extend(bad);
            shards.push(name);
        }
        counts.push((split.clone(), count));
        index.splits.insert(split, PackSplit { shards, count });
    }
    let json = serde_json::to_vec_pretty(&index).map_err(|e| Error::Config(e.to_string()))?;
    crate::atomic::write(&index_path, &json)?;
    std::fs::remove_file(&state_path).at(&state_path)?;
    Ok(PackReport { counts, classes: classes.len(), skipped, resumed })
}

/// The image count in the header of a complete shard.
fn shard_count(path: &Path) -> Result<usize, Error> {
    use std::io::Read;
    let mut header = [0u8; HEADER];
    std::fs::File::open(path).at(path)?.read_exact(&mut header).at(path)?;
    let field = |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    if &header[..8] != MAGIC || field(8) != VERSION {
        return Err(Error::Format {
            path: path.into(),
            what: "shard header",
            expected: "LTSHARD1, version 1".into(),
            found: "something else".into(),
        });
    }
    Ok(field(12) as usize)
}

/// The files a shard left out (`path<TAB>reason` per line), none where it left none out.
fn read_skipped(path: &Path) -> Result<Vec<(PathBuf, String)>, Error> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).at(path)?;
    Ok(text.lines().filter_map(|l| l.split_once('\t')).map(|(p, why)| (PathBuf::from(p), why.to_string())).collect())
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    std::fs::read_dir(dir).at(dir)?.map(|e| e.map(|e| e.path()).at(dir)).collect()
}

fn class_folders(dir: &Path) -> Result<Vec<String>, Error> {
    let mut names: Vec<String> = list(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    Ok(names)
}

/// Decodes an image, converts it to RGB and resizes it so the shorter side is `short`; returns CHW bytes.
fn decode(path: &Path, short: u32) -> Result<(Vec<u8>, u32, u32), Error> {
    let image_err = |e: image::ImageError| Error::Image { path: path.into(), message: e.to_string() };
    let img =
        image::ImageReader::open(path).at(path)?.with_guessed_format().at(path)?.decode().map_err(image_err)?.to_rgb8();
    let (w, h) = img.dimensions();
    let s = short as f64 / w.min(h) as f64;
    let (nw, nh) = (((w as f64 * s).round() as u32).max(1), ((h as f64 * s).round() as u32).max(1));
    let img = if (nw, nh) == (w, h) {
        img
    } else {
        image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle)
    };
    let plane = (nw * nh) as usize;
    let mut chw = vec![0u8; 3 * plane];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            chw[c * plane + i] = px.0[c];
        }
    }
    Ok((chw, nh, nw))
}

fn write_shard(path: &Path, images: &[Packed]) -> Result<(), Error> {
    let mut file = AtomicFile::create(path)?;
    let mut header = Vec::with_capacity(HEADER + ENTRY * images.len());
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(images.len() as u32).to_le_bytes());
    let mut offset = (HEADER + ENTRY * images.len()) as u64;
    for (px, h, w, label) in images {
        header.extend_from_slice(&offset.to_le_bytes());
        for v in [*h, *w, *label, 3] {
            header.extend_from_slice(&v.to_le_bytes());
        }
        offset += px.len() as u64;
    }
    file.write_all(&header).at(path)?;
    for (px, ..) in images {
        file.write_all(px).at(path)?;
    }
    file.commit()
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    offset: usize,
    height: u32,
    width: u32,
    label: u32,
    channels: u32,
}

/// One split of a pack, read in place.
#[derive(Debug)]
pub struct ShardSource {
    shards: Vec<Mapped>,
    /// (shard, entry) per image.
    entries: Vec<(u32, Entry)>,
}

impl ShardSource {
    /// Opens split `split` of the pack whose `index.json` is `index_path`, checking every shard's
    /// header and offset table (not the pixels).
    pub fn open(index_path: &Path, split: &str, classes: u32) -> Result<Self, Error> {
        let text = std::fs::read(index_path).at(index_path)?;
        let index: PackIndex = serde_json::from_slice(&text).map_err(|e| Error::Format {
            path: index_path.into(),
            what: "pack index",
            expected: format!("JSON written by `lt data pack` ({INDEX_FORMAT})"),
            found: e.to_string(),
        })?;
        if index.format != INDEX_FORMAT || index.version != VERSION {
            return Err(Error::Format {
                path: index_path.into(),
                what: "pack format",
                expected: format!("{INDEX_FORMAT} version {VERSION}"),
                found: format!("{} version {}", index.format, index.version),
            });
        }
        let Some(info) = index.splits.get(split) else {
            return Err(Error::Config(format!("{}: the pack has no split {split:?}", index_path.display())));
        };
        let dir = index_path.parent().unwrap_or(Path::new("."));
        let (mut shards, mut entries) = (Vec::new(), Vec::new());
        for (s, name) in info.shards.iter().enumerate() {
            let map = Mapped::open(&dir.join(name))?;
            entries.extend(parse_shard(&map, classes)?.into_iter().map(|e| (s as u32, e)));
            shards.push(map);
        }
        if entries.len() != info.count {
            return Err(Error::Format {
                path: index_path.into(),
                what: "image count",
                expected: info.count.to_string(),
                found: format!("{} in the shards", entries.len()),
            });
        }
        Ok(ShardSource { shards, entries })
    }
}

fn parse_shard(map: &Mapped, classes: u32) -> Result<Vec<Entry>, Error> {
    let bytes = map.bytes();
    let path = map.path();
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(Error::Format {
            path: path.into(),
            what: "magic",
            expected: "LTSHARD1".into(),
            found: format!("{:?}", String::from_utf8_lossy(&bytes[..bytes.len().min(8)])),
        });
    }
    let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let version = u32_at(8);
    if version != VERSION {
        return Err(Error::Format {
            path: path.into(),
            what: "shard version",
            expected: VERSION.to_string(),
            found: version.to_string(),
        });
    }
    let count = u32_at(12) as usize;
    let table_end = HEADER + ENTRY * count;
    if bytes.len() < table_end {
        return Err(Error::Size {
            path: path.into(),
            what: format!("offset table of {count} images"),
            expected: table_end as u64,
            found: bytes.len() as u64,
        });
    }
    (0..count)
        .map(|i| {
            let o = HEADER + ENTRY * i;
            let offset = u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap_or_default()) as usize;
            let e = Entry {
                offset,
                height: u32_at(o + 8),
                width: u32_at(o + 12),
                label: u32_at(o + 16),
                channels: u32_at(o + 20),
            };
            let end = e.offset as u64 + e.channels as u64 * e.height as u64 * e.width as u64;
            if e.offset < table_end || end > bytes.len() as u64 || e.height == 0 || e.width == 0 || e.channels != 3 {
                return Err(Error::Size {
                    path: path.into(),
                    what: format!("image {i} ({}x{}x{} at {})", e.channels, e.height, e.width, e.offset),
                    expected: end,
                    found: bytes.len() as u64,
                });
            }
            if e.label >= classes {
                return Err(Error::LabelOutOfRange { path: path.into(), index: i as u64, label: e.label, classes });
            }
            Ok(e)
        })
        .collect()
}

impl ImageSource for ShardSource {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn image(&self, i: usize) -> Result<ImageView<'_>, Error> {
        let (s, e) = self.entries[i];
        let n = (e.channels * e.height * e.width) as usize;
        Ok(ImageView {
            data: &self.shards[s as usize].bytes()[e.offset..e.offset + n],
            channels: e.channels,
            height: e.height,
            width: e.width,
        })
    }

    fn label(&self, i: usize) -> Result<u32, Error> {
        Ok(self.entries[i].1.label)
    }

    fn files(&self) -> Vec<PathBuf> {
        self.shards.iter().map(|m| m.path().to_path_buf()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a tiny ImageNet-style tree of real JPEG files: 2 classes, 3 train and 1 val image each.
    fn tree(root: &Path) {
        for (split, n) in [("train", 3), ("val", 1)] {
            for (c, wnid) in ["n01440764", "n01443537"].iter().enumerate() {
                let dir = root.join(split).join(wnid);
                std::fs::create_dir_all(&dir).unwrap();
                for i in 0..n {
                    let (w, h) = (40 + 8 * i, 30 + 4 * c as u32);
                    let img = image::RgbImage::from_fn(w, h, |x, y| {
                        image::Rgb([(x as u8).wrapping_mul(5), (y as u8).wrapping_mul(7), 100 + c as u8 * 50])
                    });
                    img.save(dir.join(format!("img_{i}.JPEG"))).unwrap();
                }
            }
        }
    }

    #[test]
    fn packs_and_reads_back_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        tree(&dir.path().join("src"));
        let out = dir.path().join("packed");
        let options = PackOptions { short_side: 16, shard_images: 2, ..Default::default() };
        let report = pack_imagenet(&dir.path().join("src"), &out, &options, &|_, _| {}).unwrap();
        assert_eq!(report.counts, [("train".to_string(), 6), ("val".to_string(), 2)]);
        let train = ShardSource::open(&out.join("index.json"), "train", 2).unwrap();
        assert_eq!(train.len(), 6);
        assert_eq!(train.shards.len(), 3);
        let img = train.image(0).unwrap();
        assert_eq!((img.channels, img.height), (3, 16), "shorter side resized");
        assert_eq!(img.width, (40.0f64 * 16.0 / 30.0).round() as u32);
        assert_eq!(train.label(0).unwrap(), 0);
        assert_eq!(train.label(5).unwrap(), 1);
        // blue channel is constant per class: ~100 for class 0 (JPEG is lossy)
        let blue = &img.data[2 * 16 * img.width as usize..];
        assert!(blue.iter().all(|&b| (90..=110).contains(&b)), "{:?}", &blue[..8]);
        // packing again into the same folder is refused and leaves the pack intact
        let err = pack_imagenet(&dir.path().join("src"), &out, &options, &|_, _| {}).unwrap_err();
        assert!(matches!(err, Error::Exists { .. }));
        assert_eq!(ShardSource::open(&out.join("index.json"), "val", 2).unwrap().len(), 2);
    }

    /// An unreadable file stops a pack, named, with no index written; the pack resumes, keeping
    /// its complete shards, and with `skip_unreadable` leaves the file out and says so; other
    /// options over it are refused.
    #[test]
    fn an_unreadable_file_stops_a_pack_which_resumes_and_can_skip_it() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        tree(&src);
        // Sorted, in shards of 2: [c0 0, c0 1] [c0 2, c1 0] [c1 1, c1 2]: the third fails.
        let bad = src.join("train/n01443537/img_1.JPEG");
        std::fs::write(&bad, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
        let out = dir.path().join("packed");
        let options = PackOptions { shard_images: 2, ..PackOptions::default() };
        let err = pack_imagenet(&src, &out, &options, &|_, _| {}).unwrap_err().to_string();
        assert!(err.contains("img_1.JPEG") && err.contains("cannot decode"), "{err}");
        assert!(out.join("train-00001.ltshard").exists() && !out.join("index.json").exists());
        let other = PackOptions { short_side: 128, ..options.clone() };
        let err = pack_imagenet(&src, &out, &other, &|_, _| {}).unwrap_err().to_string();
        assert!(err.contains("interrupted pack") && err.contains("remove the folder"), "{err}");
        let skipping = PackOptions { skip_unreadable: true, ..options };
        let report = pack_imagenet(&src, &out, &skipping, &|_, _| {}).unwrap();
        assert_eq!(report.resumed, 4);
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].0, bad);
        assert!(report.skipped[0].1.contains("cannot decode"), "{:?}", report.skipped);
        assert_eq!(report.counts, vec![("train".to_string(), 5), ("val".to_string(), 2)]);
        assert!(!out.join("pack.json").exists());
        assert_eq!(ShardSource::open(&out.join("index.json"), "train", 2).unwrap().len(), 5);
        // A finished pack is not packed over.
        assert!(pack_imagenet(&src, &out, &skipping, &|_, _| {}).is_err());
    }

    #[test]
    fn a_corrupt_shard_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        tree(&dir.path().join("src"));
        let out = dir.path().join("packed");
        pack_imagenet(&dir.path().join("src"), &out, &PackOptions { short_side: 16, ..Default::default() }, &|_, _| {})
            .unwrap();
        let shard = out.join("train-00000.ltshard");
        let bytes = std::fs::read(&shard).unwrap();
        std::fs::write(&shard, &bytes[..bytes.len() - 10]).unwrap();
        let err = ShardSource::open(&out.join("index.json"), "train", 2).unwrap_err().to_string();
        assert!(err.contains("train-00000.ltshard") && err.contains("image 5"), "{err}");
    }
}
