//! Logging a lasting fault once a minute instead of on every request it refuses.

use std::sync::atomic::{AtomicU64, Ordering};

/// When a fault was last logged; `due` says whether to log it again.
#[derive(Debug)]
pub struct RateLimit(AtomicU64);

impl RateLimit {
    pub const fn new() -> Self {
        RateLimit(AtomicU64::new(0))
    }

    /// True at most once a minute (across threads).
    pub fn due(&self) -> bool {
        let now = crate::timestamp::now_ms();
        let last = self.0.load(Ordering::Relaxed);
        now - last as i64 >= 60_000
            && self
                .0
                .compare_exchange(last, now as u64, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}
