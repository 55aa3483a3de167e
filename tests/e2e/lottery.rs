//! `lt lottery`, `lt branch`, `lt stability`, `lt plan` and `lt runs` on real Fashion-MNIST (the
//! bundled sample where it is not installed: `lt_data::testing`) at a tiny scale, a lottery run
//! killed with SIGKILL mid-level, and bad requests.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Sandbox, stderr, stdout};

fn run_args(store: &str, extra: &[&str]) -> Vec<String> {
    let fashion = lt_data::testing::fashion_mnist("lt lottery's end-to-end tests");
    let examples = fashion.at_most(3000).to_string();
    let mut v: Vec<String> = ["--preset", "lenet", "--dataset", fashion.name, "--iters", "200it", "--rewind", "20it"]
        .iter()
        .chain(&["--train-examples", &examples, "--eval-every", "20it", "--out", store])
        .map(|s| s.to_string())
        .collect();
    v.extend(fashion.data_dir_args());
    // A flag in `extra` replaces the default one.
    for flag in extra.iter().filter(|f| f.starts_with("--")) {
        if let Some(i) = v.iter().position(|a| a == flag) {
            v.drain(i..i + 2);
        }
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn lt(sb: &Sandbox, command: &[&str], store: &str, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    args.extend(run_args(store, extra));
    sb.lt(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn lottery_branches_stability_and_runs_work_through_the_binary() {
    let sb = Sandbox::new();
    let store = sb.path().join("store");
    let store = store.to_str().unwrap();
    let o = lt(&sb, &["lottery"], store, &["--levels", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("level  weights left  test accuracy"), "{text}");
    if lt_data::testing::fashion_mnist("lottery_branches_stability_and_runs_work_through_the_binary").full {
        assert!(text.contains("64.06%"), "{text}");
    }

    let o = lt(&sb, &["stability", "data-order"], store, &["--level", "2", "--samples", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("stability to data order at level 2") && text.contains("random / IMP: L2"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("imp ")) && text.lines().any(|l| l.starts_with("random ")), "{text}");

    let o = lt(&sb, &["branch", "reinit"], store, &["--levels", "1-2"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = sb.lt(&["runs", "export", "--out", store]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = stdout(&o);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("run,preset,model,dataset,replicate,rewind"), "{csv}");
    // 3 lottery levels, 2 reinit levels, 1 random-prune level (the stability control).
    assert_eq!(lines.len(), 1 + 3 + 2 + 1, "{csv}");

    let o = lt(&sb, &["plan"], store, &["--levels", "3"]);
    let text = stdout(&o);
    assert!(text.contains("3 of 4 jobs done; 180 iterations to train"), "{text}");

    // Bad requests: clear errors, nothing lost.
    let o = lt(&sb, &["stability", "pruning"], store, &["--level", "5"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("level 5 of run") && stderr(&o).contains("levels 0-2 are"), "{}", stderr(&o));
    let o = lt(&sb, &["lottery"], store, &["--levels", "1", "--rewind", "500it"]);
    assert!(
        stderr(&o).contains("rewind point (iteration 500) is past the end of training (iteration 200)"),
        "{}",
        stderr(&o)
    );
    let o = lt(&sb, &["lottery"], store, &["--fraction", "1.5"]);
    assert!(stderr(&o).contains("fraction must be in (0, 1), got 1.5"), "{}", stderr(&o));
    let o = lt(&sb, &["stability", "pruning"], store, &["--level", "1", "--replicate", "7"]);
    assert!(stderr(&o).contains("no lottery run with these options"), "{}", stderr(&o));
    let o = lt(&sb, &["branch", "grow"], store, &[]);
    assert!(stderr(&o).contains("unknown branch \"grow\""), "{}", stderr(&o));
    let o = sb.lt(&["runs", "list", "--out", store]);
    assert!(stdout(&o).contains("levels 0-2 done"), "{}", stdout(&o));
}

#[test]
fn a_lottery_run_killed_mid_level_resumes_to_the_same_results() {
    let sb = Sandbox::new();
    let whole = sb.path().join("whole");
    let o = lt(&sb, &["lottery"], whole.to_str().unwrap(), &["--levels", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let killed = sb.path().join("killed");
    let mut args = vec!["lottery".to_string()];
    args.extend(run_args(killed.to_str().unwrap(), &["--levels", "2"]));
    let mut child = Command::new(env!("CARGO_BIN_EXE_lt"))
        .args(&args)
        .env("LT_CACHE_DIR", sb.path().join("cache"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it in the middle of level 1: after its first checkpoint, before it finishes.
    let level1 = |store: &std::path::Path| {
        let runs = store.join("lottery");
        std::fs::read_dir(&runs).ok()?.next()?.ok().map(|e| e.path())
    };
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) {
        if let Some(run) = level1(&killed)
            && run.join("level_1/checkpoint.safetensors").exists()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let run_killed = level1(&killed).unwrap();
    assert!(!run_killed.join("level_2/done.json").exists(), "the run finished before it was killed");

    let o = sb.lt(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("level 0 (dense): done before"), "{}", stdout(&o));
    let run_whole = level1(&whole).unwrap();
    assert_eq!(run_whole.file_name(), run_killed.file_name(), "same hyperparameters, same folder name");
    for level in 0..=2 {
        let read = |run: &std::path::Path, f: &str| std::fs::read(run.join(format!("level_{level}/{f}"))).unwrap();
        assert_eq!(read(&run_whole, "final.safetensors"), read(&run_killed, "final.safetensors"), "level {level}");
        assert_eq!(read(&run_whole, "mask.safetensors"), read(&run_killed, "mask.safetensors"), "level {level}");
    }
}

/// The finals and masks of levels 0-2 of the one run in `store`.
fn levels(store: &std::path::Path) -> Vec<Vec<u8>> {
    let run = std::fs::read_dir(store.join("lottery")).unwrap().next().unwrap().unwrap().path();
    (0..=2)
        .flat_map(|l| ["final.safetensors", "mask.safetensors"].map(|f| run.join(format!("level_{l}/{f}"))))
        .map(|p| std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

#[test]
fn a_lottery_run_stopped_by_sigterm_checkpoints_exits_75_and_resumes_to_the_same_results() {
    let sb = Sandbox::new();
    let whole = sb.path().join("whole");
    let o = lt(&sb, &["lottery"], whole.to_str().unwrap(), &["--levels", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let stopped = sb.path().join("stopped");
    let mut args = vec!["lottery".to_string()];
    args.extend(run_args(stopped.to_str().unwrap(), &["--levels", "2"]));
    let child = Command::new(env!("CARGO_BIN_EXE_lt"))
        .args(&args)
        .env("LT_CACHE_DIR", sb.path().join("cache"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // SIGTERM in level 1, as Slurm sends it at a time limit or on `scancel`.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) {
        let level1 = std::fs::read_dir(stopped.join("lottery"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
            .is_some_and(|e| e.path().join("level_1/checkpoint.safetensors").exists());
        if level1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert!(err.contains("stopped at iteration") && err.contains("resumes from it"), "{err}");

    let o = sb.lt(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let resumed = stdout(&o).lines().any(|l| l.starts_with("level 1 (") && l.contains(": resuming at iteration"));
    assert!(resumed, "{}", stdout(&o));
    assert_eq!(levels(&whole), levels(&stopped), "the stopped and resumed run differs from the whole one");
}

#[test]
fn two_workers_on_one_store_never_train_the_same_job_twice() {
    let sb = Sandbox::new();
    let whole = sb.path().join("whole");
    let o = lt(&sb, &["lottery"], whole.to_str().unwrap(), &["--levels", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let shared = sb.path().join("shared");
    let mut args = vec!["lottery".to_string()];
    args.extend(run_args(shared.to_str().unwrap(), &["--levels", "2"]));
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_lt"))
            .args(&args)
            .env("LT_CACHE_DIR", sb.path().join("cache"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{}\n{}", stderr(&a), stderr(&b));
    let said = format!("{}{}", stdout(&a), stdout(&b));
    // Three jobs (levels 0, 1, 2), each started by exactly one of the two; the other waited for it
    // or found it done.
    for level in ["level 0 (", "level 1 (", "level 2 ("] {
        let started = said.lines().filter(|l| l.starts_with(level) && l.contains(": starting at iteration")).count();
        assert_eq!(started, 1, "{level} was started {started} times:\n{said}");
    }
    assert_eq!(levels(&whole), levels(&shared), "two workers' results differ from one worker's");
}

#[test]
fn lt_lottery_runs_as_a_slurm_job_with_the_same_results() {
    if !crate::slurm::cluster("lt_lottery_runs_as_a_slurm_job_with_the_same_results") {
        return;
    }
    let sb = Sandbox::new();
    let run = |store: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["lottery".to_string()];
        args.extend(run_args(store.to_str().unwrap(), &["--levels", "2"]));
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(env!("CARGO_BIN_EXE_lt"))
            .args(&args)
            .env("LT_CACHE_DIR", sb.path().join("cache"))
            .env_remove("LT_DATA_DIR")
            .env("RAYON_NUM_THREADS", "1")
            .output()
            .unwrap()
    };
    let here = sb.path().join("here");
    let o = run(&here, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let queued = sb.path().join("queued");
    let o = run(&queued, &["--executor", "slurm", "--cpus", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let said = stdout(&o);
    let job = said.split_whitespace().nth(2).unwrap().trim_end_matches(':').to_string();
    assert!(job.chars().all(|c| c.is_ascii_digit()), "{said}");
    let start = Instant::now();
    loop {
        let q = Command::new("squeue").args(["-h", "-j", &job]).output().unwrap();
        if String::from_utf8_lossy(&q.stdout).trim().is_empty() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(600), "job {job} still queued after 10 min");
        std::thread::sleep(Duration::from_millis(300));
    }
    let log = std::fs::read_to_string(queued.join(format!("slurm/logs/lt-lottery-{job}.log"))).unwrap();
    assert!(log.contains("level 2 ("), "{log}");
    assert_eq!(levels(&here), levels(&queued), "the Slurm job's run differs from the local one:\n{log}");
}
