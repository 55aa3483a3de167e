//! `cargo xtask reproduce --executor slurm` against a real Slurm: the one-node cluster of
//! `xtask/slurm/local-cluster.sh` (`.ci/run` installs and starts it and sets `LT_SLURM=required`).
//! The smoke Figure 5 of ResNet-20 submitted as jobs gives a `data.csv` identical byte for byte to
//! the local executor's (both with one thread: the thread count changes the order of some sums); a
//! job cancelled while it trains leaves the figure unfinished, and submitting again completes it
//! with the same results.
//!
//! Where no cluster is reachable (`SLURM_CONF` unset or `sinfo` failing) the tests say so and pass,
//! unless `LT_SLURM=required`.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

#[path = "../../tests/support/slurm.rs"]
mod support;
use std::time::{Duration, Instant};
use support::cluster;

/// The cluster's slots are shared: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `cargo xtask reproduce fig5 --scale smoke --only resnet18-standard` on `store` and `out`, one
/// thread, with `extra` options.
fn fig5(store: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["reproduce", "fig5", "--scale", "smoke", "--only", "resnet18-standard"])
        .args(["--store", store.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(extra)
        .env_remove("LT_DATA_DIR")
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap()
}

/// The local executor's `data.csv` (computed once per test binary).
fn local_csv() -> &'static str {
    static CSV: OnceLock<String> = OnceLock::new();
    CSV.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let o = fig5(&dir.path().join("store"), &out, &[]);
        assert!(o.status.success(), "{}\n{}", text(&o.stdout), text(&o.stderr));
        std::fs::read_to_string(out.join("data.csv")).unwrap()
    })
}

/// The job ids of the last submission to `out`.
fn submitted_jobs(out: &Path) -> Vec<String> {
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("slurm/submission.json")).unwrap()).unwrap();
    let mut ids: Vec<String> =
        record["waves"].as_array().unwrap().iter().map(|w| w["job"].as_str().unwrap().to_string()).collect();
    ids.push(record["render"].as_str().unwrap().to_string());
    ids
}

/// The queue's lines for `jobs` (`id state`), array elements one per line.
fn queued(jobs: &[String]) -> Vec<String> {
    let o = Command::new("squeue").args(["-h", "-r", "-o", "%i %T", "-j", &jobs.join(",")]).output().unwrap();
    text(&o.stdout).lines().map(str::to_string).collect()
}

/// Waits until no job of the last submission to `out` is queued or running.
fn drained(out: &Path, store: &Path) {
    let jobs = submitted_jobs(out);
    let start = Instant::now();
    while !queued(&jobs).is_empty() {
        if start.elapsed() > Duration::from_secs(900) {
            let status = fig5(store, out, &["--status"]);
            panic!("Slurm jobs still queued after 15 min: {:?}\n{}", queued(&jobs), text(&status.stdout));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn submit(store: &Path, out: &Path) -> String {
    let o = fig5(store, out, &["--executor", "slurm"]);
    assert!(o.status.success(), "{}\n{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

#[test]
fn the_slurm_executor_gives_the_local_executors_results() {
    if !cluster("the_slurm_executor_gives_the_local_executors_results") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let expected = local_csv();
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("store"), dir.path().join("out"));
    // The dense network needs nothing (wave 0); IMP reset and rewound need it (wave 1); the
    // reinit branch needs the rewound run (wave 2).
    let said = submit(&store, &out);
    assert!(said.contains("submitted 4 task(s) in 3 job array(s)"), "{said}");
    // A second submission while the first is queued is refused with what to do.
    let o = fig5(&store, &out, &["--executor", "slurm"]);
    assert!(!o.status.success() && text(&o.stderr).contains("still queued or running"), "{}", text(&o.stderr));
    drained(&out, &store);
    let csv = std::fs::read_to_string(out.join("data.csv")).unwrap();
    assert_eq!(csv, expected, "Slurm's figure differs from the local executor's");
    let status = text(&fig5(&store, &out, &["--status"]).stdout);
    assert!(status.contains("4 done") && status.contains("finished"), "{status}");
    // Everything is done: submitting again queues only the rendering.
    let said = submit(&store, &out);
    assert!(said.contains("submitted 0 task(s) in 0 job array(s)"), "{said}");
    drained(&out, &store);
    assert_eq!(std::fs::read_to_string(out.join("data.csv")).unwrap(), expected);
}

#[test]
fn a_job_cancelled_while_training_is_resubmitted_and_the_figure_completes_the_same() {
    if !cluster("a_job_cancelled_while_training_is_resubmitted_and_the_figure_completes_the_same") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let expected = local_csv();
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("store"), dir.path().join("out"));
    submit(&store, &out);
    // The first array element that has started training.
    let logs = out.join("slurm/logs");
    let start = Instant::now();
    let victim = loop {
        assert!(start.elapsed() < Duration::from_secs(600), "no job started training");
        let running = queued(&submitted_jobs(&out)).into_iter().find(|l| l.ends_with(" RUNNING"));
        if let Some(line) = running {
            let id = line.split(' ').next().unwrap().to_string();
            let index = id.rsplit('_').next().unwrap().to_string();
            let training = std::fs::read_dir(&logs).unwrap().flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.contains(&format!("-task-{index}-"))
                    && std::fs::read_to_string(e.path()).unwrap_or_default().contains("training iterations")
            });
            if training {
                break id;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let o = Command::new("scancel").arg(&victim).output().unwrap();
    assert!(o.status.success(), "scancel {victim}: {}", text(&o.stderr));
    drained(&out, &store);
    // What needed the cancelled job was cancelled with it (--kill-on-invalid-dep), the rendering too.
    assert!(!out.join("data.csv").exists(), "the figure was rendered although job {victim} was cancelled");
    let status = text(&fig5(&store, &out, &["--status"]).stdout);
    assert!(status.contains("not done"), "{status}");
    let said = submit(&store, &out);
    assert!(said.contains("submitted") && !said.contains("submitted 0 task(s)"), "{said}");
    drained(&out, &store);
    let csv = std::fs::read_to_string(out.join("data.csv")).unwrap_or_default();
    assert_eq!(csv, expected, "the resubmitted figure differs from the local executor's");
}
