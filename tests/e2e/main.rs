//! End-to-end tests of the `lt` binary: one test binary, one module per command group. Each test
//! gets its own temporary folder and runs `lt` as a process, as a user would.

#![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

#[path = "../support/http_server.rs"]
mod http_server;
#[path = "../support/slurm.rs"]
mod slurm;

mod data;
mod lottery;
mod plugins;
mod train;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A test's sandbox: a temporary folder used as data dir and cache.
pub(crate) struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub(crate) fn new() -> Self {
        Sandbox { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `lt ARGS` with the cache inside the sandbox and no LT_DATA_DIR from the environment.
    pub(crate) fn lt(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lt"))
            .args(args)
            .env("LT_CACHE_DIR", self.path().join("cache"))
            .env_remove("LT_DATA_DIR")
            .output()
            .expect("run lt")
    }
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn bundled_datasets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data")
}
