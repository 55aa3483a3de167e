//! `--executor slurm`: a figure's unfinished tasks as Slurm batch jobs.
//!
//! Every task of the plan is one job that runs this binary with the same figure options and
//! `--task N` (N as the plan prints it). Tasks form a dependency graph (a branch, a stability
//! measurement or an interpolation needs its lottery run; an interpolation needs the data-order
//! copies), cut into waves: wave 0 holds the tasks that need nothing unfinished, wave w those whose
//! needs are all in earlier waves. Each wave is one job array (`--array=` the task numbers), held
//! back by `--dependency=afterok:` on exactly the array elements its tasks need, and a last job
//! renders the figure once every wave has succeeded. `--kill-on-invalid-dep=yes` cancels what can
//! no longer run after a failure, so the queue drains and a second submission (which queues only
//! what the store does not hold yet) starts clean.
//!
//! Jobs are safe to repeat and to run side by side: the store's per-job locks keep two workers
//! off the same training run, and a job that finds its work done exits at once. A job stopped by
//! SIGTERM (its time limit, preemption, `scancel`) checkpoints and exits 75; the batch script then
//! requeues it (with `--time`, Slurm sends that SIGTERM two minutes before the limit), and it
//! resumes from its checkpoint.
//!
//! Files: `OUT/slurm/` holds the batch scripts, `submission.json` (the job ids, for `--status`)
//! and `logs/` (one log per task and one for the rendering).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Serialize};

use super::INTERRUPTED;

/// Where a figure's jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Executor {
    /// One task after another in this process.
    #[default]
    Local,
    /// Submit the unfinished tasks to Slurm with `sbatch` and return.
    Slurm,
}

/// What a site's Slurm needs to know (passed through to `sbatch`).
#[derive(Debug, Clone, clap::Args)]
pub struct SlurmArgs {
    /// Slurm: the partition (`sbatch --partition`).
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm: the account to charge (`sbatch --account`).
    #[arg(long)]
    pub account: Option<String>,
    /// Slurm: each job's time limit (`sbatch --time`, e.g. 4:00:00). Two minutes before it a job
    /// checkpoints and requeues itself.
    #[arg(long)]
    pub time: Option<String>,
    /// Slurm: GPUs per job (`sbatch --gres=gpu:N`).
    #[arg(long)]
    pub gpus: Option<u32>,
    /// Slurm: CPUs per job (`sbatch --cpus-per-task`); training uses that many threads.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Slurm: one more `sbatch` argument, as it would be written (repeatable:
    /// `--sbatch-arg=--qos=long --sbatch-arg=--mem=8G`).
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Slurm: shell lines each job runs first (e.g. `module load cuda`), or `@FILE` to take them
    /// from a file.
    #[arg(long)]
    pub prologue: Option<String>,
}

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

/// `'text'` for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Runs a Slurm command and returns its standard output, or an error with its standard error.
fn slurm(program: &str, args: &[String]) -> Result<String> {
    let out = Command::new(program).args(args).output().with_context(|| {
        format!("running {program}: is Slurm installed here? (`--executor slurm` runs on a cluster's login node)")
    })?;
    if !out.status.success() {
        bail!("{program} {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The state of each queued job or array element, by id (`123` or `123_4`): (state, reason).
fn queue(jobs: &[String]) -> Result<Vec<(String, String, String)>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    // Jobs that ended long ago are unknown to squeue, which then fails for the list: ask one by one.
    let ask = |ids: &str| {
        slurm("squeue", &["-h".into(), "-r".into(), "-j".into(), ids.into(), "-o".into(), "%i|%T|%r".into()])
    };
    let text = match ask(&jobs.join(",")) {
        Ok(text) => text,
        Err(_) => jobs.iter().filter_map(|j| ask(j).ok()).collect::<Vec<_>>().join("\n"),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut parts = l.trim().splitn(3, '|');
            Some((parts.next()?.to_string(), parts.next()?.to_string(), parts.next().unwrap_or("").to_string()))
        })
        .collect())
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
                live.iter().map(|(id, state, _)| format!("{id} {state}")).collect::<Vec<_>>().join(", "),
                job_ids(&previous).join(" ")
            );
        }
    }
    let dir = out.join("slurm");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let prologue = match opts.prologue.as_deref() {
        Some(p) if p.starts_with('@') => std::fs::read_to_string(&p[1..]).with_context(|| format!("reading {}", &p[1..]))?,
        Some(p) => p.to_string(),
        None => String::new(),
    };
    let cwd = std::env::current_dir().context("the current directory")?;
    let command = command.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
    let script = |name: &str, task_arg: &str| -> Result<PathBuf> {
        let mut s = String::from("#!/bin/bash\n");
        let _ = writeln!(s, "# Written by `cargo xtask reproduce {fig} --executor slurm`; see xtask/src/reproduce/slurm.rs.");
        if !prologue.is_empty() {
            let _ = writeln!(s, "{}", prologue.trim_end());
        }
        let _ = writeln!(s, "export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-1}}\"");
        let _ = writeln!(s, "cd {} || exit 1", quote(&cwd.display().to_string()));
        // The task runs in the background so that the shell can pass on the SIGTERM that Slurm
        // sends the batch shell before a time limit; it checkpoints and exits 75.
        let _ = writeln!(s, "{command}{task_arg} &\nchild=$!");
        let _ = writeln!(s, "trap 'kill -TERM \"$child\" 2>/dev/null' TERM");
        let _ = writeln!(s, "wait \"$child\"; rc=$?");
        let _ = writeln!(s, "while kill -0 \"$child\" 2>/dev/null; do wait \"$child\"; rc=$?; done");
        let _ = writeln!(
            s,
            "if [ \"$rc\" -eq {INTERRUPTED} ]; then\n  # A time limit's early signal leaves the job RUNNING; `scancel` has already marked it otherwise.\n  state=$(squeue -h -j \"$SLURM_JOB_ID\" -o %T 2>/dev/null)\n  if [ \"$state\" = RUNNING ]; then\n    echo \"stopped with its checkpoint written: requeueing job $SLURM_JOB_ID\"\n    scontrol requeue \"$SLURM_JOB_ID\" || true\n  else\n    echo \"stopped with its checkpoint written (job $state): not requeued\"\n  fi\nfi"
        );
        let _ = writeln!(s, "exit \"$rc\"");
        let path = dir.join(name);
        lt_data::write_atomic(&path, s.as_bytes())?;
        Ok(path)
    };
    let mut common: Vec<String> = vec![
        "--parsable".into(),
        "--requeue".into(),
        "--open-mode=append".into(),
        "--kill-on-invalid-dep=yes".into(),
        format!("--cpus-per-task={}", opts.cpus),
    ];
    if let Some(p) = &opts.partition {
        common.push(format!("--partition={p}"));
    }
    if let Some(a) = &opts.account {
        common.push(format!("--account={a}"));
    }
    if let Some(t) = &opts.time {
        common.push(format!("--time={t}"));
        common.push("--signal=B:TERM@120".into());
    }
    if let Some(g) = opts.gpus {
        common.push(format!("--gres=gpu:{g}"));
    }
    common.extend(opts.sbatch_args.iter().cloned());
    let sbatch = |mut args: Vec<String>, script: &Path| -> Result<String> {
        let mut all = common.clone();
        all.append(&mut args);
        all.push(script.display().to_string());
        let id = slurm("sbatch", &all)?;
        // `--parsable` prints `id` or `id;cluster`.
        let id = id.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() {
            bail!("sbatch printed no job id");
        }
        Ok(id)
    };
    let task_script = script("task.sh", " --task \"$SLURM_ARRAY_TASK_ID\"")?;
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
        let job = sbatch(args, &task_script)?;
        for &i in members {
            element[i] = Some(format!("{job}_{}", i + 1));
        }
        submitted.push(Wave { job, tasks: numbers });
    }
    let render_script = script("render.sh", "")?;
    let mut args =
        vec![format!("--job-name=lt-{fig}-render"), format!("--output={}", logs.join(format!("{fig}-render-%j.log")).display())];
    if !submitted.is_empty() {
        args.push(format!("--dependency=afterok:{}", submitted.iter().map(|w| w.job.clone()).collect::<Vec<_>>().join(":")));
    }
    let render = sbatch(args, &render_script)?;
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
    let state_of = |id: &str| live.iter().find(|(j, _, _)| j == id).map(|(_, s, r)| (s.clone(), r.clone()));
    let mut s = String::new();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for (i, label) in labels.iter().enumerate() {
        let job = sub.as_ref().and_then(|s| s.waves.iter().find(|w| w.tasks.contains(&(i + 1)))).map(|w| format!("{}_{}", w.job, i + 1));
        let state = if done[i] {
            "done".to_string()
        } else {
            match job.as_deref().and_then(state_of) {
                Some((state, reason)) if state == "PENDING" && reason != "None" => format!("{state} ({reason}), job {}", job.as_deref().unwrap_or("")),
                Some((state, _)) => format!("{state}, job {}", job.as_deref().unwrap_or("")),
                None => match &job {
                    Some(j) => format!("not done, not queued (job {j} ended: its log is in {})", out.join("slurm").join("logs").display()),
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
                    if out.join("data.csv").is_file() { "finished".to_string() } else { "ended without the figure".to_string() }
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

    #[test]
    fn arguments_survive_the_shell() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
