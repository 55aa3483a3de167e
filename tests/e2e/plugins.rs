//! Pruning plugins through the `lt` binary: the example LAMP plugin built by the workspace prunes
//! a checkpoint and a lottery level; the host refuses a file that is not a library, a library
//! without the entry symbol, a wrong ABI version, and catches a plugin's panic, error, garbage
//! mask, revived weight and wrong count, leaving the previous mask untouched.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Sandbox, stderr, stdout};

/// Builds plugin package `package` (with `features`) and copies its library to `dir/name`.
fn build_plugin(package: &str, features: &[&str], dir: &Path, name: &str) -> PathBuf {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", package]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    // A separate target dir: the test's own cargo holds the workspace's.
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/plugin-tests");
    let o = cmd.arg("--target-dir").arg(&target).output().unwrap();
    assert!(o.status.success(), "building {package}: {}", String::from_utf8_lossy(&o.stderr));
    let file = format!("{}{}{}", std::env::consts::DLL_PREFIX, package.replace('-', "_"), std::env::consts::DLL_SUFFIX);
    let dest = dir.join(name);
    std::fs::copy(target.join("debug").join(file), &dest).unwrap();
    dest
}

/// A LeNet checkpoint from a short real training run.
fn checkpoint(sb: &Sandbox) -> PathBuf {
    let out = sb.path().join("run");
    let fashion = lt_data::testing::fashion_mnist("the plugins' end-to-end tests");
    let mut args = vec!["train", "--preset", "lenet", "--dataset", fashion.name, "--iters", "20it"];
    args.extend(["--train-examples", "600", "--out", out.to_str().unwrap()]);
    let data_dir = fashion.data_dir_args();
    args.extend(data_dir.iter().map(String::as_str));
    let o = sb.lt(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    out.join("final.safetensors")
}

#[test]
fn the_lamp_plugin_prunes_a_checkpoint_and_a_lottery_level() {
    let sb = Sandbox::new();
    let plugins = sb.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let lamp = build_plugin("lt-plugin-lamp", &[], &plugins, "liblt_plugin_lamp.so");
    let ckpt = checkpoint(&sb);
    let mask = sb.path().join("lamp.safetensors");
    let strategy = format!("plugin:{}", lamp.display());
    let o = sb.lt(&[
        "prune",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--strategy",
        &strategy,
        "--fraction",
        "0.5",
        "--out",
        mask.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = sb.lt(&["mask", "info", mask.to_str().unwrap()]);
    let info = stdout(&o);
    assert!(info.contains("strategy plugin:") && info.lines().last().unwrap().trim_end().ends_with("50.00%"), "{info}");
    // LAMP picks different sparsities per layer.
    let densities: Vec<&str> =
        info.lines().filter(|l| l.starts_with("fc_layers")).map(|l| l.split_whitespace().last().unwrap()).collect();
    assert_eq!(densities.len(), 2);
    assert_ne!(densities[0], densities[1], "{info}");

    // By name through LT_PLUGIN_PATH, as a lottery run's strategy.
    let store = sb.path().join("store");
    let fashion = lt_data::testing::fashion_mnist("the plugins' end-to-end tests");
    let o = Command::new(env!("CARGO_BIN_EXE_lt"))
        .args([
            "lottery",
            "--preset",
            "lenet",
            "--dataset",
            fashion.name,
            "--iters",
            "30it",
            "--train-examples",
            "600",
            "--levels",
            "1",
            "--strategy",
            "plugin:lt_plugin_lamp",
            "--out",
            store.to_str().unwrap(),
        ])
        .args(fashion.data_dir_args())
        .env("LT_CACHE_DIR", sb.path().join("cache"))
        .env("LT_PLUGIN_PATH", &plugins)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_lt"))
        .args(["plugins", "list"])
        .env("LT_PLUGIN_PATH", &plugins)
        .output()
        .unwrap();
    assert!(stdout(&o).contains("lamp") && stdout(&o).contains("layer-adaptive"), "{}", stdout(&o));
    // The built-in strategies are listed beside the plugins, and so is where they were searched for.
    for name in ["magnitude", "snip", "random", plugins.to_str().unwrap()] {
        assert!(stdout(&o).contains(name), "{name}: {}", stdout(&o));
    }
    let o =
        Command::new(env!("CARGO_BIN_EXE_lt")).args(["plugins", "list"]).env_remove("LT_PLUGIN_PATH").output().unwrap();
    assert!(
        o.status.success() && stdout(&o).contains("magnitude") && stdout(&o).contains("LT_PLUGIN_PATH"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn the_host_refuses_bad_libraries_and_contains_misbehaving_plugins() {
    let sb = Sandbox::new();
    let dir = sb.path();
    let good = build_plugin("lt-plugin-misbehave", &[], dir, "libmisbehave.so");
    let wrong_abi = build_plugin("lt-plugin-misbehave", &["wrong-abi"], dir, "libwrongabi.so");
    let not_a_library = dir.join("libtext.so");
    std::fs::write(&not_a_library, "not a library").unwrap();
    let ckpt = checkpoint(&sb);
    // A first, valid level (so that a revived weight is possible), then the bad plugins.
    let level1 = dir.join("level1.safetensors");
    let o = sb.lt(&[
        "prune",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--fraction",
        "0.2",
        "--out",
        level1.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = std::fs::read(&level1).unwrap();
    let out = dir.join("new.safetensors");
    let prune = |plugin: &Path, params: &str| {
        sb.lt(&[
            "prune",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--mask",
            level1.to_str().unwrap(),
            "--strategy",
            &format!("plugin:{}", plugin.display()),
            "--fraction",
            "0.2",
            "--params",
            params,
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let o = prune(&good, r#"{"mode": "ok"}"#);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(&out).unwrap();
    for (plugin, params, expected) in [
        (&not_a_library, "{}", "not a loadable library"),
        (&wrong_abi, "{}", "speaks plugin ABI version 0, this lt speaks version 1"),
        (&good, r#"{"mode": "panic"}"#, "panicked: asked to panic"),
        (&good, r#"{"mode": "error"}"#, "failed (code 1): asked to fail"),
        (&good, r#"{"mode": "garbage"}"#, "holds 7 at element 0"),
        (&good, r#"{"mode": "revive"}"#, "revives pruned weight"),
        (&good, r#"{"mode": "count"}"#, "prunes"),
        (&good, r#"{"mode": "short"}"#, "returned a mask of"),
    ] {
        let o = prune(plugin, params);
        assert!(!o.status.success(), "{params} succeeded");
        let e = stderr(&o);
        assert!(e.contains("plugin") && e.contains(expected), "{params}: {e}");
        assert!(!out.exists(), "{params}: a mask was written");
        assert_eq!(std::fs::read(&level1).unwrap(), before, "the previous mask changed");
    }
}
