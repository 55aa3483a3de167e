//! `lt-slurm` owns talking to Slurm: the site's options ([`SlurmArgs`], declared here so the two
//! binaries offer the same flags), a batch script around one command ([`write_script`]) that
//! passes Slurm's SIGTERM on to it and requeues the job when the command exits with
//! [`INTERRUPTED`] before a time limit, [`sbatch`], and what `squeue` says of submitted jobs
//! ([`queue`]).
//!
//! It does not know what a job computes, how jobs depend on each other (`xtask`'s figure plans do)
//! or how a command checkpoints (`lt-train`'s stop request). Nothing here prints.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The exit code of a command stopped by SIGTERM with its checkpoint written (EX_TEMPFAIL: run it
/// again and it resumes).
pub const INTERRUPTED: u8 = 75;

/// An error talking to Slurm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Slurm command could not be started.
    #[error("running {program}: {source} (is Slurm installed here? `--executor slurm` runs on a cluster's login node)")]
    Spawn {
        /// `sbatch`, `squeue`, ...
        program: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A Slurm command failed.
    #[error("{command} failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// What it said.
        stderr: String,
    },
    /// `sbatch --parsable` printed no job id.
    #[error("sbatch printed no job id (it said {0:?})")]
    NoJobId(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Writing a script failed.
    #[error(transparent)]
    Write(#[from] lt_data::Error),
}

/// Where a command's jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Executor {
    /// Here, in this process.
    #[default]
    Local,
    /// As Slurm jobs (`sbatch`); the command returns once they are queued.
    Slurm,
}

/// What a site's Slurm needs to know, passed through to `sbatch`.
#[derive(Debug, Clone, clap::Args)]
pub struct SlurmArgs {
    /// Where the work runs: here, or as Slurm jobs (`sbatch`; returns once they are queued).
    #[arg(long, value_enum, default_value = "local")]
    pub executor: Executor,
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
    /// Slurm: one more `sbatch` argument as it would be written, e.g.
    /// `--sbatch-arg=--dependency=afterok:123` (repeatable).
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    pub sbatch_args: Vec<String>,
    /// Slurm: shell lines each job runs first (e.g. `module load cuda`), or `@FILE` to take them
    /// from a file.
    #[arg(long)]
    pub prologue: Option<String>,
}

impl Default for SlurmArgs {
    fn default() -> Self {
        SlurmArgs {
            executor: Executor::Local,
            partition: None,
            account: None,
            time: None,
            gpus: None,
            cpus: 1,
            sbatch_args: Vec::new(),
            prologue: None,
        }
    }
}

impl SlurmArgs {
    /// The `sbatch` options every job of a submission shares.
    pub fn sbatch_options(&self) -> Vec<String> {
        let mut o: Vec<String> = vec![
            "--parsable".into(),
            "--requeue".into(),
            "--open-mode=append".into(),
            "--kill-on-invalid-dep=yes".into(),
            format!("--cpus-per-task={}", self.cpus),
        ];
        if let Some(p) = &self.partition {
            o.push(format!("--partition={p}"));
        }
        if let Some(a) = &self.account {
            o.push(format!("--account={a}"));
        }
        if let Some(t) = &self.time {
            o.push(format!("--time={t}"));
            // SIGTERM to the batch shell two minutes before the limit: time to checkpoint and requeue.
            o.push("--signal=B:TERM@120".into());
        }
        if let Some(g) = self.gpus {
            o.push(format!("--gres=gpu:{g}"));
        }
        o.extend(self.sbatch_args.iter().cloned());
        o
    }

    /// The prologue's lines (read from the file for `@FILE`).
    pub fn prologue_lines(&self) -> Result<String, Error> {
        match self.prologue.as_deref() {
            Some(p) if p.starts_with('@') => {
                std::fs::read_to_string(&p[1..]).map_err(|source| Error::Io { path: p[1..].into(), source })
            }
            Some(p) => Ok(p.to_string()),
            None => Ok(String::new()),
        }
    }
}

/// `'text'` for a POSIX shell.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Runs a Slurm command and returns its standard output.
pub fn slurm(program: &str, args: &[String]) -> Result<String, Error> {
    let out =
        Command::new(program).args(args).output().map_err(|source| Error::Spawn { program: program.into(), source })?;
    if !out.status.success() {
        return Err(Error::Failed {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes a batch script `path` that runs `command` (its words, quoted here) followed by `tail`
/// (shell text, e.g. ` --task "$SLURM_ARRAY_TASK_ID"`) in `cwd`, after `opts`' prologue, with as
/// many threads as CPUs. The command runs in the background so that the shell can pass on the
/// SIGTERM Slurm sends the batch shell before a time limit; when the command then exits with
/// [`INTERRUPTED`] and the job is still running, the script requeues it. After `scancel` the job
/// is no longer running and stays cancelled.
pub fn write_script(path: &Path, command: &[String], tail: &str, cwd: &Path, opts: &SlurmArgs) -> Result<(), Error> {
    let command = command.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ");
    let mut s = String::from("#!/bin/bash\n# Written by lt's Slurm executor (crates/lt-slurm).\n");
    let prologue = opts.prologue_lines()?;
    if !prologue.is_empty() {
        let _ = writeln!(s, "{}", prologue.trim_end());
    }
    let _ = writeln!(s, "export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-1}}\"");
    let _ = writeln!(s, "cd {} || exit 1", quote(&cwd.display().to_string()));
    let _ = writeln!(s, "{command}{tail} &\nchild=$!");
    let _ = writeln!(s, "trap 'kill -TERM \"$child\" 2>/dev/null' TERM");
    let _ = writeln!(s, "wait \"$child\"; rc=$?");
    let _ = writeln!(s, "while kill -0 \"$child\" 2>/dev/null; do wait \"$child\"; rc=$?; done");
    let _ = writeln!(
        s,
        r#"if [ "$rc" -eq {INTERRUPTED} ]; then
  # A time limit's early signal leaves the job RUNNING; `scancel` has already marked it otherwise.
  state=$(squeue -h -j "$SLURM_JOB_ID" -o %T 2>/dev/null)
  if [ "$state" = RUNNING ]; then
    echo "stopped with its checkpoint written: requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID" || true
  else
    echo "stopped with its checkpoint written (job $state): not requeued"
  fi
fi
exit "$rc""#
    );
    lt_data::write_atomic(path, s.as_bytes())?;
    Ok(())
}

/// Submits `script` with `opts`' shared options and `args`; returns the job id.
pub fn sbatch(opts: &SlurmArgs, args: &[String], script: &Path) -> Result<String, Error> {
    let mut all = opts.sbatch_options();
    all.extend(args.iter().cloned());
    all.push(script.display().to_string());
    let said = slurm("sbatch", &all)?;
    // `--parsable` prints `id` or `id;cluster`.
    let id = said.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(Error::NoJobId(said));
    }
    Ok(id)
}

/// A queued or running job (or array element) as `squeue` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// `123`, or `123_4` for an array element.
    pub id: String,
    /// `PENDING`, `RUNNING`, ...
    pub state: String,
    /// Why it is pending (`Dependency`, `BeginTime`, `None`).
    pub reason: String,
}

/// What `squeue` says of `jobs` (ids of jobs or arrays); jobs that have ended are absent.
pub fn queue(jobs: &[String]) -> Result<Vec<Queued>, Error> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let ask = |ids: &str| slurm("squeue", &["-h", "-r", "-j", ids, "-o", "%i|%T|%r"].map(String::from));
    // squeue refuses a whole list when one id of it is long forgotten: ask one by one then.
    let text = match ask(&jobs.join(",")) {
        Ok(text) => text,
        Err(Error::Spawn { program, source }) => return Err(Error::Spawn { program, source }),
        Err(_) => jobs.iter().filter_map(|j| ask(j).ok()).collect::<Vec<_>>().join("\n"),
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut parts = l.trim().splitn(3, '|');
            Some(Queued {
                id: parts.next()?.to_string(),
                state: parts.next()?.to_string(),
                reason: parts.next().unwrap_or("").to_string(),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use super::*;

    #[test]
    fn arguments_survive_the_shell() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn a_script_runs_its_command_and_passes_on_its_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("job.sh");
        let command =
            ["sh".to_string(), "-c".into(), "echo \"ran in $(pwd) with $RAYON_NUM_THREADS: $0\"; exit 3".into()];
        let opts = SlurmArgs { prologue: Some("echo prologue".into()), ..SlurmArgs::default() };
        write_script(&script, &command, " 'it''s'", dir.path(), &opts).unwrap();
        let o = Command::new("bash").arg(&script).env("SLURM_CPUS_PER_TASK", "4").output().unwrap();
        let said = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(3), "{said}");
        assert!(said.starts_with("prologue\n"), "{said}");
        assert!(said.contains(&format!("ran in {} with 4: its", dir.path().display())), "{said}");
    }

    #[test]
    fn site_options_reach_sbatch() {
        let opts = SlurmArgs {
            time: Some("1:00:00".into()),
            gpus: Some(2),
            partition: Some("gpu".into()),
            sbatch_args: vec!["--qos=long".into()],
            cpus: 8,
            ..SlurmArgs::default()
        };
        let o = opts.sbatch_options();
        for want in [
            "--time=1:00:00",
            "--signal=B:TERM@120",
            "--gres=gpu:2",
            "--partition=gpu",
            "--qos=long",
            "--cpus-per-task=8",
        ] {
            assert!(o.iter().any(|x| x == want), "{want} missing from {o:?}");
        }
        assert!(SlurmArgs::default().sbatch_options().iter().all(|x| !x.starts_with("--signal")));
    }
}
