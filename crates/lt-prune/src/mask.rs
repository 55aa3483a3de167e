//! [`Mask`]: per prunable tensor, a 0/1 array of the weight's shape.
//!
//! On disk a mask is a safetensors file of `U8` tensors named like the weights, with JSON metadata
//! under the key `lt` (model, level, strategy, parent mask hash), so Python reads it with
//! `safetensors.torch.load_file` and applies it with `torch.nn.utils.prune.custom_from_mask`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;

/// Where a mask comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaskMeta {
    /// The network's name.
    pub model: String,
    /// The pruning level (0 = dense).
    pub level: u32,
    /// The strategy that made it.
    pub strategy: String,
    /// [`Mask::hash`] of the mask it was pruned from, if any.
    pub parent: Option<String>,
}

/// One 0/1 array per prunable tensor, in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    pub(crate) tensors: BTreeMap<String, (Vec<usize>, Vec<u8>)>,
}

impl Mask {
    /// The all-ones mask over tensors of these shapes.
    pub fn dense<'a>(shapes: impl IntoIterator<Item = (&'a str, &'a [usize])>) -> Self {
        let tensors =
            shapes.into_iter().map(|(n, s)| (n.to_string(), (s.to_vec(), vec![1u8; s.iter().product()]))).collect();
        Mask { tensors }
    }

    /// A mask from arrays; every value must be 0 or 1 and every array must fill its shape.
    pub fn from_arrays(arrays: BTreeMap<String, (Vec<usize>, Vec<u8>)>) -> Result<Self, Error> {
        for (name, (shape, bits)) in &arrays {
            let bad = |message: String| Err(Error::Tensor { tensor: name.clone(), message });
            if shape.iter().product::<usize>() != bits.len() {
                return bad(format!("{} values for shape {shape:?}", bits.len()));
            }
            if let Some(v) = bits.iter().find(|&&b| b > 1) {
                return bad(format!("mask value {v}; masks hold only 0 and 1"));
            }
        }
        Ok(Mask { tensors: arrays })
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// A tensor's shape and bits.
    pub fn get(&self, name: &str) -> Option<(&[usize], &[u8])> {
        self.tensors.get(name).map(|(s, b)| (s.as_slice(), b.as_slice()))
    }

    /// A tensor's bits as `f32` (for building a training mask).
    pub fn as_f32(&self, name: &str) -> Option<Vec<f32>> {
        self.tensors.get(name).map(|(_, b)| b.iter().map(|&v| v as f32).collect())
    }

    /// Iterates (name, shape, bits).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[usize], &[u8])> {
        self.tensors.iter().map(|(n, (s, b))| (n.as_str(), s.as_slice(), b.as_slice()))
    }

    pub(crate) fn bits_mut(&mut self, name: &str) -> Option<&mut Vec<u8>> {
        self.tensors.get_mut(name).map(|(_, b)| b)
    }

    /// Surviving weights of one tensor.
    pub fn survivors_of(&self, name: &str) -> usize {
        self.tensors.get(name).map_or(0, |(_, b)| b.iter().filter(|&&v| v == 1).count())
    }

    /// Surviving weights in all tensors.
    pub fn survivors(&self) -> usize {
        self.tensors.keys().map(|n| self.survivors_of(n)).sum()
    }

    /// Weights in all tensors.
    pub fn total(&self) -> usize {
        self.tensors.values().map(|(_, b)| b.len()).sum()
    }

    /// Fraction of weights surviving, overall.
    pub fn density(&self) -> f64 {
        self.survivors() as f64 / self.total().max(1) as f64
    }

    /// Fraction surviving per tensor.
    pub fn densities(&self) -> Vec<(String, f64)> {
        self.tensors
            .iter()
            .map(|(n, (_, b))| (n.clone(), self.survivors_of(n) as f64 / b.len().max(1) as f64))
            .collect()
    }

    fn combine(&self, other: &Mask, f: impl Fn(u8, u8) -> u8) -> Result<Mask, Error> {
        let mut out = self.clone();
        for (name, (shape, bits)) in &mut out.tensors {
            let (oshape, obits) = other
                .get(name)
                .ok_or_else(|| Error::Tensor { tensor: name.clone(), message: "missing from the other mask".into() })?;
            if shape.as_slice() != oshape {
                return Err(Error::Tensor {
                    tensor: name.clone(),
                    message: format!("shapes {shape:?} and {oshape:?}"),
                });
            }
            bits.iter_mut().zip(obits).for_each(|(a, &b)| *a = f(*a, b));
        }
        Ok(out)
    }

    /// Weights surviving in either mask.
    pub fn union(&self, other: &Mask) -> Result<Mask, Error> {
        self.combine(other, |a, b| a | b)
    }

    /// Weights surviving in both masks.
    pub fn intersection(&self, other: &Mask) -> Result<Mask, Error> {
        self.combine(other, |a, b| a & b)
    }

    /// SHA-256 of the names, shapes and bits (hex): identifies a mask, e.g. as a child's parent.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for (name, (shape, bits)) in &self.tensors {
            h.update(name.as_bytes());
            h.update([0]);
            for d in shape {
                h.update((*d as u64).to_le_bytes());
            }
            h.update(bits);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Writes the mask atomically as safetensors with `meta`.
    pub fn save(&self, path: &Path, meta: &MaskMeta) -> Result<(), Error> {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = self
            .tensors
            .iter()
            .map(|(n, (s, b))| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::U8, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| Error::File { path: path.into(), message: e.to_string() })
            })
            .collect::<Result<_, _>>()?;
        let json =
            serde_json::to_string(meta).map_err(|e| Error::File { path: path.into(), message: e.to_string() })?;
        let info = std::collections::HashMap::from([("lt".to_string(), json)]);
        let bytes = safetensors::serialize(views, Some(info))
            .map_err(|e| Error::File { path: path.into(), message: e.to_string() })?;
        lt_data::write_atomic(path, &bytes)?;
        Ok(())
    }

    /// Reads a mask and its metadata.
    pub fn load(path: &Path) -> Result<(Mask, MaskMeta), Error> {
        let bad = |message: String| Error::File { path: path.into(), message };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let st =
            safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let meta = match header.metadata().as_ref().and_then(|m| m.get("lt")) {
            Some(json) => serde_json::from_str(json).map_err(|e| bad(format!("bad metadata: {e}")))?,
            None => MaskMeta::default(),
        };
        let mut arrays = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != safetensors::Dtype::U8 {
                return Err(bad(format!("tensor {name} is {:?}; masks are U8", view.dtype())));
            }
            arrays.insert(name, (view.shape().to_vec(), view.data().to_vec()));
        }
        let mask = Mask::from_arrays(arrays).map_err(|e| bad(e.to_string()))?;
        Ok((mask, meta))
    }
}
