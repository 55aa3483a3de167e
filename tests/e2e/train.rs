//! `lt train` on real Fashion-MNIST (the bundled sample where it is not installed:
//! `lt_data::testing`): a short run, and a run killed with SIGKILL and resumed.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::{Sandbox, stderr, stdout};

#[test]
fn a_short_lenet_run_learns_and_logs() {
    let sb = Sandbox::new();
    let out = sb.path().join("run");
    let fashion = lt_data::testing::fashion_mnist("a_short_lenet_run_learns_and_logs");
    let mut args =
        vec!["train", "--preset", "lenet", "--dataset", fashion.name, "--iters", "300it", "--eval-every", "100it"];
    args.extend(["--out", out.to_str().unwrap()]);
    let data_dir = fashion.data_dir_args();
    args.extend(data_dir.iter().map(String::as_str));
    let o = sb.lt(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("note: the paper trains this preset on mnist"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("iteration")).count(), 3, "{text}");
    let acc: f64 = text
        .lines()
        .last()
        .unwrap()
        .split("test accuracy ")
        .nth(1)
        .unwrap()
        .split('%')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(acc > 75.0, "{text}");
    for f in ["checkpoint.safetensors", "final.safetensors", "metrics.jsonl"] {
        assert!(out.join(f).is_file(), "{f}");
    }
}

#[test]
fn a_killed_run_resumes_and_ends_with_the_same_weights() {
    let sb = Sandbox::new();
    let fashion = lt_data::testing::fashion_mnist("a_killed_run_resumes_and_ends_with_the_same_weights");
    let examples = fashion.at_most(6000).to_string();
    let args = |dir: &str| -> Vec<String> {
        let mut v: Vec<String> = ["train", "--preset", "lenet", "--dataset", fashion.name, "--iters", "600it"]
            .iter()
            .chain(&["--eval-every", "50it", "--train-examples", &examples, "--out", dir])
            .map(|s| s.to_string())
            .collect();
        v.extend(fashion.data_dir_args());
        v
    };
    let whole = sb.path().join("whole");
    let o = sb.lt(&args(whole.to_str().unwrap()).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));

    let killed = sb.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lt"))
        .args(args(killed.to_str().unwrap()))
        .env("LT_CACHE_DIR", sb.path().join("cache"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has written a checkpoint and before it finishes.
    let start = Instant::now();
    while !killed.join("checkpoint.safetensors").exists() && start.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let o = sb.lt(&args(killed.to_str().unwrap()).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |dir: &std::path::Path| std::fs::read(dir.join("final.safetensors")).unwrap();
    assert!(stdout(&o).contains("resuming from the checkpoint"), "the second run did not resume: {}", stdout(&o));
    assert_eq!(read(&whole), read(&killed), "resumed run differs from the uninterrupted one");
    assert_eq!(
        std::fs::read_to_string(whole.join("metrics.jsonl")).unwrap().lines().count(),
        std::fs::read_to_string(killed.join("metrics.jsonl")).unwrap().lines().count()
    );
}

#[test]
fn a_shortened_run_says_when_the_presets_schedule_lies_beyond_it_and_takes_milestones() {
    let sb = Sandbox::new();
    let run = |extra: &[&str], dir: &str| {
        let out = sb.path().join(dir);
        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../../datasets");
        let mut args = vec!["train", "--preset", "resnet18-standard", "--dataset", "fashion-mnist-sample"];
        args.extend_from_slice(&["--data-dir", data]);
        args.extend_from_slice(&["--iters", "4it", "--batch", "8", "--eval-every", "2it", "--out"]);
        args.push(out.to_str().unwrap());
        args.extend_from_slice(extra);
        let o = sb.lt(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    let text = run(&[], "preset");
    assert!(text.contains("rate drops at iteration(s) 20000, 25000 lie beyond this run's 4"), "{text}");
    let text = run(&["--milestones", "2it"], "scaled");
    assert!(!text.contains("lie beyond"), "{text}");
    // The rate logged at iteration 2 is 0.1 x 0.1 (the evaluation after the drop).
    let lrs: Vec<&str> =
        text.lines().filter(|l| l.starts_with("iteration")).map(|l| l.split_whitespace().nth(3).unwrap()).collect();
    assert_eq!(lrs, ["1.00e-1", "1.00e-2"], "{text}");
    let o = sb.lt(&["train", "--preset", "lenet", "--milestones", "soon"]);
    assert!(!o.status.success() && stderr(&o).contains("invalid value 'soon' for '--milestones"), "{}", stderr(&o));
}

/// `--device`: a bad name is refused by the parser, and CUDA in a build without it says how to get
/// it before anything is written (a CUDA build on a machine without a GPU names the driver instead).
#[test]
fn the_device_flag_names_what_is_wrong() {
    let sb = Sandbox::new();
    let out = sb.path().join("run");
    let o = sb.lt(&["train", "--preset", "lenet", "--device", "tpu", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("write cpu, cuda or cuda:N"), "{}", stderr(&o));
    let o = sb.lt(&["lottery", "--preset", "lenet", "--device", "cuda:1", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let why = stderr(&o);
    if candle_core::utils::cuda_is_available() {
        assert!(why.contains("--device cuda:1"), "{why}");
    } else {
        assert!(why.contains("--features cuda"), "{why}");
    }
    assert!(!out.exists() || std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0) == 0, "{why}");
}
