//! Stopping a run early and cleanly: a process-wide request that the trainer honours at the next
//! step boundary by writing its resume checkpoint and returning [`Error::Interrupted`].
//!
//! A scheduler ends a job with SIGTERM (Slurm at its time limit, on preemption and on `scancel`)
//! and a SIGKILL a grace period later. [`stop_on_sigterm`] turns the first into a request, so a
//! job that is stopped loses no more than the step in flight and resumes bit-identically. Only a
//! binary installs the handler; the library just checks the flag.

use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(doc)]
use crate::Error;

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every run in this process to stop at its next step boundary (async-signal-safe: one
/// atomic store).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a stop was requested.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

#[cfg(unix)]
extern "C" fn on_sigterm(_signal: libc::c_int) {
    request_stop();
}

/// Makes SIGTERM a stop request instead of an immediate exit (on Unix; elsewhere it does nothing).
pub fn stop_on_sigterm() {
    #[cfg(unix)]
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; `signal` with a
    // valid function pointer has no other precondition.
    unsafe {
        libc::signal(libc::SIGTERM, on_sigterm as *const () as libc::sighandler_t);
    }
}
