//! The acceptor and the bounded pool of connection threads.
//!
//! One acceptor (the thread that called `serve`) accepts only while fewer than
//! `max_connections` connections are open, so extra connections wait in the kernel's listen
//! backlog instead of being refused. Accepted sockets go through a queue to worker threads that
//! are spawned lazily, never more than `max_connections`, and reused for later connections.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::conn::{self, Ctx};
use super::listener::Listener;
use super::sys::{self, Socket};
use super::{Handler, ServerOptions};

/// How often the acceptor re-checks the shutdown flag.
const TICK: Duration = Duration::from_millis(250);
/// Pause after accept fails for lack of resources (EMFILE and friends), so we do not spin.
const RESOURCE_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Default)]
struct State {
    /// Accepted connections no worker has picked up yet.
    queue: VecDeque<Socket>,
    /// Connections accepted and not yet closed (queued or being served).
    open: usize,
    /// Live worker threads.
    workers: usize,
    /// Workers waiting for a connection.
    idle: usize,
    /// No more connections will be queued: workers exit once the queue is empty.
    stopping: bool,
}

struct Pool {
    state: Mutex<State>,
    /// Signals workers that a connection is queued or the pool is stopping.
    work: Condvar,
    /// Signals the acceptor (a slot freed) and the drain (a worker exited).
    changed: Condvar,
    ctx: Ctx,
    max: usize,
}

impl Pool {
    /// Locks the state; a poisoned lock (a panic while holding it, which our code cannot do)
    /// still holds consistent counters, so keep going rather than cascade the panic.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_changed<'a>(&self, st: MutexGuard<'a, State>, t: Duration) -> MutexGuard<'a, State> {
        match self.changed.wait_timeout(st, t) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        }
    }
}

/// Serves `listener` until `shutdown` is set; see [`super::serve`].
pub(crate) fn serve(
    listener: Listener,
    handler: Arc<dyn Handler>,
    opts: ServerOptions,
    shutdown: Arc<AtomicBool>,
) -> io::Result<()> {
    let drain_timeout = opts.drain_timeout;
    let pool = Arc::new(Pool {
        state: Mutex::new(State::default()),
        work: Condvar::new(),
        changed: Condvar::new(),
        max: opts.max_connections.max(1),
        ctx: Ctx {
            handler,
            opts,
            shutdown: Arc::clone(&shutdown),
            stopping: AtomicBool::new(false),
        },
    });
    let result = accept_loop(&listener, &pool, &shutdown);
    // Stop accepting before draining, so new connections get refused by the kernel (once
    // the backlog is gone) rather than hanging.
    drop(listener);
    pool.ctx.stopping.store(true, Ordering::SeqCst);
    drain(&pool, drain_timeout);
    result
}

fn accept_loop(listener: &Listener, pool: &Arc<Pool>, shutdown: &AtomicBool) -> io::Result<()> {
    let fd = listener.as_raw_fd();
    while !shutdown.load(Ordering::SeqCst) {
        {
            let mut st = pool.lock();
            spawn_workers(pool, &mut st);
            if st.open >= pool.max {
                // Full: leave new connections in the backlog until a slot frees.
                drop(pool.wait_changed(st, TICK));
                continue;
            }
        }
        match sys::poll_readable(fd, TICK) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                log::warn!("fastcgi: poll on the listening socket failed: {e}");
                thread::sleep(RESOURCE_BACKOFF);
                continue;
            }
        }
        match sys::accept(fd) {
            Ok(sock) => {
                let mut st = pool.lock();
                st.queue.push_back(sock);
                st.open += 1;
                spawn_workers(pool, &mut st);
                pool.work.notify_one();
            }
            Err(e) => match e.raw_os_error().unwrap_or(0) {
                // Lost a race, interrupted, or the client gave up before we got to it.
                libc::EAGAIN | libc::EINTR | libc::ECONNABORTED | libc::EPROTO => {}
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                    log::warn!(
                        "fastcgi: cannot accept a connection ({e}); \
                         raise the open files limit (ulimit -n) or lower max_connections"
                    );
                    thread::sleep(RESOURCE_BACKOFF);
                }
                // EBADF, ENOTSOCK, EINVAL: this is no listening socket; it will not heal.
                _ => {
                    log::error!("fastcgi: accept failed, stopping the server: {e}");
                    return Err(e);
                }
            },
        }
    }
    log::info!("fastcgi: shutting down, no longer accepting connections");
    Ok(())
}

/// Spawns workers while queued connections outnumber waiting workers (bounded by `max`).
/// Also replaces workers that died, since it runs on every acceptor turn.
fn spawn_workers(pool: &Arc<Pool>, st: &mut State) {
    while st.queue.len() > st.idle && st.workers < pool.max {
        let id = st.workers;
        let p = Arc::clone(pool);
        let spawned = thread::Builder::new()
            .name(format!("fcgi-conn-{id}"))
            .spawn(move || worker(p));
        match spawned {
            Ok(_) => st.workers += 1,
            Err(e) => {
                // Queued connections wait for the next turn or a free worker.
                log::warn!("fastcgi: cannot start a connection thread: {e}");
                return;
            }
        }
    }
}

/// Keeps `workers` and `open` right even if a connection thread unwinds.
struct WorkerGuard<'a>(&'a Pool);

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().workers -= 1;
        self.0.changed.notify_all();
    }
}

struct OpenGuard<'a>(&'a Pool);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().open -= 1;
        self.0.changed.notify_all();
    }
}

fn worker(pool: Arc<Pool>) {
    let _worker = WorkerGuard(&pool);
    while let Some(sock) = next_connection(&pool) {
        let _open = OpenGuard(&pool);
        conn::serve_connection(sock, &pool.ctx);
    }
}

/// Blocks until a connection is queued; `None` once the pool is stopping and the queue is
/// empty (connections accepted before shutdown are still served).
fn next_connection(pool: &Pool) -> Option<Socket> {
    let mut st = pool.lock();
    loop {
        if let Some(sock) = st.queue.pop_front() {
            return Some(sock);
        }
        if st.stopping {
            return None;
        }
        st.idle += 1;
        st = pool.work.wait(st).unwrap_or_else(|e| e.into_inner());
        st.idle -= 1;
    }
}

/// Lets workers finish what they have (idle keep-alive connections notice the flag within a
/// tick and close), waiting at most `timeout`.
fn drain(pool: &Arc<Pool>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut st = pool.lock();
    st.stopping = true;
    pool.work.notify_all();
    while st.workers > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::warn!(
                "fastcgi: {} connection(s) still busy after the {timeout:?} drain timeout, \
                 {} request(s) in flight; leaving them",
                st.open,
                conn::in_flight()
            );
            return;
        }
        st = pool.wait_changed(st, left.min(TICK));
    }
    log::info!("fastcgi: all connections closed");
}
