//! Allocator tuning for a long-running server on a small box.

/// glibc's defaults suit neither a small box nor our request sizes: one malloc
/// arena per thread made RSS grow to ~100 MB under load, and trimming the heap
/// after every ~100 KB response made each request fault its pages in again.
/// Call before any worker thread exists.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any worker
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
    }
}
