//! Checkpoints in safetensors: the model's tensors under `model/NAME`, the optimizer's under
//! `optimizer/NAME/SLOT`, and the run's position (iteration, optimizer steps, data-order seed,
//! model name) as JSON in the file's metadata. Written to a temporary file and renamed, so a
//! checkpoint on disk is always whole. Readable from Python with `safetensors.torch.load_file`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::Error;

const FORMAT: &str = "lt-checkpoint";
const VERSION: u32 = 1;

/// Where a run stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Format marker (`lt-checkpoint`).
    pub format: String,
    /// Format version.
    pub version: u32,
    /// The network's name.
    pub model: String,
    /// Iterations completed.
    pub iteration: u64,
    /// Optimizer steps taken (Adam's bias correction).
    pub optimizer_steps: u64,
    /// The data order's seed.
    pub data_order_seed: u64,
}

impl CheckpointMeta {
    /// Metadata for `model` at `iteration`.
    pub fn new(model: &str, iteration: u64, optimizer_steps: u64, data_order_seed: u64) -> Self {
        CheckpointMeta {
            format: FORMAT.into(),
            version: VERSION,
            model: model.into(),
            iteration,
            optimizer_steps,
            data_order_seed,
        }
    }
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// Position of the run.
    pub meta: CheckpointMeta,
    /// Model tensors by name.
    pub model: HashMap<String, Tensor>,
    /// Optimizer tensors by `NAME/SLOT`.
    pub optimizer: Vec<(String, Tensor)>,
}

impl Checkpoint {
    /// Writes a checkpoint atomically.
    pub fn save(
        path: &Path,
        meta: &CheckpointMeta,
        model: &[(String, Tensor)],
        optimizer: &[(String, Tensor)],
    ) -> Result<(), Error> {
        let tensors: Vec<(String, &Tensor)> = model
            .iter()
            .map(|(n, t)| (format!("model/{n}"), t))
            .chain(optimizer.iter().map(|(n, t)| (format!("optimizer/{n}"), t)))
            .collect();
        let json = serde_json::to_string(meta).map_err(|e| Error::Config(e.to_string()))?;
        let info = HashMap::from([("lt".to_string(), json)]);
        let bytes = safetensors::serialize(tensors, Some(info))
            .map_err(|e| Error::Checkpoint { path: path.into(), message: e.to_string() })?;
        lt_data::write_atomic(path, &bytes)?;
        Ok(())
    }

    /// Reads a checkpoint, checking its format.
    pub fn load(path: &Path, device: &Device) -> Result<Self, Error> {
        let bad = |message: String| Error::Checkpoint { path: path.into(), message };
        let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.into(), source: e })?;
        let (_, metadata) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let json = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("lt"))
            .ok_or_else(|| bad("no `lt` metadata: not a checkpoint written by lt".into()))?;
        let meta: CheckpointMeta = serde_json::from_str(json).map_err(|e| bad(format!("bad metadata: {e}")))?;
        if meta.format != FORMAT || meta.version != VERSION {
            return Err(bad(format!(
                "format {} version {}, expected {FORMAT} version {VERSION}",
                meta.format, meta.version
            )));
        }
        let tensors = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| bad(e.to_string()))?;
        let (mut model, mut optimizer) = (HashMap::new(), Vec::new());
        for (key, t) in tensors {
            if let Some(n) = key.strip_prefix("model/") {
                model.insert(n.to_string(), t);
            } else if let Some(n) = key.strip_prefix("optimizer/") {
                optimizer.push((n.to_string(), t));
            } else {
                return Err(bad(format!("unexpected tensor {key}")));
            }
        }
        optimizer.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Checkpoint { meta, model, optimizer })
    }
}
