//! [`Dataset`]: one split of a registered dataset, found, checked and mapped.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::augment::{Augment, Normalize, Transform};
use crate::cifar::CifarSource;
use crate::idx::IdxSource;
use crate::locate::{Locations, Origin};
use crate::manifest::{Format, Manifest};
use crate::rng::Rng;
use crate::shards::ShardSource;
use crate::source::ImageSource;
use crate::{Error, gz};

/// One split of a dataset, ready for random access.
#[derive(Debug)]
pub struct Dataset {
    manifest: Manifest,
    split: String,
    dir: PathBuf,
    origin: Origin,
    source: Box<dyn ImageSource>,
    len: usize,
}

/// A batch: images `(n, c, h, w)` f32, labels `(n,)` u32, and which examples they are.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Normalized (and, for training, augmented) images, NCHW.
    pub images: Tensor,
    /// Class indices.
    pub labels: Tensor,
    /// The examples' indices in the split.
    pub indices: Vec<u32>,
}

impl Dataset {
    /// Finds and opens split `split` of the registered dataset `name`.
    pub fn open(name: &str, split: &str, locations: &Locations) -> Result<Self, Error> {
        Self::open_manifest(Manifest::named(name)?, split, locations)
    }

    /// Finds and opens split `split` of the dataset `manifest` describes.
    pub fn open_manifest(manifest: Manifest, split: &str, locations: &Locations) -> Result<Self, Error> {
        let (origin, dir, files) = locate_split(&manifest, split, locations)?;
        Self::open_files(manifest, split, &dir, origin, &files, &locations.cache_dir)
    }

    fn open_files(
        manifest: Manifest,
        split: &str,
        dir: &Path,
        origin: Origin,
        files: &[PathBuf],
        cache_dir: &Path,
    ) -> Result<Self, Error> {
        let classes = manifest.num_classes();
        let source: Box<dyn ImageSource> = match manifest.format {
            Format::Idx => {
                let images = gz::raw_file(&files[0], cache_dir)?;
                let labels = gz::raw_file(&files[1], cache_dir)?;
                let copies = [(files[0].as_path(), images.as_path()), (files[1].as_path(), labels.as_path())];
                let copies: Vec<_> = copies.into_iter().filter(|(file, copy)| file != copy).collect();
                Box::new(IdxSource::open(&images, &labels, classes).map_err(|e| e.naming_originals(&copies))?)
            }
            Format::Cifar10 => Box::new(CifarSource::open(files, classes)?),
            Format::Shards => Box::new(ShardSource::open(&files[0], split, classes)?),
        };
        let c = manifest.shape[0];
        if let Ok(first) = source.image(0).map(|v| v.channels)
            && first != c
        {
            return Err(Error::Format {
                path: files[0].clone(),
                what: "channels",
                expected: c.to_string(),
                found: first.to_string(),
            });
        }
        let len = source.len();
        Ok(Dataset { manifest, split: split.into(), dir: dir.into(), origin, source, len })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The split's name.
    pub fn split(&self) -> &str {
        &self.split
    }

    /// The folder the split was found in, and which kind of location that is.
    pub fn location(&self) -> (&Path, Origin) {
        (&self.dir, self.origin)
    }

    /// The files read.
    pub fn files(&self) -> Vec<PathBuf> {
        self.source.files()
    }

    /// Number of examples (after [`Dataset::truncate`]).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Trains and evaluates at `size`×`size` pixels instead of the manifest's crop: the random
    /// crop of training becomes `size`, evaluation resizes the shorter side to `size · 8/7` (as 256
    /// is to 224) and takes the central `size`. Only splits that crop (ImageNet-style datasets)
    /// can; sizes under 8 pixels are refused.
    pub fn with_image_size(mut self, size: u32) -> Result<Self, Error> {
        if size < 8 {
            return Err(Error::Config(format!("an image size of {size} pixels is too small (at least 8)")));
        }
        let name = self.manifest.name.clone();
        let split = self
            .manifest
            .splits
            .get_mut(&self.split)
            .ok_or_else(|| Error::Config(format!("{name} has no split {:?}", self.split)))?;
        split.augment = match split.augment {
            Augment::RandomResizedCropFlip { .. } => Augment::RandomResizedCropFlip { size },
            Augment::ResizeCenterCrop { .. } => Augment::ResizeCenterCrop { resize: size * 8 / 7, crop: size },
            Augment::None | Augment::PadCropFlip { .. } => {
                return Err(Error::Config(format!(
                    "{name} {} has images of one size and no crop; an image size applies to ImageNet-style datasets",
                    self.split
                )));
            }
        };
        Ok(self)
    }

    /// Keeps only the first `n` examples (for reduced-scale runs); `n` larger than the split is an error.
    pub fn truncate(mut self, n: usize) -> Result<Self, Error> {
        if n == 0 || n > self.source.len() {
            return Err(Error::Config(format!(
                "cannot keep {n} examples of {} {}: it has {}",
                self.manifest.name,
                self.split,
                self.source.len()
            )));
        }
        self.len = n;
        Ok(self)
    }

    /// The label of example `i`.
    pub fn label(&self, i: usize) -> Result<u32, Error> {
        self.check_index(i)?;
        self.source.label(i)
    }

    /// The raw pixels of example `i`.
    pub fn image(&self, i: usize) -> Result<crate::ImageView<'_>, Error> {
        self.check_index(i)?;
        self.source.image(i)
    }

    fn check_index(&self, i: usize) -> Result<(), Error> {
        if i >= self.len {
            return Err(Error::Config(format!(
                "example {i} is past the end of {} {} ({})",
                self.manifest.name, self.split, self.len
            )));
        }
        Ok(())
    }

    /// The transform used when training on this split: its manifest augmentation, then normalization.
    pub fn train_transform(&self) -> Result<Transform, Error> {
        let augment = self.manifest.split(&self.split)?.augment;
        Ok(Transform { augment, normalize: Normalize::new(&self.manifest.mean, &self.manifest.std)? })
    }

    /// The transform used when evaluating: the deterministic counterpart of the training augmentation.
    pub fn eval_transform(&self) -> Result<Transform, Error> {
        let augment = match self.manifest.split(&self.split)?.augment {
            Augment::RandomResizedCropFlip { size } => Augment::ResizeCenterCrop { resize: size * 8 / 7, crop: size },
            Augment::PadCropFlip { .. } | Augment::None => Augment::None,
            other @ Augment::ResizeCenterCrop { .. } => other,
        };
        Ok(Transform { augment, normalize: Normalize::new(&self.manifest.mean, &self.manifest.std)? })
    }

    /// The network input shape (channels, height, width) for `transform`.
    pub fn input_shape(&self, transform: &Transform) -> [usize; 3] {
        let [c, h, w] = self.manifest.shape;
        let (h, w) = transform.augment.output_hw(h, w);
        [c as usize, h as usize, w as usize]
    }

    /// Assembles the examples `indices` into a batch; example `i`'s randomness is `rng_of(i)`.
    /// Examples are transformed in parallel; the result does not depend on the number of threads.
    pub fn batch(
        &self,
        indices: &[u32],
        transform: &Transform,
        rng_of: impl Fn(u32) -> Rng + Sync,
        device: &Device,
    ) -> Result<Batch, Error> {
        let [c, h, w] = self.input_shape(transform);
        let per = c * h * w;
        let mut pixels = vec![0f32; indices.len() * per];
        let mut labels = vec![0u32; indices.len()];
        pixels.par_chunks_mut(per.max(1)).zip(labels.par_iter_mut()).zip(indices.par_iter()).try_for_each(
            |((out, label), &i)| -> Result<(), Error> {
                let view = self.image(i as usize)?;
                if (view.height, view.width) != (h as u32, w as u32) && transform.augment == Augment::None {
                    return Err(Error::Format {
                        path: self.dir.clone(),
                        what: "image size",
                        expected: format!("{h}x{w}"),
                        found: format!("{}x{} (example {i})", view.height, view.width),
                    });
                }
                *label = self.source.label(i as usize)?;
                transform.apply(&view, &mut rng_of(i), out)
            },
        )?;
        let n = indices.len();
        Ok(Batch {
            images: Tensor::from_vec(pixels, (n, c, h, w), device)?,
            labels: Tensor::from_vec(labels, n, device)?,
            indices: indices.to_vec(),
        })
    }

    /// The whole split in order, in batches of `batch_size`, with the evaluation transform.
    pub fn eval_batches(self: &Arc<Self>, batch_size: usize, device: &Device) -> Result<EvalBatches, Error> {
        if batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        Ok(EvalBatches {
            dataset: self.clone(),
            transform: self.eval_transform()?,
            batch_size,
            next: 0,
            device: device.clone(),
        })
    }
}

/// Iterator over a split in order (see [`Dataset::eval_batches`]).
#[derive(Debug)]
pub struct EvalBatches {
    dataset: Arc<Dataset>,
    transform: Transform,
    batch_size: usize,
    next: usize,
    device: Device,
}

impl Iterator for EvalBatches {
    type Item = Result<Batch, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.dataset.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.dataset.len());
        let indices: Vec<u32> = (self.next as u32..end as u32).collect();
        self.next = end;
        Some(self.dataset.batch(&indices, &self.transform, |_| Rng::new(0), &self.device))
    }
}

/// Finds the dataset's folder and the paths of `split`'s files in it (IDX files may be raw or
/// `.gz`; files may also sit in the manifest's `subdirs`).
///
/// One dataset, one folder: the first candidate folder that holds any file of the dataset (of any
/// split) is the dataset's, and a split missing from it is an error naming the folder and the
/// missing files, never a reason to take that split from the next location: files of one dataset
/// must not come from two places (a test split of one copy with the labels of another).
pub fn locate_split(
    manifest: &Manifest,
    split: &str,
    locations: &Locations,
) -> Result<(Origin, PathBuf, Vec<PathBuf>), Error> {
    let wanted = &manifest.split(split)?.files;
    let hint = match (&manifest.notes, manifest.files.iter().any(|f| !f.urls.is_empty())) {
        (Some(notes), _) => format!(" ({notes})"),
        (None, true) => format!(" (run `lt data fetch {}`, or pass --data-dir)", manifest.name),
        (None, false) => String::new(),
    };
    let every: Vec<String> = manifest.splits.values().flat_map(|s| s.files.iter().cloned()).collect();
    let mut searched = Vec::new();
    let mut first_missing = None;
    for (origin, dir) in locations.candidates(&manifest.name) {
        match find_files(manifest, wanted, &dir) {
            Ok(files) => return Ok((origin, dir, files)),
            Err(missing) => {
                if every.iter().any(|f| find_file(manifest, f, &dir).is_some()) {
                    let missing: Vec<String> =
                        wanted.iter().filter(|f| find_file(manifest, f, &dir).is_none()).cloned().collect();
                    return Err(Error::Incomplete {
                        dataset: manifest.name.clone(),
                        split: split.into(),
                        dir,
                        missing,
                        hint,
                    });
                }
                first_missing.get_or_insert(missing);
                searched.push(dir);
            }
        }
    }
    Err(Error::NotFound {
        dataset: manifest.name.clone(),
        split: split.into(),
        missing: first_missing.unwrap_or_default(),
        searched,
        hint,
    })
}

fn find_files(manifest: &Manifest, wanted: &[String], dir: &Path) -> Result<Vec<PathBuf>, String> {
    wanted.iter().map(|name| find_file(manifest, name, dir).ok_or_else(|| name.clone())).collect()
}

/// The path of data file `name` in the dataset folder `dir` (or its `subdirs`; IDX also `.gz`).
fn find_file(manifest: &Manifest, name: &str, dir: &Path) -> Option<PathBuf> {
    std::iter::once(dir.to_path_buf())
        .chain(manifest.subdirs.iter().map(|s| dir.join(s)))
        .flat_map(|f| {
            let plain = f.join(name);
            let gz = (manifest.format == Format::Idx).then(|| f.join(format!("{name}.gz")));
            std::iter::once(plain).chain(gz)
        })
        .find(|p| p.is_file())
}
