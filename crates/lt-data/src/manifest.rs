//! Dataset manifests: one TOML file per dataset in the workspace's `datasets/` folder, embedded in
//! the binary at build time. A manifest says what a dataset is (shape, classes, normalization, the
//! augmentation of each split), which files make it up, where they are officially published, and
//! their checksums.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::augment::Augment;
use crate::error::{Error, IoContext};

/// The manifests shipped with the project, as (file name, TOML text).
const BUILTIN: &[(&str, &str)] = &[
    ("mnist.toml", include_str!("../../../datasets/mnist.toml")),
    ("fashion-mnist.toml", include_str!("../../../datasets/fashion-mnist.toml")),
    ("fashion-mnist-sample.toml", include_str!("../../../datasets/fashion-mnist-sample.toml")),
    ("cifar10.toml", include_str!("../../../datasets/cifar10.toml")),
    ("imagenet.toml", include_str!("../../../datasets/imagenet.toml")),
    ("imagenet-miniature.toml", include_str!("../../../datasets/imagenet-miniature.toml")),
];

/// The on-disk format of a dataset's split files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// IDX image + label files, raw or gzip (MNIST, Fashion-MNIST).
    Idx,
    /// CIFAR-10 binary batch files.
    Cifar10,
    /// Shards written by `lt data pack imagenet` (an `index.json` and `*.ltshard` files).
    Shards,
}

/// One dataset's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Registry name (`fashion-mnist`).
    pub name: String,
    /// Human-readable title.
    pub title: String,
    /// Split file format.
    pub format: Format,
    /// License of the data.
    pub license: String,
    /// Where the dataset is described.
    pub homepage: String,
    /// Shape of one network input, channels × height × width.
    pub shape: [u32; 3],
    /// Per-channel mean in `[0, 1]` pixel units.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation in `[0, 1]` pixel units.
    pub std: Vec<f32>,
    /// Class names, in label order (may be left out when there are many).
    #[serde(default)]
    pub classes: Vec<String>,
    /// Number of classes, when `classes` is left out.
    #[serde(default)]
    pub num_classes: Option<u32>,
    /// Sub-folders of the dataset folder where split files may also sit.
    #[serde(default)]
    pub subdirs: Vec<String>,
    /// Remarks shown by `lt data info`.
    #[serde(default)]
    pub notes: Option<String>,
    /// The splits, by name (`train`, `test`, `val`).
    pub splits: BTreeMap<String, Split>,
    /// The files as officially published, for `lt data fetch` and `lt data verify`.
    #[serde(default)]
    pub files: Vec<RemoteFile>,
}

/// One split of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// The files of the split: for IDX the image then the label file (named without `.gz`), for
    /// CIFAR-10 the batch files in order, for shards the index.
    pub files: Vec<String>,
    /// The number of examples the official split has.
    pub count: usize,
    /// The augmentation used when training on this split (default: none).
    #[serde(default = "no_augment")]
    pub augment: Augment,
}

fn no_augment() -> Augment {
    Augment::None
}

/// A file as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteFile {
    /// File name in the dataset folder.
    pub name: String,
    /// Official URL first, then mirrors.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Hex MD5 of the published file.
    #[serde(default)]
    pub md5: Option<String>,
    /// Hex SHA-256 of the published file.
    #[serde(default)]
    pub sha256: Option<String>,
    /// For a gzip file: the digests of its decompressed content, which stay the same when a
    /// distribution recompresses the file (as Debian does).
    #[serde(default)]
    pub raw: Option<RawDigest>,
    /// For an archive: the members to extract (any other member is skipped; unsafe names are refused).
    #[serde(default)]
    pub members: Vec<String>,
}

/// Digests of a decompressed file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDigest {
    /// Size in bytes.
    pub size: u64,
    /// Hex MD5.
    #[serde(default)]
    pub md5: Option<String>,
    /// Hex SHA-256.
    #[serde(default)]
    pub sha256: Option<String>,
}

impl Manifest {
    /// Parses and checks a manifest; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| Error::Manifest { name: origin.into(), message: e.to_string() })?;
        manifest.check(origin)?;
        Ok(manifest)
    }

    /// Reads a manifest file.
    pub fn from_path(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).at(path)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The manifests shipped with the project, sorted by name.
    pub fn builtin() -> Vec<Manifest> {
        let mut all: Vec<Manifest> = BUILTIN
            .iter()
            // The shipped manifests are checked by a unit test; one that fails to parse is a build bug.
            .filter_map(|(file, text)| Self::parse(text, file).ok())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The shipped manifest called `name`.
    pub fn named(name: &str) -> Result<Self, Error> {
        let all = Self::builtin();
        let known = all.iter().map(|m| m.name.clone()).collect();
        all.into_iter().find(|m| m.name == name).ok_or(Error::UnknownDataset { name: name.into(), known })
    }

    /// Number of classes.
    pub fn num_classes(&self) -> u32 {
        self.num_classes.unwrap_or(self.classes.len() as u32)
    }

    /// The split called `name`.
    pub fn split(&self, name: &str) -> Result<&Split, Error> {
        self.splits.get(name).ok_or_else(|| {
            Error::Config(format!(
                "dataset {} has no split {name:?}; its splits are {}",
                self.name,
                self.splits.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The training split's name (`train`).
    pub fn train_split(&self) -> &str {
        "train"
    }

    /// The evaluation split's name (`test`, or `val` where there is no test split).
    pub fn eval_split(&self) -> &str {
        if self.splits.contains_key("test") { "test" } else { "val" }
    }

    fn check(&self, origin: &str) -> Result<(), Error> {
        let bad = |message: String| Err(Error::Manifest { name: origin.into(), message });
        let channels = self.shape[0] as usize;
        if self.mean.len() != channels || self.std.len() != channels {
            return bad(format!(
                "shape has {channels} channels but mean/std have {}/{}",
                self.mean.len(),
                self.std.len()
            ));
        }
        if self.num_classes() == 0 {
            return bad("no classes: give `classes` or `num_classes`".into());
        }
        if !self.classes.is_empty() && self.num_classes.is_some_and(|n| n as usize != self.classes.len()) {
            return bad("`num_classes` disagrees with the number of `classes`".into());
        }
        if !self.splits.contains_key("train") {
            return bad("no `train` split".into());
        }
        for (name, split) in &self.splits {
            let needed = match self.format {
                Format::Idx => 2,
                Format::Cifar10 | Format::Shards => 1,
            };
            if split.files.len() < needed || (self.format == Format::Idx && split.files.len() != 2) {
                return bad(format!(
                    "split {name} lists {} files; format {:?} needs {needed}",
                    split.files.len(),
                    self.format
                ));
            }
        }
        for file in &self.files {
            let hexes = [(&file.md5, 32), (&file.sha256, 64)];
            if hexes
                .iter()
                .any(|(h, n)| h.as_ref().is_some_and(|h| h.len() != *n || !h.bytes().all(|b| b.is_ascii_hexdigit())))
            {
                return bad(format!("file {}: a checksum is not lowercase hex of the right length", file.name));
            }
            if file.name.contains('/') || file.name.contains("..") {
                return bad(format!("file name {:?} must be a plain name", file.name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_manifest_parses() {
        for (file, text) in BUILTIN {
            Manifest::parse(text, file).unwrap_or_else(|e| panic!("{e}"));
        }
        let names: Vec<_> = Manifest::builtin().into_iter().map(|m| m.name).collect();
        assert_eq!(
            names,
            ["cifar10", "fashion-mnist", "fashion-mnist-sample", "imagenet", "imagenet-miniature", "mnist"]
        );
    }

    #[test]
    fn cifar_trains_with_pad_crop_flip() {
        let m = Manifest::named("cifar10").unwrap();
        assert_eq!(m.split("train").unwrap().augment, Augment::PadCropFlip { pad: 4, size: 32 });
        assert_eq!(m.split("test").unwrap().augment, Augment::None);
        assert_eq!(m.num_classes(), 10);
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = Manifest::named("cifar100").unwrap_err().to_string();
        assert!(err.contains("cifar100") && err.contains("fashion-mnist"), "{err}");
        let err = Manifest::named("mnist").unwrap().split("val").unwrap_err().to_string();
        assert!(err.contains("test, train"), "{err}");
    }

    #[test]
    fn malformed_manifests_are_refused_with_their_origin() {
        let err = Manifest::parse("name = 3", "x.toml").unwrap_err().to_string();
        assert!(err.starts_with("manifest x.toml:"), "{err}");
        let text = include_str!("../../../datasets/mnist.toml").replace("mean = [0.1307]", "mean = [0.1, 0.2]");
        assert!(Manifest::parse(&text, "m").unwrap_err().to_string().contains("channels"));
    }
}
