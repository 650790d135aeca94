//! SIGTERM/SIGINT → a shutdown flag. mod_fcgid and systemd stop their processes with SIGTERM;
//! a person at a terminal uses Ctrl-C.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Arc;

/// The flag the handler sets. It points into an `Arc` that is deliberately leaked (one strong
/// count never released), so the pointer stays valid for the life of the process and the
/// handler needs nothing but an atomic load and an atomic store: async-signal-safe.
static FLAG: AtomicPtr<AtomicBool> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_signal(_sig: libc::c_int) {
    let flag = FLAG.load(Ordering::SeqCst);
    if flag.is_null() {
        return;
    }
    // SAFETY: FLAG only ever holds a pointer from Arc::into_raw that is never released.
    let flag = unsafe { &*flag };
    if flag.swap(true, Ordering::SeqCst) {
        // Second signal while draining: the operator insists, stop now. _exit is
        // async-signal-safe; 128 + SIGINT is the shell's code for "interrupted".
        // SAFETY: plain syscall.
        unsafe { libc::_exit(130) };
    }
}

/// Returns the process-wide shutdown flag, installing the handlers on first call.
pub(crate) fn install() -> Arc<AtomicBool> {
    let existing = FLAG.load(Ordering::SeqCst);
    if !existing.is_null() {
        // SAFETY: the pointer came from Arc::into_raw and its count was never released, so
        // adding one and rebuilding an Arc is sound.
        unsafe {
            Arc::increment_strong_count(existing);
            return Arc::from_raw(existing);
        }
    }
    let flag = Arc::new(AtomicBool::new(false));
    let raw = Arc::into_raw(Arc::clone(&flag)) as *mut AtomicBool;
    if let Err(other) = FLAG.compare_exchange(
        std::ptr::null_mut(),
        raw,
        Ordering::SeqCst,
        Ordering::SeqCst,
    ) {
        // Another thread won the race: give back our leak and share theirs.
        // SAFETY: `raw` came from into_raw above and was not published; `other` as above.
        unsafe {
            drop(Arc::from_raw(raw));
            Arc::increment_strong_count(other);
            return Arc::from_raw(other);
        }
    }
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" starting point; the
        // handler is an extern "C" fn with the plain (non-SA_SIGINFO) signature.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            // SA_RESTART: reads and writes elsewhere (SQLite, sockets) are not interrupted;
            // poll(2) still returns EINTR, and our loops re-check the flag within 250 ms anyway.
            act.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            if libc::sigaction(sig, &act, std::ptr::null_mut()) != 0 {
                // Cannot happen for these signals; the server then just stops on the default
                // action instead of draining.
                let e = io::Error::last_os_error();
                log::warn!("fastcgi: cannot install handler for signal {sig}: {e}");
            }
        }
    }
    flag
}
