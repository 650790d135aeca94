//! One epoll loop driving many keep-alive connections, for the workloads whose every step is
//! one request (plain, info, read-page, put, batch, token): the cheapest way to keep `c`
//! requests in flight, as wrk does, instead of a thread blocked on each connection (a wake-up
//! and two context switches per request). Requests are built and signed ahead of sending by
//! the connection's [`Worker`]; replies are parsed by [`crate::http`] and checked as the
//! threaded path checks them.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::client::{Prepared, Reply};
use crate::http::{parse_chunked, parse_head, Framing, Head};
use crate::stats::Sample;
use crate::workload::{Check, Shared, Worker, Workload};

/// One connection and the request on it.
struct Slot {
    worker: Worker,
    host: String,
    port: u16,
    stream: Option<TcpStream>,
    /// Answers on the current stream.
    used: u64,
    req: Vec<u8>,
    written: usize,
    check: Check,
    head: Option<Head>,
    buf: Vec<u8>,
    t0: Instant,
    /// Whether this request was already resent once on a fresh connection.
    resent: bool,
    want_write: bool,
}

struct Epoll(i32);

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: closing the epoll descriptor this struct owns.
        unsafe {
            libc::close(self.0);
        }
    }
}

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall, result checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }

    fn ctl(&self, op: i32, fd: i32, write: bool, token: usize) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | if write { libc::EPOLLOUT } else { 0 })
                as u32,
            u64: token as u64,
        };
        // SAFETY: `ev` lives across the call; the kernel copies it.
        if unsafe { libc::epoll_ctl(self.0, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Whether the first attempt can be retried on a new connection.
enum Outcome {
    Pending,
    Done(Reply, bool),
    Failed(String),
}

impl Slot {
    fn connect(&mut self, ep: &Epoll, token: usize) -> Result<(), String> {
        let s = TcpStream::connect((self.host.as_str(), self.port))
            .map_err(|e| format!("{}:{}: {e}", self.host, self.port))?;
        let prep = || -> io::Result<()> {
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            ep.ctl(libc::EPOLL_CTL_ADD, s.as_raw_fd(), false, token)
        };
        prep().map_err(|e| e.to_string())?;
        self.stream = Some(s);
        self.used = 0;
        self.want_write = false;
        Ok(())
    }

    fn close(&mut self) {
        // Dropping the stream closes it, which also removes it from the epoll set.
        self.stream = None;
        self.buf.clear();
        self.head = None;
    }

    /// Writes what it can of the request; asks for EPOLLOUT while some is left.
    fn write(&mut self, ep: &Epoll, token: usize) -> Result<(), String> {
        let Some(s) = self.stream.as_mut() else {
            return Err("no connection".into());
        };
        while self.written < self.req.len() {
            match s.write(&self.req[self.written..]) {
                Ok(0) => return Err("connection closed while sending".into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        let want = self.written < self.req.len();
        if want != self.want_write {
            ep.ctl(libc::EPOLL_CTL_MOD, s.as_raw_fd(), want, token)
                .map_err(|e| e.to_string())?;
            self.want_write = want;
        }
        Ok(())
    }

    /// Reads what has arrived and parses as far as it goes.
    fn read(&mut self) -> Outcome {
        let mut eof = false;
        loop {
            let Some(s) = self.stream.as_mut() else {
                return Outcome::Failed("no connection".into());
            };
            let old = self.buf.len();
            if self.buf.capacity() - old < 8192 {
                self.buf.reserve(self.buf.capacity().max(16 * 1024));
            }
            let cap = self.buf.capacity();
            self.buf.resize(cap, 0);
            match s.read(&mut self.buf[old..]) {
                Ok(n) => {
                    self.buf.truncate(old + n);
                    if n == 0 {
                        eof = true;
                        break;
                    }
                    // A whole answer needs no further read (that would only say EAGAIN; the
                    // poll is level-triggered, so nothing left behind is missed).
                    match self.parse(false) {
                        Ok(Some((reply, keep))) => return Outcome::Done(reply, keep),
                        Ok(None) => {}
                        Err(e) => return Outcome::Failed(e),
                    }
                }
                Err(e) => {
                    self.buf.truncate(old);
                    match e.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => {}
                        _ => return Outcome::Failed(e.to_string()),
                    }
                }
            }
        }
        match self.parse(eof) {
            Ok(Some((reply, keep))) => Outcome::Done(reply, keep && !eof),
            Ok(None) if eof => Outcome::Failed(
                if self.buf.is_empty() {
                    "connection closed before an answer"
                } else {
                    "connection closed inside the response"
                }
                .into(),
            ),
            Ok(None) => Outcome::Pending,
            Err(e) => Outcome::Failed(e),
        }
    }

    fn parse(&mut self, eof: bool) -> Result<Option<(Reply, bool)>, String> {
        if self.head.is_none() {
            self.head = parse_head(&self.buf).map_err(|e| e.0)?;
        }
        let Some(head) = &self.head else {
            return Ok(None);
        };
        let body = match head.framing {
            Framing::Length(n) => {
                if self.buf.len() < head.len + n {
                    return Ok(None);
                }
                if self.buf.len() > head.len + n {
                    return Err("bytes after the response".into());
                }
                self.buf[head.len..].to_vec()
            }
            Framing::Chunked => match parse_chunked(&self.buf[head.len..]).map_err(|e| e.0)? {
                Some((body, took)) if head.len + took == self.buf.len() => body,
                Some(_) => return Err("bytes after the response".into()),
                None => return Ok(None),
            },
            Framing::Close if eof => self.buf[head.len..].to_vec(),
            Framing::Close => return Ok(None),
        };
        let keep = head.keep_alive;
        let head = self.head.take().ok_or("no head")?;
        self.buf.clear();
        Ok(Some((
            Reply {
                status: head.status,
                last_modified: head.last_modified,
                next_offset: head.next_offset,
                body,
            },
            keep,
        )))
    }
}

/// Runs `w` on one epoll loop over `workers` (one connection each) until `deadline`.
pub fn run(
    w: Workload,
    workers: Vec<Worker>,
    shared: &Shared,
    deadline: Instant,
    s: &mut Sample,
) -> Result<(), String> {
    let ep = Epoll::new().map_err(|e| e.to_string())?;
    let mut slots: Vec<Slot> = Vec::with_capacity(workers.len());
    for worker in workers {
        slots.push(Slot {
            worker,
            host: String::new(),
            port: 0,
            stream: None,
            used: 0,
            req: Vec::new(),
            written: 0,
            check: |_| Ok(()),
            head: None,
            buf: Vec::with_capacity(16 * 1024),
            t0: Instant::now(),
            resent: false,
            want_write: false,
        });
    }
    for (token, slot) in slots.iter_mut().enumerate() {
        start_next(slot, w, shared, &ep, token, s);
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; slots.len().max(1)];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let ms = left.as_millis().clamp(1, 1000) as i32;
        // SAFETY: `events` has room for `len` entries.
        let n = unsafe { libc::epoll_wait(ep.0, events.as_mut_ptr(), events.len() as i32, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.to_string());
        }
        for ev in &events[..n as usize] {
            let token = ev.u64 as usize;
            let Some(slot) = slots.get_mut(token) else {
                continue;
            };
            if slot.stream.is_none() {
                continue;
            }
            if ev.events & libc::EPOLLOUT as u32 != 0 {
                if let Err(e) = slot.write(&ep, token) {
                    fail(slot, w, shared, &ep, token, s, e);
                    continue;
                }
            }
            if ev.events
                & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32
                == 0
            {
                continue;
            }
            match slot.read() {
                Outcome::Pending => {}
                Outcome::Done(reply, keep) => {
                    let took = slot.t0.elapsed();
                    match (slot.check)(&reply) {
                        Ok(()) => s.ok(took),
                        Err(what) => s.error(what),
                    }
                    slot.used += 1;
                    if !keep {
                        slot.close();
                    }
                    start_next(slot, w, shared, &ep, token, s);
                }
                Outcome::Failed(e) => fail(slot, w, shared, &ep, token, s, e),
            }
        }
    }
}

/// A request got no answer: sent again once on a new connection when a reused one had been
/// closed before any byte came back (the server never saw it, so its nonce is still fresh);
/// otherwise a transport error, and the next request.
fn fail(
    slot: &mut Slot,
    w: Workload,
    shared: &Shared,
    ep: &Epoll,
    token: usize,
    s: &mut Sample,
    e: String,
) {
    let retry = slot.used > 0 && slot.buf.is_empty() && slot.head.is_none() && !slot.resent;
    slot.close();
    if retry {
        slot.resent = true;
        slot.written = 0;
        slot.t0 = Instant::now();
        if slot
            .connect(ep, token)
            .and_then(|()| slot.write(ep, token))
            .is_ok()
        {
            return;
        }
        slot.close();
    }
    s.transport(e);
    // Do not spin on a server that is down.
    if slot.used == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    start_next(slot, w, shared, ep, token, s);
}

/// Builds the slot's next request and starts sending it (connecting first if needed).
fn start_next(
    slot: &mut Slot,
    w: Workload,
    shared: &Shared,
    ep: &Epoll,
    token: usize,
    s: &mut Sample,
) {
    // A few attempts, so a run of failures to build or connect cannot recurse without end.
    for _ in 0..3 {
        let (req, check) = match slot.worker.next_single(w, shared) {
            Ok(x) => x,
            Err(f) => {
                f.record(s);
                continue;
            }
        };
        let Prepared::Http { host, port, bytes } = req else {
            s.transport("the event loop speaks plain http only".into());
            return;
        };
        if slot.stream.is_some() && (slot.host != host || slot.port != port) {
            slot.close();
        }
        slot.host = host;
        slot.port = port;
        slot.req = bytes;
        slot.written = 0;
        slot.check = check;
        slot.resent = false;
        slot.head = None;
        slot.buf.clear();
        if slot.stream.is_none() {
            if let Err(e) = slot.connect(ep, token) {
                s.transport(e);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        slot.t0 = Instant::now();
        match slot.write(ep, token) {
            Ok(()) => return,
            Err(e) => {
                slot.close();
                s.transport(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Account;
    use std::net::TcpListener;

    /// A server answering every request on every connection with `reply`, closing the
    /// connection after each `close_every`-th answer (with `Connection: close`).
    fn serve(status: &'static str, close_every: usize) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    for n in 1.. {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let close = n % close_every == 0;
                        let conn = if close { "Connection: close\r\n" } else { "" };
                        let r = format!("HTTP/1.1 {status}\r\n{conn}Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
                        if s.write_all(r.as_bytes()).is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    fn drive(port: u16, conns: usize) -> Sample {
        let shared = Shared {
            plain_url: format!("http://127.0.0.1:{port}/"),
            token_server: String::new(),
        };
        let workers = (0..conns)
            .map(|i| Worker::new(vec![Account::new(None, None)], i as u64))
            .collect();
        let mut s = Sample::default();
        let deadline = Instant::now() + Duration::from_millis(300);
        run(Workload::Plain, workers, &shared, deadline, &mut s).unwrap();
        s
    }

    #[test]
    fn keeps_connections_busy_and_reconnects_after_close() {
        let s = drive(serve("200 OK", 3), 3);
        assert!(s.ok_us.len() > 30, "{}", s.ok_us.len());
        assert!(s.statuses.is_empty(), "{:?}", s.statuses);
        assert_eq!(s.transport, 0, "{:?}", s.transport_msgs);
    }

    #[test]
    fn counts_bad_statuses_and_dead_servers() {
        let s = drive(serve("503 Busy", 1000), 2);
        assert!(s.ok_us.is_empty());
        assert!(
            s.statuses.get("503").is_some_and(|n| *n > 10),
            "{:?}",
            s.statuses
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = drive(port, 2);
        assert!(s.ok_us.is_empty() && s.transport > 0);
    }
}
