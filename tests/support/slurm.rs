//! Whether the tests that need a Slurm cluster can run: one answers when `SLURM_CONF` is set and
//! `sinfo` succeeds (`xtask/slurm/local-cluster.sh start` sets both up). Without one they say so
//! and pass, unless `LT_SLURM=required` (CI), where a missing cluster fails them.

use std::process::Command;

/// Whether a Slurm cluster answers; prints a skip note for `test` when none does, and panics under
/// `LT_SLURM=required`.
pub fn cluster(test: &str) -> bool {
    let up = std::env::var_os("SLURM_CONF").is_some()
        && Command::new("sinfo").arg("-h").output().is_ok_and(|o| o.status.success());
    if !up {
        assert!(
            std::env::var("LT_SLURM").map_or(true, |v| v != "required"),
            "{test}: LT_SLURM=required but no Slurm answers (SLURM_CONF unset or `sinfo` failed)"
        );
        eprintln!("{test}: skipped, no Slurm here (`eval \"$(xtask/slurm/local-cluster.sh start)\"` starts one)");
    }
    up
}
