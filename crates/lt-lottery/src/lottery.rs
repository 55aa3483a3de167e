//! [`Lottery`]: IMP with rewinding (Algorithm 1), one folder per run in the experiment store.
//!
//! ```text
//! ROOT/lottery/<preset>-<hash>/
//!   hparams.toml              the LotterySpec (readable; its hash names the folder)
//!   level_0/                  the dense run from W_0: step_0 (W_0), step_k (W_k, the rewind point),
//!                             final, metrics.jsonl, mask.safetensors (all ones), done.json;
//!                             linked from another run with the same training when that run's
//!                             finished level 0 holds this run's W_k (trained once, not per run)
//!   level_L/                  mask.safetensors (pruned from level L-1's final weights), the run
//!                             from m ⊙ W_k at iteration k to T, done.json
//!   level_L/data_order_S/     copies of level L with data-order seed S (stability)
//!   dense_from_k/data_order_S/  the full network trained from W_k (pruning stability)
//!   branches/<kind>-<hash>/   branches (random pruning, reinitialization, ...)
//!   stability/*.json          stability reports
//! ```

use std::path::{Path, PathBuf};

use lt_prune::{Mask, MaskMeta};
use serde::Serialize;

use crate::job::{self, Context, Init, Job, Outcome};
use crate::{Data, Error, LotterySpec};

/// The file holding a run's hyperparameters.
pub const HPARAMS: &str = "hparams.toml";
/// A level's mask file.
pub const MASK: &str = "mask.safetensors";

/// A lottery run in the store.
#[derive(Debug, Clone)]
pub struct Lottery {
    spec: LotterySpec,
    dir: PathBuf,
    /// Rewind points of other runs with this training whose W_k the dense level also saves when
    /// it is trained here ([`Lottery::saving_for`]).
    also_save: Vec<u64>,
}

/// One job of a plan and whether it is done.
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    /// Its label.
    pub label: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Whether it is complete.
    pub done: bool,
    /// Iterations it trains.
    pub iterations: u64,
}

pub(crate) fn write_toml<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let text = toml::to_string(value).map_err(|e| Error::Store { path: path.into(), message: e.to_string() })?;
    lt_data::write_atomic(path, text.as_bytes())?;
    Ok(())
}

pub(crate) fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    toml::from_str(&text).map_err(|e| Error::Store { path: path.into(), message: format!("unreadable: {e}") })
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let text = std::fs::read_to_string(path).map_err(Error::io(path))?;
    serde_json::from_str(&text).map_err(|e| Error::Store { path: path.into(), message: format!("unreadable: {e}") })
}

/// Writes `value` as `path` unless the file exists; if it does, it must hold the same value.
pub(crate) fn claim<T>(path: &Path, value: &T, what: &str) -> Result<(), Error>
where
    T: Serialize + serde::de::DeserializeOwned + PartialEq,
{
    if path.is_file() {
        let existing: T = read_toml(path)?;
        if &existing != value {
            return Err(Error::Store {
                path: path.into(),
                message: format!("this folder holds another {what}; choose another --out or remove it"),
            });
        }
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
    }
    write_toml(path, value)
}

impl Lottery {
    /// The run of `spec` under the store `root` (created if new).
    pub fn create(root: &Path, spec: LotterySpec) -> Result<Self, Error> {
        spec.validate()?;
        let dir = root.join("lottery").join(spec.id());
        claim(&dir.join(HPARAMS), &spec, "experiment")?;
        Ok(Lottery { spec, dir, also_save: Vec::new() })
    }

    /// The run of `spec` under the store `root`, whether or not it exists, without touching the
    /// disk (for plans).
    pub fn planned(root: &Path, spec: LotterySpec) -> Result<Self, Error> {
        spec.validate()?;
        let dir = root.join("lottery").join(spec.id());
        Ok(Lottery { spec, dir, also_save: Vec::new() })
    }

    /// The run of `spec` under the store `root`, which must exist (branches and stability measure
    /// runs; they do not start them).
    pub fn existing(root: &Path, spec: LotterySpec) -> Result<Self, Error> {
        spec.validate()?;
        let dir = root.join("lottery").join(spec.id());
        if !dir.join(HPARAMS).is_file() {
            return Err(Error::Request(format!(
                "no lottery run with these options in {} (it would be {}); `lt lottery` with the same options trains it",
                root.display(),
                dir.display()
            )));
        }
        Lottery::open(&dir)
    }

    /// Has the dense level, when it is trained here, also save the weights at the rewind points
    /// `ks` (those before the end of training), so that runs with the same training rewound to
    /// any of them borrow this dense level instead of training it again: a plan with several
    /// rewind points trains the dense network once, as Algorithm 1 does. Saving changes nothing
    /// in the training itself.
    pub fn saving_for(mut self, ks: impl IntoIterator<Item = u64>) -> Self {
        self.also_save.extend(ks.into_iter().filter(|k| *k < self.spec.train.iterations));
        self
    }

    /// The run in folder `dir` (which holds `hparams.toml`).
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(HPARAMS);
        if !path.is_file() {
            return Err(Error::Request(format!(
                "{} is not a lottery run (it has no {HPARAMS}); `lt runs list` shows the runs of a store",
                dir.display()
            )));
        }
        let spec: LotterySpec = read_toml(&path)?;
        spec.validate()?;
        Ok(Lottery { spec, dir: dir.to_path_buf(), also_save: Vec::new() })
    }

    /// Every run under the store `root`, by folder name.
    pub fn list(root: &Path) -> Result<Vec<Lottery>, Error> {
        let base = root.join("lottery");
        let Ok(entries) = std::fs::read_dir(&base) else { return Ok(Vec::new()) };
        let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        dirs.iter().filter(|d| d.join(HPARAMS).is_file()).map(|d| Lottery::open(d)).collect()
    }

    /// The spec.
    pub fn spec(&self) -> &LotterySpec {
        &self.spec
    }

    /// The run's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of level `level`.
    pub fn level_dir(&self, level: u32) -> PathBuf {
        self.dir.join(format!("level_{level}"))
    }

    /// W_k: the rewind checkpoint.
    pub fn rewind_checkpoint(&self) -> PathBuf {
        self.level_dir(0).join(format!("step_{}.safetensors", self.spec.rewind))
    }

    /// W_0: the initialization.
    pub fn init_checkpoint(&self) -> PathBuf {
        self.level_dir(0).join("step_0.safetensors")
    }

    /// The levels with a completion marker, in order, stopping at the first gap.
    pub fn finished_levels(&self) -> Result<Vec<(u32, Outcome)>, Error> {
        let mut out = Vec::new();
        for level in 0.. {
            match job::outcome(&self.level_dir(level))? {
                Some(o) => out.push((level, o)),
                None => break,
            }
        }
        Ok(out)
    }

    /// The outcome of a finished level, or an error saying it is not trained.
    pub fn outcome(&self, level: u32) -> Result<Outcome, Error> {
        job::outcome(&self.level_dir(level))?.ok_or_else(|| self.not_trained(level))
    }

    fn not_trained(&self, level: u32) -> Error {
        let done = self.finished_levels().map(|l| l.len()).unwrap_or(0);
        Error::Request(format!(
            "level {level} of run {} is not trained yet ({}); run `lt lottery` with --levels {level} first",
            self.dir.display(),
            if done == 0 { "no level is".to_string() } else { format!("levels 0-{} are", done - 1) }
        ))
    }

    /// The mask of level `level` (level 0: all ones).
    pub fn mask(&self, level: u32) -> Result<Mask, Error> {
        let path = self.level_dir(level).join(MASK);
        if !path.is_file() {
            return Err(self.not_trained(level));
        }
        let (mask, meta) = Mask::load(&path)?;
        if meta.model != self.spec.train.model {
            return Err(Error::Store {
                path,
                message: format!("is a mask of {}, this run trains {}", meta.model, self.spec.train.model),
            });
        }
        Ok(mask)
    }

    /// The job that trains level `level` (its mask must be on disk for levels above 0).
    pub fn level_job(&self, level: u32) -> Result<Job, Error> {
        let train = &self.spec.train;
        let k = self.spec.rewind;
        Ok(if level == 0 {
            let mut save_at = vec![0, k];
            save_at.extend(&self.also_save);
            save_at.sort_unstable();
            save_at.dedup();
            Job {
                label: "level 0 (dense)".into(),
                dir: self.level_dir(0),
                init: Init::Fresh { seed: train.seed },
                mask: None,
                start: 0,
                data_order_seed: train.data_order_seed,
                save_at,
            }
        } else {
            let mask = self.mask(level)?;
            Job {
                label: format!("level {level} ({:.1}% left)", 100.0 * mask.density()),
                dir: self.level_dir(level),
                init: Init::Checkpoint(self.rewind_checkpoint()),
                mask: Some(mask),
                start: k,
                data_order_seed: train.data_order_seed,
                save_at: vec![],
            }
        })
    }

    /// Trains levels 0 to `levels` (skipping what is complete, resuming what is not) and returns
    /// their outcomes.
    pub fn run(&self, levels: u32, ctx: &mut Context) -> Result<Vec<Outcome>, Error> {
        if self.spec.prune.one_shot.is_some() && levels > 1 {
            return Err(Error::Request(format!(
                "a one-shot run has one pruning level; asked for {levels} (use --levels 1)"
            )));
        }
        self.ensure_dense_mask(ctx.data, &ctx.exec.device)?;
        if let Some(from) = self.borrow_dense_level()? {
            let outcome = self.outcome(0)?;
            (ctx.events)(crate::Event::Borrowed { label: "level 0 (dense)".into(), from, outcome });
        }
        let mut outcomes = Vec::new();
        for level in 0..=levels {
            if level > 0 {
                self.prune_level(level, ctx)?;
            }
            let job = self.level_job(level)?;
            outcomes.push(job::run(&self.spec.train, &job, ctx)?);
        }
        Ok(outcomes)
    }

    /// Level 0 is the dense network trained from W_0, the same for every run of the store with
    /// this run's training setup: when it is not trained (nor started) here, and another run's
    /// finished level 0 holds this run's W_k, its files are linked here instead of training it
    /// again (one-shot runs at several sparsities, a run reset to 0 beside one rewound to k).
    /// Returns the other run's folder name when it did.
    fn borrow_dense_level(&self) -> Result<Option<String>, Error> {
        let here = self.level_dir(0);
        if job::outcome(&here)?.is_some() || here.join(job::CHECKPOINT).is_file() {
            return Ok(None);
        }
        let Some(store) = self.dir.parent() else { return Ok(None) };
        let Ok(entries) = std::fs::read_dir(store) else { return Ok(None) };
        let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        let wanted = format!("step_{}.safetensors", self.spec.rewind);
        for dir in dirs.iter().filter(|d| **d != self.dir) {
            let Ok(other) = Lottery::open(dir) else { continue };
            let level0 = other.level_dir(0);
            if !other.spec.shares_dense_level(&self.spec)
                || !level0.join(&wanted).is_file()
                || job::outcome(&level0)?.is_none()
            {
                continue;
            }
            let mut files: Vec<PathBuf> = std::fs::read_dir(&level0)
                .map_err(Error::io(&level0))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    p.is_file()
                        && (name == "final.safetensors"
                            || name == "metrics.jsonl"
                            || (name.starts_with("step_") && name.ends_with(".safetensors")))
                })
                .collect();
            // The completion marker last: the level is done only once everything else is here.
            files.push(level0.join(job::DONE));
            for file in files {
                let to = here.join(file.file_name().unwrap_or_default());
                if to.exists() {
                    continue;
                }
                if std::fs::hard_link(&file, &to).is_err() {
                    let tmp = to.with_extension("borrowing");
                    std::fs::copy(&file, &tmp).map_err(Error::io(&file))?;
                    std::fs::rename(&tmp, &to).map_err(Error::io(&to))?;
                }
            }
            return Ok(Some(other.spec.id()));
        }
        Ok(None)
    }

    /// Writes level `level`'s mask, pruned from level `level - 1`'s final weights, unless it exists.
    fn prune_level(&self, level: u32, ctx: &mut Context) -> Result<(), Error> {
        let dir = self.level_dir(level);
        if dir.join(MASK).is_file() {
            return Ok(());
        }
        let previous = self.mask(level - 1)?;
        let prev_final = self.level_dir(level - 1).join("final.safetensors");
        if job::outcome(&self.level_dir(level - 1))?.is_none() {
            return Err(self.not_trained(level - 1));
        }
        let names: Vec<String> = previous.names().map(String::from).collect();
        let model = job::new_model(&self.spec.train, ctx.data, self.spec.train.seed, &ctx.exec.device)?;
        let output: Vec<String> = names.iter().filter(|n| model.output_layer().contains(n)).cloned().collect();
        let scope = self.spec.prune.scope(&output);
        let weights = job::checkpoint_weights(&prev_final, Some(&names))?;
        let strategy = self.spec.prune.strategy.as_str();
        let mask = match strategy {
            "magnitude" => lt_prune::magnitude(&weights, &previous, &scope)?,
            "snip" => {
                let batches = crate::prune::Batches {
                    data_order_seed: self.spec.train.data_order_seed,
                    t0: 0,
                    count: self.spec.prune.snip_batches.unwrap_or(1),
                };
                let init = Init::Checkpoint(prev_final.clone());
                let grads =
                    crate::prune::snip_gradients(&self.spec.train, ctx, &init, Some(&previous), batches, &names)?;
                lt_prune::snip(&weights, &grads, &previous, &scope)?
            }
            plugin => crate::prune::plugin(
                plugin,
                &self.spec.train,
                ctx,
                &Init::Checkpoint(prev_final.clone()),
                &weights,
                &previous,
                &scope,
                self.spec.train.seed + level as u64,
            )?,
        };
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        let meta = MaskMeta {
            model: self.spec.train.model.clone(),
            level,
            strategy: strategy.into(),
            parent: Some(previous.hash()),
        };
        mask.save(&dir.join(MASK), &meta)?;
        Ok(())
    }

    /// The dense mask of this run's prunable tensors (level 0's).
    pub(crate) fn dense_mask(&self, data: &Data, device: &candle_core::Device) -> Result<Mask, Error> {
        let model = job::new_model(&self.spec.train, data, self.spec.train.seed, device)?;
        let names = self.spec.prune.tensors(&model);
        let params = model.parameters();
        let shapes: Vec<(String, Vec<usize>)> = names
            .iter()
            .filter_map(|n| params.iter().find(|(p, _)| p == n).map(|(p, v)| (p.clone(), v.dims().to_vec())))
            .collect();
        Ok(Mask::dense(shapes.iter().map(|(n, s)| (n.as_str(), s.as_slice()))))
    }

    /// Makes sure level 0's dense mask is on disk.
    pub fn ensure_dense_mask(&self, data: &Data, device: &candle_core::Device) -> Result<(), Error> {
        let path = self.level_dir(0).join(MASK);
        if path.is_file() {
            return Ok(());
        }
        std::fs::create_dir_all(self.level_dir(0)).map_err(Error::io(self.level_dir(0)))?;
        let meta = MaskMeta { model: self.spec.train.model.clone(), level: 0, strategy: "dense".into(), parent: None };
        self.dense_mask(data, device)?.save(&path, &meta)?;
        Ok(())
    }

    /// The jobs of levels 0 to `levels` and whether each is done (masks of levels not yet pruned
    /// are unknown, so their density is not shown).
    pub fn plan(&self, levels: u32) -> Result<Vec<Planned>, Error> {
        (0..=levels)
            .map(|level| {
                let dir = self.level_dir(level);
                let done = job::outcome(&dir)?.is_some();
                let start = if level == 0 { 0 } else { self.spec.rewind };
                Ok(Planned {
                    label: format!("level {level}"),
                    dir,
                    done,
                    iterations: self.spec.train.iterations - start,
                })
            })
            .collect()
    }
}
