//! [`Trainer`]: one training run of a model on a dataset, from iteration t0 to T, with evaluation,
//! a metrics log, checkpoints, and resumption.
//!
//! A run lives in a folder: `checkpoint.safetensors` (the latest, for resuming), `step_K.safetensors`
//! for each requested snapshot (the rewind point W_k), `final.safetensors`, and `metrics.jsonl`.
//! A run created over a folder that holds a checkpoint resumes from it; because the data order,
//! the optimizer state and the BatchNorm statistics are all restored, the resumed run's weights are
//! bit-identical to an uninterrupted run's on the same machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{D, Device, Tensor};
use lt_data::{Dataset, Loader};
use lt_models::Model;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::checkpoint::{Checkpoint, CheckpointMeta};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::schedule::Schedule;

/// Examples per evaluation batch: large enough to amortize per-batch costs, small enough that a
/// VGG-19's activations stay well under a gigabyte.
pub const EVAL_BATCH: usize = 250;

/// Masks by parameter name: 0/1 f32 tensors of the parameter's shape.
pub type Masks = BTreeMap<String, Tensor>;

/// What a run does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Start at this iteration (k, for a run rewound to W_k): the schedule and the data order
    /// continue from it. The caller loads W_k into the model; the optimizer starts fresh, as in
    /// OpenLTH. 0 for a run from initialization.
    #[serde(default)]
    pub start_iteration: u64,
    /// Train until this iteration (T).
    pub iterations: u64,
    /// Examples per batch.
    pub batch_size: usize,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// The data order's seed.
    pub data_order_seed: u64,
    /// Evaluate every this many iterations (and at the end); 0 = only at the end.
    pub eval_every: u64,
    /// Write the resume checkpoint every this many iterations (and at the end); 0 = only at the end.
    pub checkpoint_every: u64,
    /// Iterations at which to keep a snapshot `step_K.safetensors` (e.g. the rewind point).
    pub save_at: Vec<u64>,
    /// Gradient accumulation: each batch is passed in this many micro-batches whose gradients
    /// are summed (weighted by their sizes) before the one optimizer step, so a batch of 1,024
    /// trains where memory holds fewer examples. The examples and their order are the batch's;
    /// BatchNorm normalizes each micro-batch by its own statistics and updates its running
    /// statistics once per micro-batch (as PyTorch's accumulation does). 1: off.
    #[serde(default = "one")]
    pub accumulate: usize,
}

fn one() -> usize {
    1
}

impl RunConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), Error> {
        self.optimizer.validate()?;
        self.schedule.validate()?;
        if self.batch_size == 0 {
            return Err(Error::Config("batch size must be at least 1".into()));
        }
        if self.accumulate == 0 || !self.batch_size.is_multiple_of(self.accumulate) {
            return Err(Error::Config(format!(
                "gradient accumulation splits a batch into equal micro-batches: the batch size {} is not a multiple of {} (--accumulate)",
                self.batch_size, self.accumulate
            )));
        }
        if self.start_iteration > self.iterations {
            return Err(Error::Config(format!(
                "start iteration {} is past the end of training ({})",
                self.start_iteration, self.iterations
            )));
        }
        if let Some(k) = self.save_at.iter().find(|&&k| k > self.iterations) {
            return Err(Error::Config(format!(
                "snapshot iteration {k} is past the end of training ({})",
                self.iterations
            )));
        }
        Ok(())
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Iterations completed.
    pub iteration: u64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Mean training loss since the previous record.
    pub train_loss: f64,
    /// Test loss.
    pub test_loss: Option<f64>,
    /// Test accuracy in [0, 1].
    pub test_accuracy: Option<f64>,
    /// Test top-5 accuracy in [0, 1] (for models of more than [`TOP5_ABOVE`] classes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_top5: Option<f64>,
    /// Seconds of training so far in this process.
    pub elapsed_s: f64,
}

/// Progress reported to the caller.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A step finished.
    Step {
        /// Iterations completed.
        iteration: u64,
        /// Its loss.
        loss: f32,
    },
    /// An evaluation finished.
    Evaluated(Record),
    /// The run resumed from a checkpoint.
    Resumed {
        /// At this iteration.
        iteration: u64,
    },
}

/// Test loss and accuracy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction correct (top-1).
    pub accuracy: f64,
    /// Fraction whose label is among the 5 highest logits (ImageNet's top-5; a tie with the
    /// label's logit counts against it), for models of more than [`TOP5_ABOVE`] classes.
    pub top5: Option<f64>,
}

/// What a finished run reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Iterations completed.
    pub iterations: u64,
    /// The last evaluation, if there was a test set.
    pub evaluation: Option<Evaluation>,
    /// The run's folder.
    pub dir: PathBuf,
}

/// Evaluates `model` on every example of `test`.
pub fn evaluate(model: &Model, test: &Arc<Dataset>, batch_size: usize, device: &Device) -> Result<Evaluation, Error> {
    evaluate_first(model, test, usize::MAX, batch_size, device)
}

/// Evaluates `model` on the first `limit` examples of `split` (all of them if it has fewer), with
/// the evaluation transform (e.g. a training split's error without augmentation).
pub fn evaluate_first(
    model: &Model,
    split: &Arc<Dataset>,
    limit: usize,
    batch_size: usize,
    device: &Device,
) -> Result<Evaluation, Error> {
    let (mut loss, mut correct, mut top5, mut n) = (0f64, 0u64, None::<u64>, 0usize);
    for batch in split.eval_batches(batch_size, device)? {
        if n >= limit {
            break;
        }
        let batch = batch?;
        let keep = batch.indices.len().min(limit - n);
        let (images, labels) = if keep < batch.indices.len() {
            (batch.images.narrow(0, 0, keep)?, batch.labels.narrow(0, 0, keep)?)
        } else {
            (batch.images, batch.labels)
        };
        let logits = model.forward_t(&images, false)?;
        loss += candle_nn::loss::cross_entropy(&logits, &labels)?.to_scalar::<f32>()? as f64 * keep as f64;
        let predicted = logits.argmax(D::Minus1)?;
        correct += predicted.eq(&labels)?.to_dtype(candle_core::DType::U32)?.sum_all()?.to_scalar::<u32>()? as u64;
        if logits.dim(1)? > TOP5_ABOVE {
            *top5.get_or_insert(0) += top_k_hits(&logits, &labels, 5)?;
        }
        n += keep;
    }
    let of = |count: u64| count as f64 / n.max(1) as f64;
    Ok(Evaluation { loss: loss / n.max(1) as f64, accuracy: of(correct), top5: top5.map(of) })
}

/// Top-5 accuracy is measured for models of more classes than this (ImageNet's, not the
/// 10-class datasets', where it says little).
pub const TOP5_ABOVE: usize = 10;

/// How many rows of `logits` (N, classes) have fewer than `k` logits above their label's (a tie
/// with the label's logit counts against it).
fn top_k_hits(logits: &Tensor, labels: &Tensor, k: u32) -> candle_core::Result<u64> {
    let own = logits.gather(&labels.to_dtype(candle_core::DType::U32)?.unsqueeze(1)?, 1)?;
    let above = logits.broadcast_gt(&own)?.to_dtype(candle_core::DType::U32)?.sum(1)?;
    Ok(above.lt(k)?.to_dtype(candle_core::DType::U32)?.sum_all()?.to_scalar::<u32>()? as u64)
}

/// A training run.
#[derive(Debug)]
pub struct Trainer {
    model: Model,
    optimizer: Optimizer,
    loader: Loader,
    test: Option<Arc<Dataset>>,
    masks: Masks,
    config: RunConfig,
    dir: PathBuf,
    device: Device,
    iteration: u64,
    records: Vec<Record>,
}

impl Trainer {
    /// A run of `model` in folder `dir`. If `dir` holds a checkpoint, the run resumes from it
    /// (the checkpoint must be of the same model and data order); otherwise it starts at iteration 0.
    /// Pruned weights (mask 0) are zeroed before the first step.
    pub fn new(
        model: Model,
        train: Arc<Dataset>,
        test: Option<Arc<Dataset>>,
        masks: Masks,
        config: RunConfig,
        dir: &Path,
        device: &Device,
    ) -> Result<Self, Error> {
        config.validate()?;
        let params = model.parameters();
        for (name, mask) in &masks {
            let var = params.iter().find(|(n, _)| n == name).map(|(_, v)| v).ok_or_else(|| {
                Error::Config(format!("mask for {name}, which is not a parameter of {}", model.name()))
            })?;
            if mask.dims() != var.dims() {
                return Err(Error::Config(format!(
                    "mask for {name} has shape {:?}, the weight {:?}",
                    mask.dims(),
                    var.dims()
                )));
            }
            var.set(&(var.as_tensor() * mask)?)?;
        }
        // The mask is fixed for the whole run: layers sparse enough compute with its pattern.
        model.use_sparse_kernels(&masks)?;
        let loader = Loader::new(train, config.data_order_seed, config.batch_size, device)?;
        let optimizer = Optimizer::new(config.optimizer)?;
        let start = config.start_iteration;
        let mut trainer = Trainer {
            model,
            optimizer,
            loader,
            test,
            masks,
            config,
            dir: dir.to_path_buf(),
            device: device.clone(),
            iteration: start,
            records: Vec::new(),
        };
        std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.into(), source: e })?;
        trainer.resume()?;
        Ok(trainer)
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.dir.join("checkpoint.safetensors")
    }

    fn resume(&mut self) -> Result<(), Error> {
        let path = self.checkpoint_path();
        if !path.is_file() {
            return Ok(());
        }
        let ckpt = Checkpoint::load(&path, &self.device)?;
        let bad = |message: String| Error::Checkpoint { path: path.clone(), message };
        if ckpt.meta.model != self.model.name() {
            return Err(bad(format!("is of model {}, this run trains {}", ckpt.meta.model, self.model.name())));
        }
        if ckpt.meta.data_order_seed != self.config.data_order_seed {
            return Err(bad(format!(
                "has data-order seed {}, this run uses {}",
                ckpt.meta.data_order_seed, self.config.data_order_seed
            )));
        }
        self.model.load_state(&ckpt.model)?;
        self.optimizer.load_state(ckpt.optimizer, ckpt.meta.optimizer_steps)?;
        self.iteration = ckpt.meta.iteration;
        self.records = read_metrics(&self.dir.join("metrics.jsonl"))?
            .into_iter()
            .filter(|r| r.iteration <= self.iteration)
            .collect();
        Ok(())
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Iterations completed.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// The records so far.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    fn save(&self, path: &Path) -> Result<(), Error> {
        let meta =
            CheckpointMeta::new(self.model.name(), self.iteration, self.optimizer.steps(), self.config.data_order_seed);
        Checkpoint::save(path, &meta, &self.model.state()?, &self.optimizer.state_tensors())
    }

    fn write_metrics(&self) -> Result<(), Error> {
        let mut text = String::new();
        for r in &self.records {
            text.push_str(&serde_json::to_string(r).map_err(|e| Error::Config(e.to_string()))?);
            text.push('\n');
        }
        lt_data::write_atomic(&self.dir.join("metrics.jsonl"), text.as_bytes())?;
        Ok(())
    }

    /// The mean loss of `batch` (iteration `t`) and its gradients: one pass, or the sum of the
    /// micro-batches' gradients, each weighted by its share of the batch (`accumulate`).
    fn gradients(
        &self,
        batch: &lt_data::Batch,
        t: u64,
        params: &[(String, candle_core::Var)],
    ) -> Result<(f32, candle_core::backprop::GradStore), Error> {
        let key = dropout_key(self.config.data_order_seed, t);
        let n = batch.labels.dim(0)?;
        let parts = self.config.accumulate.max(1);
        if parts == 1 {
            self.model.set_dropout_key(key);
            let logits = self.model.forward_t(&batch.images, true)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &batch.labels)?;
            return Ok((loss.to_scalar::<f32>()?, loss.backward()?));
        }
        // The last batch of an epoch may be short: micro-batches of ceil(n / parts).
        let size = n.div_ceil(parts);
        let (mut total, mut sum): (f32, Option<candle_core::backprop::GradStore>) = (0.0, None);
        for (i, start) in (0..n).step_by(size).enumerate() {
            let len = size.min(n - start);
            self.model.set_dropout_key(lt_data::derive_key(&[key, i as u64]));
            let logits = self.model.forward_t(&batch.images.narrow(0, start, len)?, true)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &batch.labels.narrow(0, start, len)?)?;
            let loss = (loss * (len as f64 / n as f64))?;
            total += loss.to_scalar::<f32>()?;
            let grads = loss.backward()?;
            match &mut sum {
                None => sum = Some(grads),
                Some(acc) => {
                    for (_, var) in params {
                        let Some(g) = grads.get(var.as_tensor()) else { continue };
                        let g = match acc.get(var.as_tensor()) {
                            Some(prev) => (prev + g)?,
                            None => g.clone(),
                        };
                        acc.insert(var.as_tensor(), g);
                    }
                }
            }
        }
        Ok((total, sum.ok_or_else(|| Error::Config("an empty batch".into()))?))
    }

    /// Trains to the configured end, evaluating, logging and checkpointing on the way.
    pub fn run(&mut self, progress: &mut dyn FnMut(Progress)) -> Result<Summary, Error> {
        let start = Instant::now();
        if self.iteration > 0 {
            progress(Progress::Resumed { iteration: self.iteration });
        }
        let params = self.model.parameters();
        let end = self.config.iterations;
        let (mut loss_sum, mut loss_n) = (0f64, 0u64);
        let mut last_good = self.checkpoint_path().is_file().then(|| self.checkpoint_path());
        let mut evaluation = None;
        let start_at = self.config.start_iteration;
        if self.iteration == start_at && self.config.save_at.contains(&start_at) {
            self.save(&self.dir.join(format!("step_{start_at}.safetensors")))?;
        }
        while self.iteration < end {
            let t = self.iteration;
            let batch = self.loader.batch(t)?;
            let lr = self.config.schedule.lr_at(t);
            let (value, grads) = self.gradients(&batch, t, &params)?;
            if !value.is_finite() {
                return Err(Error::Diverged { iteration: t, loss: value, last_good });
            }
            self.optimizer.step(&params, &grads, lr, &self.masks)?;
            self.iteration += 1;
            loss_sum += value as f64;
            loss_n += 1;
            progress(Progress::Step { iteration: self.iteration, loss: value });
            let done = self.iteration == end;
            let every = |n: u64| n > 0 && self.iteration.is_multiple_of(n);
            if every(self.config.eval_every) || done {
                let ev = match &self.test {
                    Some(test) => Some(evaluate(&self.model, test, EVAL_BATCH, &self.device)?),
                    None => None,
                };
                evaluation = ev;
                let record = Record {
                    iteration: self.iteration,
                    lr,
                    train_loss: loss_sum / loss_n.max(1) as f64,
                    test_loss: ev.map(|e| e.loss),
                    test_accuracy: ev.map(|e| e.accuracy),
                    test_top5: ev.and_then(|e| e.top5),
                    elapsed_s: start.elapsed().as_secs_f64(),
                };
                (loss_sum, loss_n) = (0.0, 0);
                self.records.push(record.clone());
                progress(Progress::Evaluated(record));
            }
            if self.config.save_at.contains(&self.iteration) {
                self.save(&self.dir.join(format!("step_{}.safetensors", self.iteration)))?;
            }
            let stop = !done && crate::stop_requested();
            if every(self.config.checkpoint_every) || done || stop {
                // Metrics first: a kill between the two writes leaves records past the checkpoint,
                // which a resume drops and recomputes; the other order would lose a record.
                self.write_metrics()?;
                self.save(&self.checkpoint_path())?;
                last_good = Some(self.checkpoint_path());
            }
            if stop {
                return Err(Error::Interrupted { iteration: self.iteration, checkpoint: self.checkpoint_path() });
            }
        }
        self.save(&self.dir.join("final.safetensors"))?;
        if evaluation.is_none()
            && let Some(test) = &self.test
        {
            evaluation = Some(evaluate(&self.model, test, EVAL_BATCH, &self.device)?);
        }
        Ok(Summary { iterations: self.iteration, evaluation, dir: self.dir.clone() })
    }
}

fn read_metrics(path: &Path) -> Result<Vec<Record>, Error> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.into(), source: e })?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| Error::Checkpoint { path: path.into(), message: format!("bad metrics line: {e}") })
        })
        .collect()
}

/// The dropout key of iteration `t`: dropout is SGD noise, like the data order, so it follows the
/// data-order seed (copies in a data-order stability test differ in both).
pub(crate) fn dropout_key(data_order_seed: u64, t: u64) -> u64 {
    lt_data::derive_key(&[0x64726f70, data_order_seed, t])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use candle_core::Device;

    use super::*;

    #[test]
    fn top_k_counts_labels_among_the_highest_logits() {
        // Row 0: label 2 is the 3rd highest; row 1: label 0 is the lowest of 7; row 2: label 1
        // ties another logit (0.4), and 5 others lie above it.
        let logits = Tensor::new(
            &[
                [0.9f32, 0.1, 0.5, 0.7, 0.0, 0.2, 0.3],
                [-1.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
                [0.5, 0.4, 0.6, 0.7, 0.8, 0.9, 0.4],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let labels = Tensor::new(&[2u32, 0, 1], &Device::Cpu).unwrap();
        assert_eq!(top_k_hits(&logits, &labels, 1).unwrap(), 0);
        assert_eq!(top_k_hits(&logits, &labels, 3).unwrap(), 1);
        assert_eq!(top_k_hits(&logits, &labels, 5).unwrap(), 1);
        assert_eq!(top_k_hits(&logits, &labels, 6).unwrap(), 2);
        assert_eq!(top_k_hits(&logits, &labels, 7).unwrap(), 3);
    }
}
