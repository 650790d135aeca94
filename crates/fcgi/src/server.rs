//! The event loop and the bounded pool of handler threads.
//!
//! Accepting and receiving are separate from serving. One thread (the one that called `serve`)
//! owns the listening socket and every connection, all non-blocking, and waits on them with
//! poll(2): it accepts, reads records, assembles each request and writes answers. Only a
//! complete request (params and body) goes to a handler thread, and a handler hands its answer
//! straight back without touching the socket. So a connection that is idle, half-sent or slow
//! to read its answer costs a buffer and a file descriptor, never a handler thread, and cannot
//! keep anybody else waiting (issue 10, item 8: 70 such connections used to hold all 64
//! connection threads, and the next request waited ~30 s for a timeout).
//!
//! Deadlines by phase (see `conn.rs`): the head of a request (BEGIN_REQUEST and PARAMS) within
//! `header_timeout` of its first byte, or of the connect; a body or an answer that stops moving
//! for `io_timeout`; an idle kept-alive connection after `idle_timeout`. When
//! `max_connections` are open, the connection idle the longest is closed to make room (nginx
//! reconnects as it does after any upstream close); if none is idle, new connections wait in
//! the kernel's listen backlog.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use super::conn::{Conn, ConnError, Progress, READ_CHUNK};
use super::listener::Listener;
use super::sys::{self, Waker};
use super::{FcgiRequest, Handler, ServerOptions};

/// Longest single wait in poll, so the shutdown flag is seen promptly.
const TICK: Duration = Duration::from_millis(250);
/// Pause in accepting after it fails for lack of resources (EMFILE and friends), so we do not
/// spin; connections already open are served meanwhile.
const RESOURCE_BACKOFF: Duration = Duration::from_millis(500);
/// Connections accepted per turn of the loop, so a flood cannot starve the open ones.
const ACCEPTS_PER_TURN: usize = 64;
/// What a panicking handler answers: the bare-integer body Sync clients expect on errors.
const PANIC_RESPONSE: &[u8] =
    b"Status: 500 Internal Server Error\r\nContent-Type: application/json\r\n\r\n0";

/// Serves `listener` until `shutdown` is set; see [`super::serve`].
pub(crate) fn serve(
    listener: Listener,
    handler: Arc<dyn Handler>,
    opts: ServerOptions,
    shutdown: Arc<AtomicBool>,
) -> io::Result<()> {
    let handlers = Arc::new(Handlers {
        state: Mutex::new(HandlerState::default()),
        work: Condvar::new(),
        done: Mutex::new(Vec::new()),
        waker: Waker::new()?,
        handler,
        max: opts.max_requests.max(1),
    });
    let mut ev = EventLoop {
        listener: Some(listener),
        conns: Vec::new(),
        free: Vec::new(),
        next_serial: 0,
        open: 0,
        opts,
        handlers: Arc::clone(&handlers),
        accept_paused_until: None,
    };
    let result = ev.run(&shutdown);
    handlers.stop();
    result
}

/// Names one connection: its slot in the event loop, and a serial number, because a slot is
/// reused once its connection closes (e.g. a peer that timed out while its handler ran).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnId {
    slot: usize,
    serial: u64,
}

/// A complete request for a handler.
struct Job {
    conn: ConnId,
    request: FcgiRequest,
}

/// A handler's answer on its way back to the event loop.
struct Done {
    conn: ConnId,
    response: Vec<u8>,
}

#[derive(Default)]
struct HandlerState {
    jobs: VecDeque<Job>,
    /// Live handler threads.
    threads: usize,
    /// Handler threads waiting for a job.
    idle: usize,
    /// Handler threads spawned that have not yet asked for a job: each will take one.
    starting: usize,
    /// No more jobs will come: threads exit.
    stopping: bool,
}

/// The handler threads: spawned lazily, never more than `max`, reused.
struct Handlers {
    state: Mutex<HandlerState>,
    work: Condvar,
    done: Mutex<Vec<Done>>,
    /// Wakes the event loop when an answer is ready.
    waker: Waker,
    handler: Arc<dyn Handler>,
    max: usize,
}

impl Handlers {
    /// Locks the state; a poisoned lock (a panic while holding it, which our code cannot do)
    /// still holds consistent counters, so keep going rather than cascade the panic.
    fn lock(&self) -> MutexGuard<'_, HandlerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(self: &Arc<Self>, job: Job) {
        let mut st = self.lock();
        st.jobs.push_back(job);
        // Threads still starting count as idle: without them, the first job spawned every
        // thread up to `max` (64 threads and ~4 ms before the first answer, for one request).
        while st.jobs.len() > st.idle + st.starting && st.threads < self.max {
            let me = Arc::clone(self);
            let spawned = thread::Builder::new()
                .name(format!("fcgi-handler-{}", st.threads))
                .spawn(move || me.run_thread());
            match spawned {
                Ok(_) => {
                    st.threads += 1;
                    st.starting += 1;
                }
                Err(e) => {
                    // The job waits for a running thread (or the next submit's retry).
                    log::warn!("fastcgi: cannot start a handler thread: {e}");
                    break;
                }
            }
        }
        drop(st);
        self.work.notify_one();
    }

    fn run_thread(self: Arc<Self>) {
        let _count = ThreadGuard(&self);
        let mut fresh = true;
        while let Some(job) = self.next_job(&mut fresh) {
            let response = self.call(job.request);
            self.done
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Done {
                    conn: job.conn,
                    response,
                });
            self.waker.wake();
        }
    }

    /// Calls the handler; a panic becomes a 500 and the thread lives on.
    fn call(&self, request: FcgiRequest) -> Vec<u8> {
        let handler = &self.handler;
        catch_unwind(AssertUnwindSafe(|| handler.handle(request))).unwrap_or_else(|payload| {
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(non-string panic payload)");
            log::error!("fastcgi: request handler panicked: {msg}");
            PANIC_RESPONSE.to_vec()
        })
    }

    /// The next job, waiting for one; `fresh` is true on a new thread's first call.
    fn next_job(&self, fresh: &mut bool) -> Option<Job> {
        let mut st = self.lock();
        if std::mem::take(fresh) {
            st.starting -= 1;
        }
        loop {
            if let Some(job) = st.jobs.pop_front() {
                return Some(job);
            }
            if st.stopping {
                return None;
            }
            st.idle += 1;
            st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
            st.idle -= 1;
        }
    }

    fn take_done(&self) -> Vec<Done> {
        std::mem::take(&mut *self.done.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Lets idle threads exit. A thread still in a handler (past the drain timeout) finishes
    /// on its own and its answer is dropped.
    fn stop(&self) {
        self.lock().stopping = true;
        self.work.notify_all();
    }
}

/// Keeps the thread count right even if a handler thread unwinds.
struct ThreadGuard<'a>(&'a Handlers);

impl Drop for ThreadGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().threads -= 1;
    }
}

struct EventLoop {
    /// None once we stopped accepting.
    listener: Option<Listener>,
    /// Open connections by slot; a slot is reused only after its connection closed, and a
    /// connection with a handler at work stays in its slot until the answer is back.
    conns: Vec<Option<(u64, Conn)>>,
    free: Vec<usize>,
    next_serial: u64,
    open: usize,
    opts: ServerOptions,
    handlers: Arc<Handlers>,
    accept_paused_until: Option<Instant>,
}

/// Where a pollfd came from.
#[derive(Clone, Copy)]
enum Source {
    Waker,
    Listener,
    Conn(ConnId),
}

impl EventLoop {
    fn run(&mut self, shutdown: &AtomicBool) -> io::Result<()> {
        let mut result = Ok(());
        let mut drain_deadline: Option<Instant> = None;
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut sources: Vec<Source> = Vec::new();
        let mut scratch = vec![0u8; READ_CHUNK];
        loop {
            let now = Instant::now();
            if drain_deadline.is_none() && (shutdown.load(Ordering::SeqCst) || result.is_err()) {
                // Stop accepting before draining, so new connections get refused by the
                // kernel (once the backlog is gone) rather than hanging.
                log::info!("fastcgi: shutting down, no longer accepting connections");
                self.listener = None;
                drain_deadline = Some(now + self.opts.drain_timeout);
            }
            self.collect_answers(now, drain_deadline.is_some());
            if let Some(deadline) = drain_deadline {
                self.close_idle();
                if self.open == 0 {
                    log::info!("fastcgi: all connections closed");
                    return result;
                }
                if now >= deadline {
                    log::warn!(
                        "fastcgi: {} connection(s) still busy after the {:?} drain timeout, \
                         {} request(s) in flight; leaving them",
                        self.open,
                        self.opts.drain_timeout,
                        super::conn::in_flight()
                    );
                    return result;
                }
            }
            self.expire(now);

            fds.clear();
            sources.clear();
            let mut wait = TICK;
            fds.push(pollfd(self.handlers.waker.as_raw_fd(), libc::POLLIN));
            sources.push(Source::Waker);
            if self.accepting(now) {
                if let Some(l) = &self.listener {
                    fds.push(pollfd(l.as_raw_fd(), libc::POLLIN));
                    sources.push(Source::Listener);
                }
            }
            for (slot, conn) in self.conns.iter().enumerate() {
                let Some((serial, c)) = conn else { continue };
                if let Some(d) = c.next_deadline() {
                    wait = wait.min(d.saturating_duration_since(now));
                }
                let events = if c.has_output() {
                    libc::POLLOUT
                } else if c.wants_read() {
                    libc::POLLIN
                } else {
                    continue;
                };
                fds.push(pollfd(c.sock.as_raw_fd(), events));
                // With its serial: accepting may reuse the slot of a connection it closed
                // before this connection's events are handled.
                sources.push(Source::Conn(ConnId {
                    slot,
                    serial: *serial,
                }));
            }
            if let Some(until) = self.accept_paused_until {
                wait = wait.min(until.saturating_duration_since(now));
            }
            // Round up so a deadline a fraction of a millisecond away is not polled for 0 ms
            // over and over.
            let wait = wait + Duration::from_millis(1);

            if let Err(e) = sys::poll(&mut fds, wait) {
                // Only resource shortages (ENOMEM) get here; they pass.
                log::warn!("fastcgi: poll failed: {e}");
                thread::sleep(RESOURCE_BACKOFF);
                continue;
            }
            let now = Instant::now();
            for (pfd, source) in fds.iter().zip(sources.iter()) {
                if pfd.revents == 0 {
                    continue;
                }
                match *source {
                    Source::Waker => self.handlers.waker.reset(),
                    Source::Listener => {
                        if let Err(e) = self.accept_some(now) {
                            result = Err(e);
                        }
                    }
                    Source::Conn(id) => self.on_event(id, pfd.revents, &mut scratch, now),
                }
            }
        }
    }

    /// Whether to poll the listener: not while paused for resources, and at the limit only if
    /// an idle connection can make room.
    fn accepting(&mut self, now: Instant) -> bool {
        if let Some(until) = self.accept_paused_until {
            if now < until {
                return false;
            }
            self.accept_paused_until = None;
        }
        self.open < self.opts.max_connections.max(1) || self.oldest_idle().is_some()
    }

    fn accept_some(&mut self, now: Instant) -> io::Result<()> {
        for _ in 0..ACCEPTS_PER_TURN {
            let full = self.open >= self.opts.max_connections.max(1);
            if full && self.oldest_idle().is_none() {
                return Ok(());
            }
            let Some(listener) = &self.listener else {
                return Ok(());
            };
            match sys::accept(listener) {
                Ok(sock) => {
                    // Only now that someone is really waiting, make room.
                    if let Some(slot) = self.oldest_idle().filter(|_| full) {
                        log::debug!(
                            "fastcgi: {} connections open: closing the one idle longest to \
                             make room",
                            self.open
                        );
                        self.close(slot, None);
                    }
                    let conn = Conn::new(sock, &self.opts, now);
                    self.insert(conn);
                }
                Err(e) => {
                    return match e.raw_os_error().unwrap_or(0) {
                        // Nothing left to accept, interrupted, or the client gave up first.
                        libc::EAGAIN | libc::EINTR | libc::ECONNABORTED | libc::EPROTO => Ok(()),
                        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                            log::warn!(
                                "fastcgi: cannot accept a connection ({e}) with {} open; \
                                 raise the open files limit (ulimit -n) or lower \
                                 --max-connections",
                                self.open
                            );
                            self.accept_paused_until = Some(now + RESOURCE_BACKOFF);
                            Ok(())
                        }
                        // EBADF, ENOTSOCK, EINVAL: this is no listening socket; it will not heal.
                        _ => {
                            log::error!("fastcgi: accept failed, stopping the server: {e}");
                            Err(e)
                        }
                    };
                }
            }
        }
        Ok(())
    }

    fn insert(&mut self, conn: Conn) {
        self.open += 1;
        self.next_serial += 1;
        let entry = Some((self.next_serial, conn));
        match self.free.pop() {
            Some(slot) => self.conns[slot] = entry,
            None => self.conns.push(entry),
        }
    }

    fn conn(&self, slot: usize) -> Option<&Conn> {
        self.conns.get(slot)?.as_ref().map(|(_, c)| c)
    }

    /// Closes the connection in `slot`: after a complete exchange with a lingering half-close,
    /// otherwise at once, logging why.
    fn close(&mut self, slot: usize, why: Option<ConnError>) {
        let Some((_, conn)) = self.conns.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.open -= 1;
        self.free.push(slot);
        match why {
            None => {
                log::debug!("fastcgi: connection closed");
                conn.linger_close();
            }
            Some(e) if e.is_quiet() => log::debug!("fastcgi: connection dropped: {e}"),
            Some(e) => log::warn!("fastcgi: closing connection: {e}"),
        }
    }

    fn oldest_idle(&self) -> Option<usize> {
        self.conns
            .iter()
            .enumerate()
            .filter_map(|(slot, c)| Some((slot, &c.as_ref()?.1)))
            .filter(|(_, c)| c.is_idle())
            .min_by_key(|(_, c)| c.idle_since)
            .map(|(slot, _)| slot)
    }

    /// Shutdown: connections with nothing under way close now.
    fn close_idle(&mut self) {
        for slot in 0..self.conns.len() {
            if self.conn(slot).is_some_and(Conn::is_idle) {
                log::debug!("fastcgi: closing idle connection for shutdown");
                self.close(slot, None);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        for slot in 0..self.conns.len() {
            let expired = self.conn(slot).and_then(|c| c.expired(now, &self.opts));
            if let Some(why) = expired {
                self.close(slot, why);
            }
        }
    }

    /// Queues the answers handlers finished, and starts sending them.
    fn collect_answers(&mut self, now: Instant, stopping: bool) {
        for Done { conn: id, response } in self.handlers.take_done() {
            let slot = id.slot;
            let Some((serial, conn)) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if *serial != id.serial || !conn.is_busy() {
                // Its connection closed (timed out) while the handler ran.
                continue;
            }
            conn.respond(response, &self.opts, now);
            if stopping {
                conn.close_when_done();
            }
            let step = conn
                .flush(&self.opts, now)
                .and_then(|()| conn.resume(&self.opts, now));
            self.after_step(slot, step);
        }
    }

    fn on_event(&mut self, id: ConnId, revents: libc::c_short, scratch: &mut [u8], now: Instant) {
        let slot = id.slot;
        let opts = &self.opts;
        let Some((serial, conn)) = self.conns.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if *serial != id.serial {
            return; // closed since the poll; its slot went to a new connection
        }
        let step = if conn.has_output() {
            // POLLOUT, or an error/hang-up that the write will report.
            conn.flush(opts, now).map(|()| Progress::Pending)
        } else if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            conn.on_readable(scratch, opts, now).and_then(|p| {
                conn.flush(opts, now)?;
                Ok(p)
            })
        } else {
            Ok(Progress::Pending)
        };
        self.after_step(slot, step);
    }

    fn after_step(&mut self, slot: usize, step: Result<Progress, ConnError>) {
        match step {
            Err(e) => self.close(slot, Some(e)),
            Ok(Progress::Request(request)) => {
                if let Some(Some((serial, _))) = self.conns.get(slot) {
                    let conn = ConnId {
                        slot,
                        serial: *serial,
                    };
                    self.handlers.submit(Job { conn, request });
                }
            }
            Ok(Progress::Pending) => {
                if self.conn(slot).is_some_and(Conn::is_finished) {
                    self.close(slot, None);
                }
            }
        }
    }
}

fn pollfd(fd: std::os::fd::RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Holds each request until `release` reaches its number.
    struct Gate {
        release: AtomicUsize,
        seen: AtomicUsize,
    }

    impl Handler for Gate {
        fn handle(&self, _req: FcgiRequest) -> Vec<u8> {
            let n = self.seen.fetch_add(1, Ordering::SeqCst);
            while self.release.load(Ordering::SeqCst) <= n {
                thread::sleep(Duration::from_millis(1));
            }
            b"Status: 200 OK\r\n\r\n".to_vec()
        }
    }

    fn job(serial: u64) -> Job {
        Job {
            conn: ConnId { slot: 0, serial },
            request: FcgiRequest {
                params: Vec::new(),
                body: Vec::new(),
                body_too_large: false,
            },
        }
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_job_starts_one_thread_not_all_of_them() {
        let gate = Arc::new(Gate {
            release: AtomicUsize::new(0),
            seen: AtomicUsize::new(0),
        });
        let handlers = Arc::new(Handlers {
            state: Mutex::new(HandlerState::default()),
            work: Condvar::new(),
            done: Mutex::new(Vec::new()),
            waker: Waker::new().unwrap(),
            handler: gate.clone(),
            max: 64,
        });
        handlers.submit(job(1));
        assert_eq!(handlers.lock().threads, 1);
        gate.release.store(1, Ordering::SeqCst);
        wait_for("the first answer", || {
            handlers.done.lock().unwrap().len() == 1
        });
        wait_for("the thread to idle", || handlers.lock().idle == 1);
        // Three at once while one thread is idle: it takes one, two more start.
        for serial in 2..5 {
            handlers.submit(job(serial));
        }
        wait_for("three handlers busy", || {
            gate.seen.load(Ordering::SeqCst) == 4
        });
        assert_eq!(handlers.lock().threads, 3);
        gate.release.store(4, Ordering::SeqCst);
        wait_for("every answer", || handlers.done.lock().unwrap().len() == 4);
        assert_eq!(handlers.lock().threads, 3);
        handlers.stop();
    }
}
