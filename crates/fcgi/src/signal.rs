//! SIGTERM/SIGINT → a shutdown flag. mod_fcgid and systemd stop their processes with SIGTERM;
//! a person at a terminal uses Ctrl-C.
//!
//! `signal-hook` installs the handlers: its `flag` actions are just an atomic store (and, for
//! the second signal, `_exit`), so they are async-signal-safe without any `unsafe` here, and its
//! registry chains with other handlers instead of overwriting them. Its handlers use
//! SA_RESTART, as ours did: reads and writes elsewhere (SQLite, sockets) are not interrupted;
//! poll(2) still returns EINTR, and the event loop re-checks the flag every tick anyway.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

/// The process-wide flag, set up once.
static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// 128 + SIGINT: the shell's code for "interrupted", used when a second signal arrives while
/// draining (the operator insists, stop now).
const INSIST_STATUS: i32 = 130;

/// Returns the process-wide shutdown flag, installing the handlers on first call.
pub(crate) fn install() -> Arc<AtomicBool> {
    Arc::clone(FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [SIGTERM, SIGINT] {
            // Order matters: the conditional exit goes first, so the first signal finds the flag
            // still false (no exit) and then sets it, arming the exit for a second signal.
            let installed =
                flag::register_conditional_shutdown(sig, INSIST_STATUS, Arc::clone(&flag))
                    .and_then(|_| flag::register(sig, Arc::clone(&flag)));
            if let Err(e) = installed {
                // Cannot happen for these signals; the server then just stops on the default
                // action instead of draining.
                log::warn!("fastcgi: cannot install handler for signal {sig}: {e}");
            }
        }
        flag
    }))
}
