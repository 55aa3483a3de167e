//! What an experiment is: [`TrainSpec`] (one training setup), [`PruneSpec`] (how each level prunes)
//! and [`LotterySpec`] (IMP with rewinding), with the canonical hash that names their folders.
//!
//! The hash is SHA-256 of the spec's canonical JSON (keys sorted, `None` fields left out). New
//! hyperparameters must be `Option`s (or otherwise skipped at their default), so that adding one
//! never renames the runs made before it existed.

use std::collections::BTreeMap;

use lt_prune::{Amount, Scope};
use lt_train::{OptimizerConfig, Preset, Schedule};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;

/// One training setup: the network, the data, the optimizer and schedule, the seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    /// The preset it started from (a label; the values below are what counts).
    pub preset: String,
    /// The network (`mnist_lenet_300_100`).
    pub model: String,
    /// The dataset's registry name.
    pub dataset: String,
    /// Only the first N training examples (reduced-scale runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_examples: Option<usize>,
    /// Train and evaluate at this image side instead of the dataset's (ImageNet-style datasets:
    /// the random crop of training and the central crop of evaluation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<u32>,
    /// Training length T in iterations.
    pub iterations: u64,
    /// Examples per batch.
    pub batch_size: usize,
    /// Gradient accumulation: micro-batches per batch (`lt_train::RunConfig::accumulate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accumulate: Option<usize>,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// Seed of the initialization (the replicate).
    pub seed: u64,
    /// Seed of the data order.
    pub data_order_seed: u64,
}

impl TrainSpec {
    /// The preset's setup with seed `replicate` for both the initialization and the data order
    /// (`per_epoch` iterations make an epoch, for presets written in epochs).
    pub fn from_preset(preset: &Preset, dataset: Option<&str>, replicate: u64, per_epoch: usize) -> Self {
        TrainSpec {
            preset: preset.name.into(),
            model: preset.model.into(),
            dataset: dataset.unwrap_or(preset.dataset).into(),
            train_examples: None,
            image_size: preset.image_size,
            iterations: preset.iterations.iterations(per_epoch),
            batch_size: preset.batch_size,
            accumulate: None,
            optimizer: preset.optimizer,
            schedule: preset.schedule(per_epoch),
            seed: replicate,
            data_order_seed: replicate,
        }
    }
}

/// How each pruning level chooses the weights to remove.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneSpec {
    /// `magnitude`, `snip`, or `plugin:NAME|PATH`.
    pub strategy: String,
    /// Fraction of the surviving weights pruned per level (of each tensor when layer-wise).
    pub fraction: f64,
    /// Layer-wise (each tensor loses `fraction` of its survivors) rather than global.
    pub layerwise: bool,
    /// When set, the output layer's weight is pruned too, at this fraction (the paper's LeNet:
    /// 10%); otherwise it is never pruned (the paper's ResNet and VGG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_fraction: Option<f64>,
    /// One-shot: prune to this density at level 1 instead of `fraction` per level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_shot: Option<f64>,
    /// Mini-batches whose gradients SNIP scores use (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snip_batches: Option<u64>,
}

impl PruneSpec {
    /// The paper's rule for `preset`: LeNet layer-wise 20% (output layer 10%), ResNet and VGG
    /// global 20% over the conv weights.
    pub fn for_preset(preset: &Preset) -> Self {
        let lenet = preset.model.starts_with("mnist_lenet");
        PruneSpec {
            strategy: "magnitude".into(),
            fraction: 0.2,
            layerwise: lenet,
            output_fraction: lenet.then_some(0.1),
            one_shot: None,
            snip_batches: None,
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), Error> {
        let in_01 = |f: f64| f > 0.0 && f < 1.0;
        if !in_01(self.fraction) {
            return Err(Error::Request(format!("the pruning fraction must be in (0, 1), got {}", self.fraction)));
        }
        if let Some(f) = self.output_fraction.filter(|f| !in_01(*f)) {
            return Err(Error::Request(format!("the output layer's pruning fraction must be in (0, 1), got {f}")));
        }
        if let Some(d) = self.one_shot.filter(|d| !in_01(*d)) {
            return Err(Error::Request(format!("a one-shot density must be in (0, 1), got {d}")));
        }
        let known = ["magnitude", "snip"];
        if !known.contains(&self.strategy.as_str()) && !self.strategy.starts_with("plugin:") {
            return Err(Error::Request(format!(
                "unknown pruning strategy {:?}; strategies are magnitude, snip and plugin:NAME (or plugin:PATH)",
                self.strategy
            )));
        }
        Ok(())
    }

    /// The prunable tensors of `model`: conv and linear weights, plus the output layer's weight
    /// when `output_fraction` is set.
    pub fn tensors(&self, model: &lt_models::Model) -> Vec<String> {
        let mut names = model.prunable();
        if self.output_fraction.is_some() {
            names.extend(model.output_layer().iter().filter(|n| n.ends_with("weight")).cloned());
        }
        names.sort();
        names
    }

    /// The scope of one pruning level over `tensors` (`output` = the output layer's weight names).
    pub fn scope(&self, output: &[String]) -> Scope {
        if let Some(d) = self.one_shot {
            return Scope::Global(Amount::Density(d));
        }
        if self.layerwise {
            let per_tensor: BTreeMap<String, Amount> = match self.output_fraction {
                Some(f) => {
                    output.iter().filter(|n| n.ends_with("weight")).map(|n| (n.clone(), Amount::Fraction(f))).collect()
                }
                None => BTreeMap::new(),
            };
            Scope::LayerWise { default: Amount::Fraction(self.fraction), per_tensor }
        } else {
            Scope::Global(Amount::Fraction(self.fraction))
        }
    }
}

/// IMP with rewinding (Algorithm 1 of the paper).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LotterySpec {
    /// The training setup of every level.
    pub train: TrainSpec,
    /// The rewind iteration k (0 = reset to initialization).
    pub rewind: u64,
    /// How each level prunes.
    pub prune: PruneSpec,
}

impl LotterySpec {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), Error> {
        self.prune.validate()?;
        if self.rewind > self.train.iterations {
            return Err(Error::Request(format!(
                "the rewind point (iteration {}) is past the end of training (iteration {})",
                self.rewind, self.train.iterations
            )));
        }
        if self.train.iterations == 0 {
            return Err(Error::Request("training must last at least one iteration".into()));
        }
        if let Some(k) = self.train.accumulate
            && (k == 0 || !self.train.batch_size.is_multiple_of(k))
        {
            return Err(Error::Request(format!(
                "gradient accumulation splits a batch into equal micro-batches: the batch size {} is not a multiple of {k} (--accumulate)",
                self.train.batch_size
            )));
        }
        Ok(())
    }

    /// The run's folder name: the preset and 12 hex digits of the spec's hash.
    pub fn id(&self) -> String {
        format!("{}-{}", self.train.preset, &hash(self)[..12])
    }

    /// Whether `other`'s dense level (level 0, trained from W_0 to the end) is this run's too:
    /// the same training, and masks over the same tensors. Such runs differ only in their rewind
    /// point or their pruning, and Algorithm 1 trains their dense network once.
    pub fn shares_dense_level(&self, other: &LotterySpec) -> bool {
        self.train == other.train && self.prune.output_fraction.is_some() == other.prune.output_fraction.is_some()
    }
}

/// SHA-256 (hex) of the canonical JSON of `value`: object keys sorted, `null`s left out.
pub fn hash<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    let mut text = String::new();
    canonical(&json, &mut text);
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

fn canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<_> = map.iter().filter(|(_, v)| !v.is_null()).collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use super::*;

    fn lenet() -> LotterySpec {
        let preset = Preset::named("lenet").unwrap();
        LotterySpec {
            train: TrainSpec::from_preset(preset, None, 0, 1000),
            rewind: 0,
            prune: PruneSpec::for_preset(preset),
        }
    }

    #[test]
    fn the_hash_ignores_key_order_and_absent_options() {
        let spec = lenet();
        let mut json = serde_json::to_value(&spec).unwrap();
        // A field that a later version adds, at its default (absent), must not rename the run.
        json["prune"].as_object_mut().unwrap().insert("future_option".into(), serde_json::Value::Null);
        assert_eq!(hash(&json), hash(&spec));
        let mut other = spec.clone();
        other.rewind = 1;
        assert_ne!(hash(&other), hash(&spec));
        assert_eq!(spec.id().len(), "lenet-".len() + 12);
    }

    #[test]
    fn bad_values_are_named() {
        let mut spec = lenet();
        spec.rewind = 60_000;
        assert!(spec.validate().unwrap_err().to_string().contains("rewind point (iteration 60000) is past the end"));
        let mut spec = lenet();
        spec.prune.fraction = 1.0;
        assert!(spec.validate().unwrap_err().to_string().contains("fraction must be in (0, 1), got 1"));
        let mut spec = lenet();
        spec.prune.strategy = "largest".into();
        assert!(spec.validate().unwrap_err().to_string().contains("unknown pruning strategy \"largest\""));
    }
}
