//! `imagenet-miniature`: a small synthetic dataset in ImageNet's exact form, generated on the
//! spot, so that the ImageNet pipeline (JPEG tree → packed shards → random-resized crops → the
//! ImageNet networks with their 1,000 outputs → top-1/top-5) runs end to end where ImageNet is not.
//!
//! [`write_tree`] writes JPEGs in the standard `train/<wnid>/*.JPEG`, `val/<wnid>/*.JPEG` layout
//! (sizes vary per image, so the resize and crop paths are exercised); [`generate`] writes the
//! registry's `imagenet-miniature` (10 classes, 24 training and 5 validation images each) and
//! packs it with [`pack_imagenet`], as a user packs the real tree. Every pixel is a function of
//! (class, image, position): the dataset is the same on every machine. Each class has its own
//! colour and stripe frequency, so a network can learn something, but the numbers a run on it
//! gives mean nothing about ImageNet.

use std::path::Path;

use crate::error::{Error, IoContext};
use crate::shards::{PackOptions, pack_imagenet};

/// The registry name of the generated dataset.
pub const NAME: &str = "imagenet-miniature";
/// Classes of the generated dataset (labels 0..CLASSES of the networks' 1,000).
pub const CLASSES: u32 = 10;
/// Training images per class.
pub const TRAIN_PER_CLASS: u32 = 24;
/// Validation images per class.
pub const VAL_PER_CLASS: u32 = 5;
/// The shorter side the images are packed at.
pub const SHORT_SIDE: u32 = 80;

/// A WordNet-style folder name for class `c`.
pub fn wnid(c: u32) -> String {
    format!("n{:08}", 1_440_764 + 1_000 * c)
}

/// Writes `classes` classes of `train` and `val` JPEGs each under `root/train/` and `root/val/`.
/// Image `i` is `width`×`height` with `width = side + 8·(i mod 3)` and `height = side + 6·(i mod 2)`.
pub fn write_tree(root: &Path, classes: u32, train: u32, val: u32, side: u32) -> Result<(), Error> {
    for (split, n, salt) in [("train", train, 0u32), ("val", val, 7_919)] {
        for c in 0..classes {
            let dir = root.join(split).join(wnid(c));
            std::fs::create_dir_all(&dir).at(&dir)?;
            for i in 0..n {
                let (w, h) = (side + 8 * (i % 3), side + 6 * (i % 2));
                let path = dir.join(format!("{}_{i}.JPEG", wnid(c)));
                image_of(c, i + salt, w, h)
                    .save(&path)
                    .map_err(|e| Error::Config(format!("cannot write {}: {e}", path.display())))?;
            }
        }
    }
    Ok(())
}

/// Class `c`'s image number `i`: the class's hue, stripes at the class's frequency and angle,
/// shifted per image, plus a little per-pixel noise.
fn image_of(c: u32, i: u32, w: u32, h: u32) -> image::RgbImage {
    let hue = [(220, 60, 40), (40, 200, 60), (50, 70, 220), (210, 200, 40), (200, 50, 200), (40, 200, 210)];
    let (r, g, b) = hue[(c as usize) % hue.len()];
    let period = 6.0 + 3.0 * (c / 2) as f32;
    let angle = if c.is_multiple_of(2) { 0.0f32 } else { std::f32::consts::FRAC_PI_2 } + 0.1 * (i % 5) as f32;
    let (ca, sa) = (angle.cos(), angle.sin());
    image::RgbImage::from_fn(w, h, |x, y| {
        let t = (x as f32 * ca + y as f32 * sa + i as f32) * std::f32::consts::TAU / period;
        let stripe = 0.55 + 0.45 * t.sin();
        let noise = crate::rng::key(&[c as u64, i as u64, x as u64, y as u64]) % 32;
        let px = |v: u32| ((v as f32 * stripe) as u32 + noise as u32).min(255) as u8;
        image::Rgb([px(r), px(g), px(b)])
    })
}

/// Writes the packed `imagenet-miniature` into `dest` (its `index.json` and shards), from a JPEG
/// tree generated beside it and removed afterwards. A complete pack in `dest` is kept as it is.
pub fn generate(dest: &Path) -> Result<(), Error> {
    if dest.join("index.json").is_file() {
        return Ok(());
    }
    let tree = dest.with_extension("tree");
    if tree.exists() {
        std::fs::remove_dir_all(&tree).at(&tree)?;
    }
    write_tree(&tree, CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS, SHORT_SIDE)?;
    let options = PackOptions { short_side: SHORT_SIDE, ..PackOptions::default() };
    pack_imagenet(&tree, dest, &options, &|_, _| {})?;
    std::fs::remove_dir_all(&tree).at(&tree)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dataset, Locations, Manifest};

    /// The generated pack opens as the registry's dataset, with the manifest's counts, and trains
    /// at another image size when asked.
    #[test]
    fn the_generated_dataset_matches_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        generate(&dir.path().join(NAME)).unwrap();
        let m = Manifest::named(NAME).unwrap();
        let loc = Locations {
            data_dir: Some(dir.path().into()),
            system_dir: dir.path().join("none"),
            cache_dir: dir.path().join("cache"),
        };
        for (split, per_class) in [("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)] {
            let d = Dataset::open(NAME, split, &loc).unwrap();
            assert_eq!(d.len(), (CLASSES * per_class) as usize);
            assert_eq!(d.len(), m.splits[split].count);
            assert_eq!(d.label(d.len() - 1).unwrap(), CLASSES - 1);
        }
        let train = Dataset::open(NAME, "train", &loc).unwrap();
        assert_eq!(train.input_shape(&train.train_transform().unwrap()), [3, 64, 64]);
        let big = Dataset::open(NAME, "train", &loc).unwrap().with_image_size(96).unwrap();
        assert_eq!(big.input_shape(&big.train_transform().unwrap()), [3, 96, 96]);
        let val = Dataset::open(NAME, "val", &loc).unwrap().with_image_size(96).unwrap();
        assert_eq!(val.input_shape(&val.eval_transform().unwrap()), [3, 96, 96]);
        // Generating again keeps the pack.
        generate(&dir.path().join(NAME)).unwrap();
        assert!(!dir.path().join(format!("{NAME}.tree")).exists());
    }

    #[test]
    fn datasets_of_one_image_size_take_no_other() {
        let sample = crate::testing::bundled_datasets();
        let loc = Locations::from_env(Some(sample));
        let d = Dataset::open("fashion-mnist-sample", "train", &loc).unwrap();
        let err = d.with_image_size(32).unwrap_err().to_string();
        assert!(err.contains("ImageNet-style"), "{err}");
    }
}
