//! `lt-lottery` owns experiments: the lottery runner (IMP with rewinding to iteration k,
//! Algorithm 1 of the paper), branches off a run (random pruning, random reinitialization, reset
//! to W_0, SNIP, retraining), stability measurements (to data order and to pruning, with a random
//! control; linear interpolation), and the experiment store they all live in.
//!
//! Every training run is a [`Job`] with explicit inputs (the checkpoint it starts from, its mask,
//! its start iteration and data order) and one folder of outputs, idempotent by that folder:
//! complete jobs are skipped, interrupted ones resume bit-identically from their checkpoint.
//! Folders are named by a hash of the canonical hyperparameters (see [`spec`]); every file is
//! written atomically.
//!
//! It also measures the instability of the dense network from W_k (the error barrier between two
//! copies trained with different data orders; [`DenseRuns`]).
//!
//! It does not own training (`lt-train`), mask selection (`lt-prune`) or the distance math
//! (`lt-stability`), and it prints nothing: progress goes through [`Event`]s.

mod branch;
mod data;
mod error;
mod instability;
mod job;
mod lottery;
mod prune;
pub mod spec;
mod stability;

pub use branch::{Branch, BranchKind, BranchSpec};
pub use data::Data;
pub use error::Error;
pub use instability::{DenseRuns, Instability, Line, Probe};
pub use job::{Context, DONE, Event, Exec, Init, Job, Outcome, checkpoint_weights, outcome, prepare};
pub use lottery::{HPARAMS, Lottery, MASK, Planned};
pub use spec::{LotterySpec, PruneSpec, TrainSpec};
pub use stability::{
    Interpolation, Measurement, Pair, StabilityKind, StabilityReport, data_order, interpolate, pruning,
};
