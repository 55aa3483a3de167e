//! `cargo xtask reproduce` end to end at the smoke scale on the bundled sample dataset: the
//! figure's files exist, the CSV has the expected columns and rows, the report names the scale and
//! the dataset, `cargo xtask render` re-draws the same figure from `data.json`, a second
//! invocation reuses every finished job, and fig4 has every rewind point and
//! takes the k = 0 runs of fig3 from the store.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

use std::process::Command;

fn xtask(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).env_remove("LT_DATA_DIR").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `cargo xtask reproduce FIG --scale smoke --only NET --store STORE --out OUT`.
fn smoke(fig: &str, net: &str, store: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    let (store, out) = (store.to_str().unwrap(), out.to_str().unwrap());
    xtask(&["reproduce", fig, "--scale", "smoke", "--only", net, "--store", store, "--out", out])
}

#[test]
fn fig5_fig3_and_fig4_smoke_runs_write_figure_data_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out5 = dir.path().join("fig5");
    let o = smoke("fig5", "resnet18-standard", &store, &out5);
    assert!(o.status.success(), "{}\n{}", text(&o.stdout), text(&o.stderr));
    // One dense network for both curves: the run reset to 0 trains it first and saves W_k too,
    // so the run rewound to k borrows it.
    let stdout = text(&o.stdout);
    assert_eq!(stdout.matches("level 0 (dense): training").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("level 0 (dense): the same training as run resnet18").count(), 1, "{stdout}");
    for f in ["figure.svg", "figure.png", "data.csv", "data.json", "report.md"] {
        assert!(out5.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(out5.join("data.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "figure,network,series,replicate,rewind,level,weights_remaining,metric,value");
    // IMP reset and rewound at levels 0-2, the reinit control at levels 1-2 (its level 0 would be
    // just another dense network), 1 replicate.
    assert_eq!(lines.len(), 1 + 3 + 3 + 2, "{csv}");
    assert!(lines[1..].iter().all(|l| l.split(',').count() == 9), "{csv}");
    let report = std::fs::read_to_string(out5.join("report.md")).unwrap();
    assert!(report.contains("scale: **smoke**") && report.contains("dataset **fashion-mnist-sample**"), "{report}");
    assert!(report.contains("SMOKE RUN"));
    assert!(std::fs::read_to_string(out5.join("figure.svg")).unwrap().contains("SMOKE RUN"));

    // `cargo xtask render` re-draws the figure from data.json alone, with the same series.
    let svg = std::fs::read_to_string(out5.join("figure.svg")).unwrap();
    std::fs::remove_file(out5.join("figure.png")).unwrap();
    std::fs::write(out5.join("figure.svg"), "").unwrap();
    let o = xtask(&["render", out5.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(std::fs::read_to_string(out5.join("figure.svg")).unwrap(), svg, "the same figure");
    assert!(out5.join("figure.png").is_file());
    let o = xtask(&["render", dir.path().join("nothing-here").to_str().unwrap()]);
    assert!(!o.status.success() && text(&o.stderr).contains("data.json"), "{}", text(&o.stderr));

    // Everything is in the store now: a second run trains nothing.
    let o = smoke("fig5", "resnet18-standard", &store, &out5);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("\n0 iterations to train"), "{}", text(&o.stdout));
    assert!(!text(&o.stdout).contains("training iterations"), "{}", text(&o.stdout));

    let out3 = dir.path().join("fig3");
    let o = smoke("fig3", "lenet", &store, &out3);
    assert!(o.status.success(), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let csv = std::fs::read_to_string(out3.join("data.csv")).unwrap();
    for metric in ["data-order-l2", "data-order-angle", "pruning-l2", "accuracy-mean"] {
        for sub in ["imp", "random"] {
            assert!(
                csv.lines().any(|l| l.contains(&format!(",{sub},")) && l.contains(metric)),
                "{sub} {metric}: {csv}"
            );
        }
    }
    let report = std::fs::read_to_string(out3.join("report.md")).unwrap();
    assert!(report.contains("| lenet |") && report.contains("20.7±0.6"), "{report}");

    // Figure 4: stability and accuracy at each rewind point; k = 0 comes from fig3's runs.
    let out4 = dir.path().join("fig4");
    let o = smoke("fig4", "lenet", &store, &out4);
    assert!(o.status.success(), "{}\n{}", text(&o.stdout), text(&o.stderr));
    for f in ["figure.svg", "figure.png", "data.csv", "data.json", "report.md"] {
        assert!(out4.join(f).is_file(), "fig4: {f} missing");
    }
    let csv = std::fs::read_to_string(out4.join("data.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    // Columns: figure, network, series, replicate, rewind, level, weights_remaining, metric, value.
    let mut rewinds: Vec<&str> = rows.iter().map(|r| r[4]).collect();
    rewinds.sort_by_key(|k| k.parse::<u64>().unwrap());
    rewinds.dedup();
    assert_eq!(rewinds, ["0", "1", "2", "4"], "smoke rewinds to 0, 1, 2 and 4 of T = 100: {csv}");
    for k in &rewinds {
        for sub in ["imp", "random"] {
            for metric in ["data-order-l2", "pruning-l2", "accuracy-mean"] {
                let hit = rows.iter().find(|r| r[4] == *k && r[2] == sub && r[7] == metric);
                let value: f64 = hit.unwrap_or_else(|| panic!("k={k} {sub} {metric}: {csv}"))[8].parse().unwrap();
                assert!(value.is_finite() && value >= 0.0, "k={k} {sub} {metric} = {value}");
            }
        }
    }
    // Nothing at k = 0 is trained again: fig3 left those runs and reports in the store.
    let stdout = text(&o.stdout);
    let k0: Vec<&str> =
        stdout.lines().filter(|l| l.contains("lenet r0 k=0:") && l.contains("iterations to train")).collect();
    // The dense network the rewind points share, the lottery run, data-order and pruning
    // stability, and the barrier between copies 0 and 1.
    assert_eq!(k0.len(), 5, "{stdout}");
    assert!(k0.iter().all(|l| l.ends_with(" 0 iterations to train")), "{stdout}");
    // The sparse instability: the error barrier of the IMP subnetwork at every rewind point.
    for k in &rewinds {
        let hit = rows.iter().find(|r| r[4] == *k && r[2] == "imp" && r[7] == "data-order-barrier");
        let value: f64 = hit.unwrap_or_else(|| panic!("k={k} barrier: {csv}"))[8].parse().unwrap();
        assert!((-1.0..=1.0).contains(&value), "k={k} barrier = {value}");
    }
    let report = std::fs::read_to_string(out4.join("report.md")).unwrap();
    assert!(report.contains("scale: **smoke**"), "{report}");
}

#[test]
fn instability_smoke_run_reports_barriers_and_the_onset() {
    let dir = tempfile::tempdir().unwrap();
    let (store, out) = (dir.path().join("store"), dir.path().join("instability"));
    let o = smoke("instability", "resnet18-standard", &store, &out);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", text(&o.stderr));
    for f in ["figure.svg", "figure.png", "data.csv", "data.json", "report.md"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let csv = std::fs::read_to_string(out.join("data.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "figure,network,series,replicate,rewind,level,weights_remaining,metric,value");
    let rows: Vec<Vec<&str>> = lines[1..].iter().map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == 9), "{csv}");
    // Smoke: k = 0, 1, 2, 5 of T = 10; per k the barriers, the distance, both accuracies of both
    // ends and the error at each of the 3 points of the line.
    for k in ["0", "1", "2", "5"] {
        for metric in [
            "barrier-test",
            "barrier-train",
            "l2",
            "angle",
            "accuracy-running-bn-0",
            "accuracy-recomputed-bn-1",
            "test-error-at-0.000",
            "test-error-at-0.500",
            "train-error-at-1.000",
        ] {
            let hit = rows.iter().find(|r| r[4] == k && r[7] == metric);
            let value: f64 = hit.unwrap_or_else(|| panic!("k={k} {metric}: {csv}"))[8].parse().unwrap();
            assert!(value.is_finite(), "k={k} {metric} = {value}");
        }
    }
    // The barrier is the largest rise of the line's error above the mean of its ends.
    for k in ["0", "5"] {
        let get = |m: &str| -> f64 { rows.iter().find(|r| r[4] == k && r[7] == m).unwrap()[8].parse().unwrap() };
        let (e0, e5, e1) = (get("test-error-at-0.000"), get("test-error-at-0.500"), get("test-error-at-1.000"));
        let ends = (e0 + e1) / 2.0;
        let barrier = (e0 - ends).max(e5 - ends).max(e1 - ends);
        assert!((get("barrier-test") - barrier).abs() < 1e-9, "k={k}: {csv}");
    }
    // The onset k* is printed and in the report, found or not.
    let onset = |s: &str| s.contains("onset of stability k* =") || s.contains("no onset of stability in the grid");
    assert!(onset(&stdout), "{stdout}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(onset(&report) && report.contains("running BN") && report.contains("recomputed BN"), "{report}");
    // The copies are jobs of the store: a second run trains and measures nothing.
    let o = smoke("instability", "resnet18-standard", &store, &out);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("\n0 iterations to train; estimated 0 s"), "{}", text(&o.stdout));
}

#[test]
fn unknown_figures_networks_and_help() {
    let o = xtask(&["reproduce", "fig2"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("unknown figure \"fig2\"") && text(&o.stderr).contains("fig12"),
        "{}",
        text(&o.stderr)
    );
    // The ImageNet figures have no small scale, and say why; their help gives GPU time at paper scale.
    let o = xtask(&["reproduce", "fig7", "--dry-run"]);
    assert!(!o.status.success() && text(&o.stderr).contains("no small scale"), "{}", text(&o.stderr));
    let o = xtask(&["reproduce", "fig7", "--scale", "medium", "--dry-run"]);
    assert!(!o.status.success() && text(&o.stderr).contains("no medium scale"), "{}", text(&o.stderr));
    for fig in ["fig6", "fig7", "fig8", "fig12"] {
        let o = xtask(&["reproduce", fig, "--help"]);
        let help = text(&o.stdout);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(
            help.contains("  smoke ") && help.contains("  small  not defined") && help.contains("  medium not defined"),
            "{help}"
        );
        for net in ["resnet50", "inception-v3", "squeezenet"] {
            assert!(help.lines().any(|l| l.contains(&format!("{net}: T = ")) && l.contains("GPU-hours")), "{help}");
        }
    }
    let o = xtask(&["reproduce", "fig5", "--only", "lenet", "--dry-run"]);
    assert!(text(&o.stderr).contains("fig5 has no network \"lenet\""), "{}", text(&o.stderr));
    // --rewind narrows a rewind grid, and says what is wrong with a bad one.
    let small = ["--scale", "small", "--dataset", "fashion-mnist-sample", "--only", "resnet18-standard"];
    let o = xtask(&[&["reproduce", "fig4"][..], &small, &["--rewind", "50,0", "--dry-run"]].concat());
    let plan = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(plan.contains("r0 k=0:") && plan.contains("r0 k=50:") && !plan.contains("k=25:"), "{plan}");
    // --levels deepens fig5's curves.
    let o = xtask(&[&["reproduce", "fig5"][..], &small, &["--levels", "6", "--dry-run"]].concat());
    let plan = text(&o.stdout);
    assert!(plan.contains("IMP levels 0-6") && plan.contains("reinit levels 1-6"), "{plan}");
    for (args, says) in [
        (&["fig4", "--rewind", "500"][..], "--rewind 500 is not before the end of training"),
        (&["fig5", "--rewind", "0,50"], "fig5 rewinds to one point"),
        (&["fig3", "--rewind", "50"], "fig3 has no rewind point to choose"),
        (&["fig4", "--levels", "6"], "fig4 measures one sparsity"),
    ] {
        let mut all = vec!["reproduce"];
        all.extend_from_slice(args);
        all.extend(small);
        all.push("--dry-run");
        let o = xtask(&all);
        assert!(!o.status.success() && text(&o.stderr).contains(says), "{args:?}: {}", text(&o.stderr));
    }
    // Every subcommand answers --help on stdout with exit code 0.
    for args in [
        &["--help"][..],
        &["reproduce", "--help"],
        &["bench", "--help"],
        &["bench", "train", "--help"],
        &["bench", "conv", "--help"],
        &["bench", "sparse", "--help"],
        &["bench", "data", "--help"],
        &["fixtures", "--help"],
    ] {
        let o = xtask(args);
        assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
        assert!(text(&o.stdout).to_lowercase().contains("usage"), "{args:?}: {}", text(&o.stdout));
    }
    let o = xtask(&["reproduce", "fig5", "--help"]);
    let help = text(&o.stdout);
    for scale in ["smoke", "small", "medium", "paper"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(scale) && l.contains("about")), "{help}");
    }
}

/// The ImageNet figures at the smoke scale, on the miniature ImageNet xtask generates (into
/// `LT_CACHE_DIR`): fig6's table of the three networks with top-1 and top-5; fig7 (one-shot to
/// SqueezeNet's 50% at two rewind points, with stability and the error barrier), whose runs fig12
/// measures again as angles without training; fig8's one-shot curves, where the runs at the second
/// density and the runs reset to 0 borrow the first run's dense level.
#[test]
fn imagenet_figures_smoke_runs_on_the_generated_miniature() {
    let dir = tempfile::tempdir().unwrap();
    let (store, cache) = (dir.path().join("store"), dir.path().join("cache"));
    let run = |fig: &str, only: Option<&str>, store: &std::path::Path| {
        let out = dir.path().join(fig);
        let mut args = vec!["reproduce", fig, "--scale", "smoke", "--store", store.to_str().unwrap()];
        args.extend(["--out", out.to_str().unwrap()]);
        if let Some(net) = only {
            args.extend(["--only", net]);
        }
        let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(&args)
            .env_remove("LT_DATA_DIR")
            .env("LT_CACHE_DIR", &cache)
            .output()
            .unwrap();
        assert!(o.status.success(), "{fig}: {}\n{}", text(&o.stdout), text(&o.stderr));
        let csv = std::fs::read_to_string(out.join("data.csv")).unwrap();
        let report = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(report.contains("dataset **imagenet-miniature**") && report.contains("SMOKE RUN"), "{report}");
        (text(&o.stdout), csv, report)
    };
    let (stdout, csv, report) = run("fig6", None, &store);
    assert!(stdout.contains("generating imagenet-miniature"), "{stdout}");
    assert!(cache.join("datasets/imagenet-miniature/index.json").is_file());
    for net in ["resnet50", "inception-v3", "squeezenet"] {
        for metric in ["accuracy", "top5"] {
            let prefix = format!("fig6,{net},dense,0,0,0,100,{metric},");
            assert_eq!(csv.lines().filter(|l| l.starts_with(&prefix)).count(), 1, "{net} {metric}: {csv}");
        }
        let row = report.lines().find(|l| l.starts_with(&format!("| {net} |"))).unwrap();
        assert_eq!(row.matches('[').count(), 2, "top-1 and top-5 measured: {row}");
    }
    assert!(report.contains("| inception-v3 | imagenet_inception_v3 | 171 | 8 | 80x80 |"), "{report}");

    let (stdout, csv, report) = run("fig7", Some("squeezenet"), &store);
    assert!(stdout.contains("squeezenet r0 k=2: IMP levels 0-1"), "{stdout}");
    // (series, rewind, level, % of weights left, metric) of each row.
    let rows = |csv: &str| -> Vec<(String, u64, u32, f64, String)> {
        csv.lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                let n = f.len();
                (
                    f[2..n - 6].join(","),
                    f[n - 5].parse().unwrap(),
                    f[n - 4].parse().unwrap(),
                    f[n - 3].parse().unwrap(),
                    f[n - 2].into(),
                )
            })
            .collect()
    };
    let near = |a: f64, b: f64| (a - b).abs() < 0.1;
    for metric in ["data-order-l2", "pruning-l2", "data-order-barrier", "accuracy-mean"] {
        for k in [0, 2] {
            assert!(
                rows(&csv).iter().any(|(s, rk, l, left, m)| s == "imp"
                    && *rk == k
                    && *l == 1
                    && near(*left, 50.0)
                    && m == metric),
                "{metric} at k = {k}: {csv}"
            );
        }
    }
    assert!(report.contains("onset of stability") || report.contains("no onset"), "{report}");
    let (stdout, csv, _) = run("fig12", Some("squeezenet"), &store);
    assert!(stdout.contains("\n0 iterations to train"), "{stdout}");
    assert!(csv.contains(",data-order-angle,"), "{csv}");

    // fig8 in a store of its own: one dense level for the whole figure, every other run borrows it.
    let (stdout, csv, report) = run("fig8", Some("squeezenet"), &dir.path().join("store8"));
    assert_eq!(stdout.matches("level 0 (dense): training").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("level 0 (dense): the same training as run squeezenet-").count(), 3, "{stdout}");
    // SqueezeNet's T is 150 epochs: the smoke scale's k = 2 of 6 iterations is "epoch 50".
    for series in ["one-shot, rewound to epoch 50", "one-shot, reset to iteration 0", "one-shot, random reinit"] {
        for left in [50.0, 30.0] {
            assert!(
                rows(&csv)
                    .iter()
                    .any(|(s, _, l, w, m)| s.contains(series) && *l == 1 && near(*w, left) && m == "accuracy"),
                "{series} at {left}%: {csv}"
            );
        }
    }
    assert!(report.contains("top-5"), "{report}");
}
