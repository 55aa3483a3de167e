//! `--executor slurm`: a figure's unfinished tasks as Slurm batch jobs.
//!
//! Every task of the plan is one job that runs this binary with the same figure options and
//! `--task N` (N as the plan prints it). Tasks form a dependency graph (a lottery run or a branch
//! needs the dense-level task of its training, where the plan has several runs of it; a branch, a
//! stability measurement or an interpolation needs its lottery run; an interpolation needs the
//! data-order copies), cut into waves: wave 0 holds the tasks that need nothing unfinished, wave
//! w those whose needs are all in earlier waves. Each wave is one job array (`--array=` the task
//! numbers), held back by `--dependency=afterok:` on exactly the array elements its tasks need,
//! and a last job renders the figure once every wave has succeeded. `--kill-on-invalid-dep=yes`
//! cancels what can no longer run after a failure, so the queue drains and a second submission
//! (which queues only what the store does not hold yet) starts clean.
//!
//! Jobs are safe to repeat and to run side by side: the store's per-job locks keep two workers
//! off the same training run, and a job that finds its work done exits at once. A job stopped by
//! SIGTERM (its time limit, preemption, `scancel`) checkpoints and exits 75; the batch script then
//! requeues it (with `--time`, Slurm sends that SIGTERM two minutes before the limit), and it
//! resumes from its checkpoint. Only training stops early: a job in the middle of evaluating the
//! points of a line finishes that first (or, killed after Slurm's grace period, evaluates them
//! again when it runs next).
//!
//! Files: `OUT/slurm/` holds the batch scripts, `submission.json` (the job ids, for `--status`)
//! and `logs/` (one log per task and one for the rendering).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use lt_slurm::{SlurmArgs, queue, sbatch, write_script};
use serde::{Deserialize, Serialize};

/// One job array: a wave of the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wave {
    /// Its Slurm job id.
    pub job: String,
    /// The task numbers (1-based, as the plan prints them) = its array indices.
    pub tasks: Vec<usize>,
}

/// What one `--executor slurm` submitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    /// Seconds since the Unix epoch.
    pub submitted_at: u64,
    /// The waves in order.
    pub waves: Vec<Wave>,
    /// The job that renders the figure.
    pub render: String,
}

/// A task of the plan as the executor sees it.
pub struct Node {
    /// Still to run (else the store holds its results).
    pub todo: bool,
    /// The tasks (0-based) it needs first.
    pub needs: Vec<usize>,
}

fn record_path(out: &Path) -> PathBuf {
    out.join("slurm").join("submission.json")
}

/// The previous submission to `out`, if any.
pub fn last_submission(out: &Path) -> Result<Option<Submission>> {
    let path = record_path(out);
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(serde_json::from_str(&text).with_context(|| format!("{} is not a submission record", path.display()))?))
}

fn job_ids(sub: &Submission) -> Vec<String> {
    sub.waves.iter().map(|w| w.job.clone()).chain(std::iter::once(sub.render.clone())).collect()
}

/// Waves of the tasks still to run: a task goes one wave after the last of its unfinished needs.
pub fn waves(nodes: &[Node]) -> Vec<Vec<usize>> {
    let mut wave: Vec<Option<usize>> = vec![None; nodes.len()];
    // Needs usually point to earlier tasks of the plan (one pass settles every wave); passes repeat
    // until nothing moves, at most once per task (the graph has no cycles).
    for _ in 0..nodes.len() {
        let mut moved = false;
        for i in 0..nodes.len() {
            if !nodes[i].todo {
                continue;
            }
            let w = nodes[i].needs.iter().filter_map(|&j| wave.get(j).copied().flatten()).map(|w| w + 1).max();
            let w = Some(w.unwrap_or(0));
            moved |= wave[i] != w;
            wave[i] = w;
        }
        if !moved {
            break;
        }
    }
    let count = wave.iter().flatten().max().map_or(0, |w| w + 1);
    (0..count).map(|w| (0..nodes.len()).filter(|&i| wave[i] == Some(w)).collect()).collect()
}

/// Submits the unfinished tasks and the rendering job; `command` is this binary with the
/// figure's options (a task adds `--task N`).
pub fn submit(fig: &str, nodes: &[Node], command: &[String], out: &Path, opts: &SlurmArgs) -> Result<Submission> {
    if let Some(previous) = last_submission(out)? {
        let live = queue(&job_ids(&previous))?;
        if !live.is_empty() {
            bail!(
                "{} job(s) of the last submission to {} are still queued or running ({}); \
                 wait for them (`--status`) or cancel them (`scancel {}`), then submit again",
                live.len(),
                out.display(),
                live.iter().map(|q| format!("{} {}", q.id, q.state)).collect::<Vec<_>>().join(", "),
                job_ids(&previous).join(" ")
            );
        }
    }
    let dir = out.join("slurm");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let cwd = std::env::current_dir().context("the current directory")?;
    let task_script = dir.join("task.sh");
    write_script(&task_script, command, " --task \"$SLURM_ARRAY_TASK_ID\"", &cwd, opts)?;
    let mut submitted: Vec<Wave> = Vec::new();
    let mut element: Vec<Option<String>> = vec![None; nodes.len()];
    for (w, members) in waves(nodes).iter().enumerate() {
        let mut needs: Vec<String> =
            members.iter().flat_map(|&i| nodes[i].needs.iter().filter_map(|&j| element[j].clone())).collect();
        needs.sort();
        needs.dedup();
        let numbers: Vec<usize> = members.iter().map(|i| i + 1).collect();
        let array = numbers.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        let mut args = vec![
            format!("--job-name=lt-{fig}-w{w}"),
            format!("--array={array}"),
            format!("--output={}", logs.join(format!("{fig}-task-%a-job-%A.log")).display()),
        ];
        if !needs.is_empty() {
            args.push(format!("--dependency=afterok:{}", needs.join(":")));
        }
        let job = sbatch(opts, &args, &task_script)?;
        for &i in members {
            element[i] = Some(format!("{job}_{}", i + 1));
        }
        submitted.push(Wave { job, tasks: numbers });
    }
    let render_script = dir.join("render.sh");
    write_script(&render_script, command, "", &cwd, opts)?;
    let mut args = vec![
        format!("--job-name=lt-{fig}-render"),
        format!("--output={}", logs.join(format!("{fig}-render-%j.log")).display()),
    ];
    if !submitted.is_empty() {
        args.push(format!(
            "--dependency=afterok:{}",
            submitted.iter().map(|w| w.job.clone()).collect::<Vec<_>>().join(":")
        ));
    }
    let render = sbatch(opts, &args, &render_script)?;
    let sub = Submission {
        submitted_at: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        waves: submitted,
        render,
    };
    let json = serde_json::to_string_pretty(&sub)?;
    lt_data::write_atomic(&record_path(out), json.as_bytes())?;
    Ok(sub)
}

/// One line per task: done, or its job's state; then the rendering job's.
pub fn status(labels: &[String], done: &[bool], out: &Path) -> Result<String> {
    let sub = last_submission(out)?;
    let live = match &sub {
        Some(s) => queue(&job_ids(s))?,
        None => Vec::new(),
    };
    let state_of = |id: &str| live.iter().find(|q| q.id == id).map(|q| (q.state.clone(), q.reason.clone()));
    let mut s = String::new();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for (i, label) in labels.iter().enumerate() {
        let job = sub
            .as_ref()
            .and_then(|s| s.waves.iter().find(|w| w.tasks.contains(&(i + 1))))
            .map(|w| format!("{}_{}", w.job, i + 1));
        let state = if done[i] {
            "done".to_string()
        } else {
            match job.as_deref().and_then(state_of) {
                Some((state, reason)) if state == "PENDING" && reason != "None" => {
                    format!("{state} ({reason}), job {}", job.as_deref().unwrap_or(""))
                }
                Some((state, _)) => format!("{state}, job {}", job.as_deref().unwrap_or("")),
                None => match &job {
                    Some(j) => format!(
                        "not done, not queued (job {j} ended: its log is in {})",
                        out.join("slurm").join("logs").display()
                    ),
                    None => "not done, not submitted".into(),
                },
            }
        };
        let kind = if done[i] {
            "done"
        } else if state.starts_with("not done") {
            "not done"
        } else {
            state.split([',', ' ']).next().unwrap_or("")
        };
        *counts.entry(kind.to_string()).or_default() += 1;
        let _ = writeln!(s, "  [{:>3}] {label:<60} {state}", i + 1);
    }
    match &sub {
        Some(sub) => {
            let render = state_of(&sub.render).map_or_else(
                || {
                    if out.join("data.csv").is_file() {
                        "finished".to_string()
                    } else {
                        "ended without the figure".to_string()
                    }
                },
                |(state, reason)| format!("{state} ({reason})"),
            );
            let _ = writeln!(s, "rendering: job {} {render}", sub.render);
        }
        None => {
            let _ = writeln!(s, "nothing submitted to Slurm for {} yet", out.display());
        }
    }
    let _ = writeln!(
        s,
        "{}; `--executor slurm` again queues what is not done",
        counts.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
    );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(todo: bool, needs: &[usize]) -> Node {
        Node { todo, needs: needs.to_vec() }
    }

    #[test]
    fn a_task_runs_one_wave_after_its_last_unfinished_need() {
        // 0: lottery (todo), 1: stability of 0, 2: interpolation of 1, 3: a lottery already done,
        // 4: a branch of 3 (its need is done: wave 0).
        let nodes = [node(true, &[]), node(true, &[0]), node(true, &[0, 1]), node(false, &[]), node(true, &[3])];
        assert_eq!(waves(&nodes), vec![vec![0, 4], vec![1], vec![2]]);
        assert!(waves(&[node(false, &[])]).is_empty());
    }
}
