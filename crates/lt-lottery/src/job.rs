//! A job: one training run of the experiment store with explicit inputs (where its weights come
//! from, its mask, its start iteration and data order) and one folder of outputs, idempotent by
//! that folder: a job whose `done.json` exists is not run again, one with a checkpoint resumes.
//!
//! A job is trained by one process at a time: [`run`] holds an advisory lock on `lock` in its
//! folder while it trains (`flock`, which Linux maps to POSIX record locks on NFS, so it holds
//! across the nodes of a cluster). A second worker on the same job waits for the lock and then
//! finds the job done, so two workers on one store split the work instead of doing it twice. The
//! lock goes with the process that holds it, killed or not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use lt_models::{InitConfig, Model};
use lt_prune::Mask;
use lt_train::{Checkpoint, Masks, Progress, RunConfig, Trainer};
use serde::{Deserialize, Serialize};

use crate::{Data, Error, TrainSpec};

/// The completion marker of a job.
pub const DONE: &str = "done.json";
/// A job's resume checkpoint (written by `lt_train::Trainer`): a job that has it was started and
/// is not done (it is removed once `done.json` is written).
pub(crate) const CHECKPOINT: &str = "checkpoint.safetensors";
/// The lock file of a job (see the module's doc).
pub const LOCK: &str = "lock";

/// Where a job's starting weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Init {
    /// A fresh initialization from this seed.
    Fresh {
        /// The seed.
        seed: u64,
    },
    /// The weights (and BatchNorm statistics) of a checkpoint, e.g. W_k.
    Checkpoint(PathBuf),
}

/// One training run.
#[derive(Debug, Clone)]
pub struct Job {
    /// A short name for progress lines (`level 3`).
    pub label: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Its starting weights.
    pub init: Init,
    /// The subnetwork's mask; `None` trains the dense network.
    pub mask: Option<Mask>,
    /// Its first iteration (k for a rewound run).
    pub start: u64,
    /// Its data order.
    pub data_order_seed: u64,
    /// Iterations at which to keep snapshots.
    pub save_at: Vec<u64>,
}

/// What a finished job reports (its `done.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The last iteration (T).
    pub iterations: u64,
    /// Test accuracy in [0, 1].
    pub accuracy: f64,
    /// Test top-5 accuracy in [0, 1], for models of more than `lt_train::TOP5_ABOVE` classes (ImageNet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top5: Option<f64>,
    /// Test loss.
    pub loss: f64,
    /// Fraction of the prunable weights that survive.
    pub density: f64,
    /// Seconds of training in the process that finished it.
    pub wall_s: f64,
}

/// Progress of an experiment.
#[derive(Debug, Clone)]
pub enum Event {
    /// A job starts (or resumes).
    Started {
        /// Its label.
        label: String,
        /// Its first iteration.
        from: u64,
        /// Its last iteration.
        to: u64,
        /// Whether it continues from its own checkpoint.
        resumed: bool,
    },
    /// Progress inside the running job.
    Train(Progress),
    /// Another process is training the job; this one waits for it.
    Waiting {
        /// Its label.
        label: String,
    },
    /// A job was already complete.
    Skipped {
        /// Its label.
        label: String,
        /// Its result.
        outcome: Outcome,
    },
    /// A job was done by another run with the same training; its files were linked here.
    Borrowed {
        /// Its label.
        label: String,
        /// The other run's folder name.
        from: String,
        /// Its result.
        outcome: Outcome,
    },
    /// A job finished.
    Finished {
        /// Its label.
        label: String,
        /// Its result.
        outcome: Outcome,
    },
}

/// How jobs run, apart from what they compute (not part of any hash).
#[derive(Debug, Clone)]
pub struct Exec {
    /// Evaluate every this many iterations (0: ten times per job).
    pub eval_every: u64,
    /// Write the resume checkpoint every this many iterations (0: at each evaluation).
    pub checkpoint_every: u64,
    /// The device.
    pub device: Device,
}

impl Default for Exec {
    fn default() -> Self {
        Exec { eval_every: 0, checkpoint_every: 0, device: Device::Cpu }
    }
}

/// Everything a job needs besides itself.
pub struct Context<'a> {
    /// The datasets.
    pub data: &'a Data,
    /// How to run.
    pub exec: &'a Exec,
    /// Where progress goes.
    pub events: &'a mut dyn FnMut(Event),
}

/// The outcome of the job in `dir`, if it is complete.
pub fn outcome(dir: &Path) -> Result<Option<Outcome>, Error> {
    let path = dir.join(DONE);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Store { path, message: format!("unreadable completion marker: {e}") })
}

/// A fresh model of `spec`.
pub fn new_model(spec: &TrainSpec, data: &Data, seed: u64, device: &Device) -> Result<Model, Error> {
    Ok(Model::new(&spec.model, data.input, seed, InitConfig::default(), device)?)
}

/// The model with `init`'s weights.
pub fn load_model(spec: &TrainSpec, data: &Data, init: &Init, device: &Device) -> Result<Model, Error> {
    match init {
        Init::Fresh { seed } => new_model(spec, data, *seed, device),
        Init::Checkpoint(path) => {
            let model = new_model(spec, data, spec.seed, device)?;
            let ckpt = Checkpoint::load(path, device)?;
            model.load_state(&ckpt.model)?;
            Ok(model)
        }
    }
}

/// The mask as 0/1 tensors for the trainer.
pub fn mask_tensors(mask: &Mask, device: &Device) -> Result<Masks, Error> {
    let mut out = Masks::new();
    for (name, shape, bits) in mask.iter() {
        let values: Vec<f32> = bits.iter().map(|&b| b as f32).collect();
        out.insert(name.to_string(), Tensor::from_vec(values, shape, device)?);
    }
    Ok(out)
}

/// The named tensors of the checkpoint at `path`, as flat vectors (all of them when `names` is
/// `None`).
pub fn checkpoint_weights(path: &Path, names: Option<&[String]>) -> Result<BTreeMap<String, Vec<f32>>, Error> {
    let ckpt = Checkpoint::load(path, &Device::Cpu)?;
    let mut out = BTreeMap::new();
    for (name, t) in ckpt.model {
        if names.is_none_or(|names| names.contains(&name)) {
            out.insert(name, t.flatten_all()?.to_vec1::<f32>()?);
        }
    }
    if let Some(missing) = names.and_then(|names| names.iter().find(|n| !out.contains_key(*n))) {
        return Err(Error::Store { path: path.into(), message: format!("has no tensor {missing}") });
    }
    Ok(out)
}

/// The trainer of `job`, positioned where it starts or resumes: weights loaded from its init,
/// pruned weights zeroed, iteration at its start (or its checkpoint's).
pub fn prepare(spec: &TrainSpec, job: &Job, ctx: &Context) -> Result<Trainer, Error> {
    let device = &ctx.exec.device;
    let model = load_model(spec, ctx.data, &job.init, device)?;
    let masks = match &job.mask {
        Some(m) => mask_tensors(m, device)?,
        None => Masks::new(),
    };
    let span = spec.iterations.saturating_sub(job.start);
    let eval_every = if ctx.exec.eval_every > 0 { ctx.exec.eval_every } else { (span / 10).max(1) };
    let config = RunConfig {
        start_iteration: job.start,
        iterations: spec.iterations,
        batch_size: spec.batch_size,
        optimizer: spec.optimizer,
        schedule: spec.schedule.clone(),
        data_order_seed: job.data_order_seed,
        eval_every,
        checkpoint_every: if ctx.exec.checkpoint_every > 0 { ctx.exec.checkpoint_every } else { eval_every },
        save_at: job.save_at.clone(),
        accumulate: spec.accumulate.unwrap_or(1),
    };
    Ok(Trainer::new(model, ctx.data.train.clone(), Some(ctx.data.test.clone()), masks, config, &job.dir, device)?)
}

/// Takes `job`'s lock, waiting (and saying so) while another process holds it.
fn lock(job: &Job, ctx: &mut Context) -> Result<std::fs::File, Error> {
    std::fs::create_dir_all(&job.dir).map_err(Error::io(&job.dir))?;
    let path = job.dir.join(LOCK);
    let file =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(Error::io(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            (ctx.events)(Event::Waiting { label: job.label.clone() });
            file.lock().map_err(Error::io(&path))?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path)(e)),
    }
    Ok(file)
}

/// Runs `job` under `spec` unless it is complete; returns its outcome. Holds the job's lock while
/// it trains.
pub fn run(spec: &TrainSpec, job: &Job, ctx: &mut Context) -> Result<Outcome, Error> {
    let done_before = |ctx: &mut Context| -> Result<Option<Outcome>, Error> {
        let done = outcome(&job.dir)?;
        if let Some(outcome) = &done {
            (ctx.events)(Event::Skipped { label: job.label.clone(), outcome: outcome.clone() });
        }
        Ok(done)
    };
    if let Some(outcome) = done_before(ctx)? {
        return Ok(outcome);
    }
    let _lock = lock(job, ctx)?;
    // Whoever held the lock before may have finished the job.
    if let Some(outcome) = done_before(ctx)? {
        return Ok(outcome);
    }
    if lt_train::stop_requested() {
        return Err(Error::Request(format!(
            "stopped as asked (SIGTERM) before {} started; the same command continues from there",
            job.label
        )));
    }
    let mut trainer = prepare(spec, job, ctx)?;
    (ctx.events)(Event::Started {
        label: job.label.clone(),
        from: trainer.iteration(),
        to: spec.iterations,
        resumed: trainer.iteration() > job.start,
    });
    let started = Instant::now();
    let events = &mut *ctx.events;
    let summary = trainer.run(&mut |p| events(Event::Train(p)))?;
    let evaluation =
        summary.evaluation.ok_or_else(|| Error::Request("a job needs a test split to report its accuracy".into()))?;
    let outcome = Outcome {
        iterations: summary.iterations,
        accuracy: evaluation.accuracy,
        top5: evaluation.top5,
        loss: evaluation.loss,
        density: job.mask.as_ref().map_or(1.0, Mask::density),
        wall_s: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_string_pretty(&outcome).map_err(|e| Error::Request(e.to_string()))?;
    lt_data::write_atomic(&job.dir.join(DONE), json.as_bytes())?;
    // A done job is never resumed: its resume checkpoint (weights and optimizer state, twice the
    // size of final.safetensors: 200 MB for ResNet-50) only takes space.
    let _ = std::fs::remove_file(job.dir.join(CHECKPOINT));
    (ctx.events)(Event::Finished { label: job.label.clone(), outcome: outcome.clone() });
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use super::*;

    #[test]
    fn an_outcome_reads_back_exactly() {
        // 7.503230077 came back as 7.5032300769999996 before serde_json's float_roundtrip.
        let o = Outcome {
            iterations: 40,
            accuracy: 0.7525,
            top5: None,
            loss: 0.6838774815201759,
            density: 0.8003756574004508,
            wall_s: 7.503230077,
        };
        let dir = tempfile::tempdir().unwrap();
        lt_data::write_atomic(&dir.path().join(DONE), serde_json::to_string_pretty(&o).unwrap().as_bytes()).unwrap();
        assert_eq!(outcome(dir.path()).unwrap(), Some(o));
    }
}
