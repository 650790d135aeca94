//! One connection as the event loop sees it: a non-blocking socket, the bytes received but not
//! yet parsed, the request being assembled, the bytes still to send, and the deadline that
//! applies in its current phase. Parsing and protocol replies happen here; the application's
//! handler never runs here (see `server.rs`). Every protocol violation ends the connection with
//! one log line.

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::record::{self, BeginRequest, Header, RecordError};
use super::sys::Socket;
use super::{FcgiRequest, ServerOptions};

/// Upper bound on the unread input swallowed before closing.
const LINGER_BYTES: usize = 1 << 20;
/// Bytes read from one connection per turn of the event loop, so that one fast sender of a
/// large body cannot starve the others.
const READ_PER_TURN: usize = 256 * 1024;
/// Size of one read, and of the scratch buffer the event loop reads into.
pub(crate) const READ_CHUNK: usize = 64 * 1024;
/// Buffers bigger than this are released when a connection goes idle, so hundreds of idle
/// connections hold little memory after one large request each.
const KEEP_CAPACITY: usize = 16 * 1024;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Number of requests between BEGIN_REQUEST and the end of their response, process-wide.
pub(crate) fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Relaxed)
}

/// Counts one request in [`in_flight`] for as long as it lives.
#[derive(Debug)]
struct InFlight;

impl InFlight {
    fn new() -> InFlight {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection was dropped.
#[derive(Debug)]
pub(crate) enum ConnError {
    /// Bytes that are not FastCGI.
    Protocol(RecordError),
    /// A record type the client must not send in this state.
    Unexpected { rtype: u8, request_id: u16 },
    /// The params of one request exceed `max_params`.
    ParamsTooLarge { limit: usize },
    /// The peer closed in the middle of a record or a request.
    Truncated,
    /// The peer did not send a request's head (BEGIN_REQUEST and PARAMS) in time.
    HeadTimeout(Duration),
    /// The peer stalled longer than `io_timeout` while sending a body or reading a response.
    Timeout(Duration),
    /// Reading failed.
    Read(io::Error),
    /// Writing failed: the peer is gone; not worth a warning.
    Write(io::Error),
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(e) => write!(f, "malformed FastCGI input: {e}"),
            Self::Unexpected { rtype, request_id } => write!(
                f,
                "unexpected FastCGI record type {rtype} for request id {request_id}"
            ),
            Self::ParamsTooLarge { limit } => {
                write!(f, "FastCGI params exceed {limit} bytes")
            }
            Self::Truncated => write!(f, "peer closed the connection in the middle of a request"),
            Self::HeadTimeout(t) => write!(
                f,
                "peer sent no complete request head within {t:?} (header timeout)"
            ),
            Self::Timeout(t) => write!(
                f,
                "peer stalled for {t:?} in the middle of a request (io timeout)"
            ),
            Self::Read(e) => write!(f, "read error: {e}"),
            Self::Write(e) => write!(f, "write error (peer gone?): {e}"),
        }
    }
}

impl From<RecordError> for ConnError {
    fn from(e: RecordError) -> Self {
        ConnError::Protocol(e)
    }
}

impl ConnError {
    /// Whether closing for this reason is worth a warning (a vanished peer is not).
    pub(crate) fn is_quiet(&self) -> bool {
        matches!(self, ConnError::Write(_))
    }
}

/// The request being received.
struct Active {
    id: u16,
    keep_conn: bool,
    params_raw: Vec<u8>,
    params: Option<record::Params>,
    body: Vec<u8>,
    body_too_large: bool,
}

/// Where a connection stands; decides which deadline applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests: nothing of the next one has arrived.
    Idle,
    /// The head (BEGIN_REQUEST and PARAMS) of a request is arriving.
    Head,
    /// The body (STDIN) is arriving.
    Body,
    /// A handler has the request; nothing is read until it answers.
    Busy,
}

/// What the event loop must do after feeding a connection input.
pub(crate) enum Progress {
    /// Nothing to hand over; keep polling.
    Pending,
    /// A complete request: give it to a handler.
    Request(FcgiRequest),
}

/// One accepted connection. Owned by the event loop; only its request travels to a handler.
pub(crate) struct Conn {
    pub(crate) sock: Socket,
    /// Received bytes from `in_pos` on are not parsed yet.
    inbuf: Vec<u8>,
    in_pos: usize,
    /// Bytes to send from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    active: Option<Active>,
    phase: Phase,
    /// The request a handler is working on, and whether the connection stays open after it.
    busy: Option<(u16, bool, InFlight)>,
    /// When the current phase must end (None while a handler works).
    deadline: Option<Instant>,
    /// When the unsent output must have moved on.
    write_deadline: Option<Instant>,
    /// Close once `out` is sent.
    close_after_flush: bool,
    /// The peer half-closed: no more input will come.
    peer_eof: bool,
    /// When the connection last became idle, for choosing which idle one to close first.
    pub(crate) idle_since: Instant,
    /// Whether this connection has completed at least one request (idle = kept alive).
    served: bool,
}

impl Conn {
    /// A freshly accepted connection: its first request's head is due within `header_timeout`.
    pub(crate) fn new(sock: Socket, opts: &ServerOptions, now: Instant) -> Conn {
        Conn {
            sock,
            inbuf: Vec::new(),
            in_pos: 0,
            out: Vec::new(),
            out_pos: 0,
            active: None,
            phase: Phase::Idle,
            busy: None,
            deadline: Some(now + opts.header_timeout),
            write_deadline: None,
            close_after_flush: false,
            peer_eof: false,
            idle_since: now,
            served: false,
        }
    }

    /// Waiting for a request with nothing pending: may be closed at any time without losing
    /// anything (shutdown, or to make room for a new connection).
    pub(crate) fn is_idle(&self) -> bool {
        self.phase == Phase::Idle
            && self.busy.is_none()
            && self.out_pos >= self.out.len()
            && self.in_pos >= self.inbuf.len()
    }

    /// Whether the event loop should wait for input on this connection.
    pub(crate) fn wants_read(&self) -> bool {
        self.busy.is_none() && !self.peer_eof && !self.has_output()
    }

    /// Whether there is output waiting for the socket to drain.
    pub(crate) fn has_output(&self) -> bool {
        self.out_pos < self.out.len()
    }

    /// Whether a handler has this connection's request.
    pub(crate) fn is_busy(&self) -> bool {
        self.busy.is_some()
    }

    /// Whether the connection is done and should be closed now.
    pub(crate) fn is_finished(&self) -> bool {
        !self.has_output() && self.busy.is_none() && self.close_after_flush
    }

    /// The earliest moment something about this connection expires.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match (self.deadline, self.write_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The error to close with if a deadline passed at `now`; a quietly expiring idle
    /// connection gives `Some(None)`.
    pub(crate) fn expired(&self, now: Instant, opts: &ServerOptions) -> Option<Option<ConnError>> {
        if self.write_deadline.is_some_and(|d| d <= now) {
            return Some(Some(ConnError::Timeout(opts.io_timeout)));
        }
        if self.deadline.is_none_or(|d| d > now) {
            return None;
        }
        Some(match self.phase {
            Phase::Idle if self.in_pos >= self.inbuf.len() => {
                if self.served {
                    log::debug!(
                        "fastcgi: closing idle connection after {:?}",
                        opts.idle_timeout
                    );
                } else {
                    log::debug!(
                        "fastcgi: closing a connection that sent nothing within {:?}",
                        opts.header_timeout
                    );
                }
                None
            }
            Phase::Idle | Phase::Head => Some(ConnError::HeadTimeout(opts.header_timeout)),
            Phase::Body | Phase::Busy => Some(ConnError::Timeout(opts.io_timeout)),
        })
    }

    /// Reads what the peer sent (up to a per-turn budget, through the loop's `scratch`
    /// buffer) and parses complete records.
    pub(crate) fn on_readable(
        &mut self,
        scratch: &mut [u8],
        opts: &ServerOptions,
        now: Instant,
    ) -> Result<Progress, ConnError> {
        let mut budget = READ_PER_TURN;
        while budget > 0 && !self.peer_eof {
            let n = match (&self.sock).read(scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(ConnError::Read(e)),
            };
            self.compact_input();
            self.inbuf.extend_from_slice(&scratch[..n]);
            if n == 0 {
                self.peer_eof = true;
                break;
            }
            budget = budget.saturating_sub(n);
            if self.phase == Phase::Body {
                // A body that keeps arriving keeps its connection alive.
                self.deadline = Some(now + opts.io_timeout);
            }
        }
        let progress = self.parse(opts, now)?;
        self.check_eof()?;
        Ok(progress)
    }

    /// After the peer half-closed and everything it sent is parsed: a request cut short is
    /// an error; otherwise close once the answers are out.
    fn check_eof(&mut self) -> Result<(), ConnError> {
        if self.peer_eof && self.busy.is_none() {
            if self.active.is_some() || self.in_pos < self.inbuf.len() {
                return Err(ConnError::Truncated);
            }
            self.close_after_flush = true;
        }
        Ok(())
    }

    /// Parses the complete records in the input buffer until a request is complete.
    fn parse(&mut self, opts: &ServerOptions, now: Instant) -> Result<Progress, ConnError> {
        while self.busy.is_none() && !self.close_after_flush {
            let available = self.inbuf.len() - self.in_pos;
            if available > 0 && self.phase == Phase::Idle {
                self.start_head(opts, now);
            }
            if available < record::HEADER_LEN {
                return Ok(Progress::Pending);
            }
            let header = Header::decode(&self.inbuf[self.in_pos..])?;
            let total = record::HEADER_LEN
                + usize::from(header.content_length)
                + usize::from(header.padding_length);
            if available < total {
                return Ok(Progress::Pending);
            }
            let start = self.in_pos + record::HEADER_LEN;
            let content = start..start + usize::from(header.content_length);
            self.in_pos += total;
            if let Some(request) = self.on_record(header, content, opts, now)? {
                return Ok(Progress::Request(request));
            }
        }
        Ok(Progress::Pending)
    }

    /// The first byte of a request arrived: its head is due within `header_timeout`.
    fn start_head(&mut self, opts: &ServerOptions, now: Instant) {
        self.phase = Phase::Head;
        self.deadline = Some(now + opts.header_timeout);
    }

    /// Drops parsed bytes from the front of the input buffer.
    fn compact_input(&mut self) {
        if self.in_pos >= self.inbuf.len() {
            self.inbuf.clear();
            self.inbuf.shrink_to(KEEP_CAPACITY);
        } else if self.in_pos > 0 {
            self.inbuf.drain(..self.in_pos);
        }
        self.in_pos = 0;
    }

    fn on_record(
        &mut self,
        h: Header,
        content: std::ops::Range<usize>,
        opts: &ServerOptions,
        now: Instant,
    ) -> Result<Option<FcgiRequest>, ConnError> {
        let id = h.request_id;
        let is_active = self.active.as_ref().is_some_and(|a| a.id == id);
        match h.rtype {
            record::GET_VALUES if id == 0 => {
                let max = opts.max_connections.max(1);
                record::encode_get_values_result(&self.inbuf[content], max, &mut self.out)?;
                self.after_reply(now, opts);
                Ok(None)
            }
            t if t == 0 || t > record::UNKNOWN_TYPE => {
                record::encode_unknown_type(t, &mut self.out);
                self.after_reply(now, opts);
                Ok(None)
            }
            record::BEGIN_REQUEST if id != 0 => {
                let begin = BeginRequest::decode(&self.inbuf[content])?;
                self.on_begin(id, begin, opts, now)?;
                Ok(None)
            }
            record::ABORT_REQUEST if id != 0 => {
                if is_active {
                    let keep_conn = self.active.take().is_some_and(|a| a.keep_conn);
                    log::debug!("fastcgi: request {id} aborted by the web server");
                    // Protocol status REQUEST_COMPLETE with app status 0: the request is over
                    // and nothing went wrong on our side.
                    record::encode_end_request(id, 0, record::REQUEST_COMPLETE, &mut self.out);
                    self.request_over(keep_conn, opts, now);
                }
                // Otherwise a request we already finished or refused.
                Ok(None)
            }
            record::PARAMS | record::STDIN | record::DATA if id != 0 => {
                if is_active {
                    self.on_stream(h.rtype, content, opts, now)
                } else {
                    // Leftovers of a request we refused (CANT_MPX_CONN, UNKNOWN_ROLE) or that
                    // was aborted: the spec says to ignore records for inactive ids.
                    Ok(None)
                }
            }
            rtype => Err(ConnError::Unexpected {
                rtype,
                request_id: id,
            }),
        }
    }

    fn on_begin(
        &mut self,
        id: u16,
        begin: BeginRequest,
        opts: &ServerOptions,
        now: Instant,
    ) -> Result<(), ConnError> {
        match &self.active {
            Some(a) if a.id == id => {
                return Err(ConnError::Unexpected {
                    rtype: record::BEGIN_REQUEST,
                    request_id: id,
                })
            }
            Some(_) => {
                record::encode_end_request(id, 0, record::CANT_MPX_CONN, &mut self.out);
                self.after_reply(now, opts);
                return Ok(());
            }
            None => {}
        }
        if begin.role != record::ROLE_RESPONDER {
            log::warn!(
                "fastcgi: refusing role {} (only the responder role is supported)",
                begin.role
            );
            record::encode_end_request(id, 0, record::UNKNOWN_ROLE, &mut self.out);
            self.request_over(begin.keep_conn(), opts, now);
            return Ok(());
        }
        self.active = Some(Active {
            id,
            keep_conn: begin.keep_conn(),
            params_raw: Vec::new(),
            params: None,
            body: Vec::new(),
            body_too_large: false,
        });
        Ok(())
    }

    fn on_stream(
        &mut self,
        rtype: u8,
        content: std::ops::Range<usize>,
        opts: &ServerOptions,
        now: Instant,
    ) -> Result<Option<FcgiRequest>, ConnError> {
        let Some(a) = self.active.as_mut() else {
            return Ok(None);
        };
        let data = &self.inbuf[content];
        match (rtype, a.params.is_some()) {
            (record::PARAMS, false) if data.is_empty() => {
                let params = record::decode_pairs(&a.params_raw)?;
                a.params_raw = Vec::new();
                let declared = params
                    .iter()
                    .rev()
                    .find(|(n, _)| n == b"CONTENT_LENGTH")
                    .and_then(|(_, v)| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
                match declared {
                    Some(n) if n > opts.max_body as u64 => a.body_too_large = true,
                    // Only what the web server declared and we would accept anyway.
                    Some(n) => a.body.reserve_exact(n as usize),
                    None => {}
                }
                a.params = Some(params);
                // The head is complete; the body may take as long as it keeps moving.
                self.phase = Phase::Body;
                self.deadline = Some(now + opts.io_timeout);
                Ok(None)
            }
            (record::PARAMS, false) => {
                if a.params_raw.len() + data.len() > opts.max_params {
                    return Err(ConnError::ParamsTooLarge {
                        limit: opts.max_params,
                    });
                }
                a.params_raw.extend_from_slice(data);
                Ok(None)
            }
            (record::STDIN, true) if data.is_empty() => {
                let Some(a) = self.active.take() else {
                    return Ok(None);
                };
                self.phase = Phase::Busy;
                self.deadline = None;
                self.busy = Some((a.id, a.keep_conn, InFlight::new()));
                Ok(Some(FcgiRequest {
                    params: a.params.unwrap_or_default(),
                    body: a.body,
                    body_too_large: a.body_too_large,
                }))
            }
            (record::STDIN, true) => {
                if a.body_too_large {
                    return Ok(None); // discard to the end of stdin
                }
                if a.body.len() + data.len() > opts.max_body {
                    a.body_too_large = true;
                    a.body = Vec::new();
                    return Ok(None);
                }
                a.body.extend_from_slice(data);
                Ok(None)
            }
            // The responder role has no DATA stream; tolerate it like the spec's filter data.
            (record::DATA, _) => Ok(None),
            _ => Err(ConnError::Unexpected {
                rtype,
                request_id: a.id,
            }),
        }
    }

    /// The handler's answer for the busy request: queue it as STDOUT records and END_REQUEST.
    pub(crate) fn respond(&mut self, response: Vec<u8>, opts: &ServerOptions, now: Instant) {
        let Some((id, keep_conn, counted)) = self.busy.take() else {
            return;
        };
        self.compact_output();
        // Framed in the answer's own buffer, which becomes the output buffer when nothing
        // else is queued (the usual case): a big answer is not copied.
        let framed = record::frame_stream_in_place(record::STDOUT, id, response);
        if self.out.is_empty() {
            self.out = framed;
        } else {
            self.out.extend_from_slice(&framed);
        }
        record::encode_end_request(id, 0, record::REQUEST_COMPLETE, &mut self.out);
        // The request is over once its answer is queued.
        drop(counted);
        self.request_over(keep_conn, opts, now);
    }

    /// A request ended (answered, aborted or refused): wait for the next one or close.
    fn request_over(&mut self, keep_conn: bool, opts: &ServerOptions, now: Instant) {
        self.compact_input();
        self.served = true;
        self.phase = Phase::Idle;
        self.deadline = Some(now + opts.idle_timeout);
        self.idle_since = now;
        if !keep_conn {
            self.close_after_flush = true;
        }
        self.after_reply(now, opts);
    }

    /// Output was queued: it must start moving within `io_timeout`.
    fn after_reply(&mut self, now: Instant, opts: &ServerOptions) {
        if self.has_output() && self.write_deadline.is_none() {
            self.write_deadline = Some(now + opts.io_timeout);
        }
    }

    fn compact_output(&mut self) {
        if self.out_pos >= self.out.len() {
            self.out.clear();
            self.out.shrink_to(KEEP_CAPACITY);
            self.out_pos = 0;
        } else if self.out_pos > 0 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    /// Sends as much queued output as the socket takes without blocking.
    pub(crate) fn flush(&mut self, opts: &ServerOptions, now: Instant) -> Result<(), ConnError> {
        while self.out_pos < self.out.len() {
            match (&self.sock).write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(ConnError::Write(io::Error::from(io::ErrorKind::WriteZero))),
                Ok(n) => {
                    self.out_pos += n;
                    self.write_deadline = Some(now + opts.io_timeout);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(ConnError::Write(e)),
            }
        }
        self.compact_output();
        self.write_deadline = None;
        Ok(())
    }

    /// Parses input that arrived while a handler was busy (a pipelined request). Called after
    /// the response is queued.
    pub(crate) fn resume(
        &mut self,
        opts: &ServerOptions,
        now: Instant,
    ) -> Result<Progress, ConnError> {
        if self.close_after_flush {
            return Ok(Progress::Pending);
        }
        let progress = self.parse(opts, now)?;
        self.check_eof()?;
        Ok(progress)
    }

    /// Close this connection once its current request, if any, is answered (shutdown).
    pub(crate) fn close_when_done(&mut self) {
        self.close_after_flush = true;
    }

    /// Closes after a complete response: half-close so the peer sees EOF, then swallow input
    /// that has already arrived (bounded, without waiting) so that closing with unread data
    /// does not make the kernel reset the connection under the response.
    pub(crate) fn linger_close(self) {
        if self.sock.shutdown_write().is_err() {
            return;
        }
        let mut scratch = [0u8; 8192];
        let mut swallowed = 0;
        while swallowed < LINGER_BYTES {
            match (&self.sock).read(&mut scratch) {
                Ok(0) | Err(_) => return,
                Ok(n) => swallowed += n,
            }
        }
    }
}
