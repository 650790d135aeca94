//! One connection's request loop: read records, assemble one request at a time, call the
//! handler, write the response. Every protocol violation ends the connection with one log line.

use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::record::{self, BeginRequest, Header, RecordError};
use super::sys::{self, Socket};
use super::{FcgiRequest, Handler, ServerOptions};

/// What a panicking handler answers: the bare-integer body Sync clients expect on errors.
const PANIC_RESPONSE: &[u8] =
    b"Status: 500 Internal Server Error\r\nContent-Type: application/json\r\n\r\n0";
/// How often a waiting connection re-checks the shutdown flag.
const SLICE: Duration = Duration::from_millis(250);
/// Upper bound on the unread input swallowed before closing.
const LINGER_BYTES: usize = 1 << 20;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Number of requests between BEGIN_REQUEST and the end of their response, process-wide.
pub(crate) fn in_flight() -> usize {
    IN_FLIGHT.load(Ordering::Relaxed)
}

/// Counts one request in [`in_flight`] for as long as it lives.
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

/// What every connection of one server shares.
pub(crate) struct Ctx {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) opts: ServerOptions,
    /// The caller's shutdown flag.
    pub(crate) shutdown: Arc<AtomicBool>,
    /// Set by the server itself when it stops for its own reasons (the listener broke).
    pub(crate) stopping: AtomicBool,
}

impl Ctx {
    fn is_stopping(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst) || self.stopping.load(Ordering::SeqCst)
    }
}

/// Why a connection was dropped.
#[derive(Debug)]
enum ConnError {
    /// Bytes that are not FastCGI.
    Protocol(RecordError),
    /// A record type the client must not send in this state.
    Unexpected { rtype: u8, request_id: u16 },
    /// The params of one request exceed `max_params`.
    ParamsTooLarge { limit: usize },
    /// The peer closed in the middle of a record or a request.
    Truncated,
    /// The peer stalled longer than `io_timeout`.
    Timeout,
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
            Self::Timeout => write!(f, "peer stalled in the middle of a request (io timeout)"),
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

fn read_error(e: io::Error) -> ConnError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ConnError::Timeout,
        io::ErrorKind::UnexpectedEof => ConnError::Truncated,
        _ => ConnError::Read(e),
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
    _counted: InFlight,
}

/// What the record just read means for the loop.
enum Step {
    Continue,
    /// The body is complete: call the handler.
    Ready,
    /// The request ended without a handler call (aborted, unknown role); answer then maybe
    /// keep the connection.
    Ended {
        keep_conn: bool,
    },
}

/// Serves one accepted connection until it closes, breaks, idles out or the server stops.
pub(crate) fn serve_connection(sock: Socket, ctx: &Ctx) {
    if let Err(e) = sock.set_timeouts(ctx.opts.io_timeout) {
        log::warn!("fastcgi: cannot set socket timeouts, dropping connection: {e}");
        return;
    }
    let mut conn = Conn {
        sock: &sock,
        reader: BufReader::with_capacity(64 * 1024, &sock),
        writer: BufWriter::with_capacity(16 * 1024, &sock),
        ctx,
        content: Vec::new(),
    };
    match conn.run() {
        Ok(()) => log::debug!("fastcgi: connection closed"),
        Err(e @ ConnError::Write(_)) => log::debug!("fastcgi: connection dropped: {e}"),
        Err(e) => log::warn!("fastcgi: closing connection: {e}"),
    }
}

struct Conn<'a> {
    sock: &'a Socket,
    reader: BufReader<&'a Socket>,
    writer: BufWriter<&'a Socket>,
    ctx: &'a Ctx,
    /// Content of the last record read; reused to avoid an allocation per record.
    content: Vec<u8>,
}

impl Conn<'_> {
    fn run(&mut self) -> Result<(), ConnError> {
        let mut active: Option<Active> = None;
        let mut served = false;
        loop {
            if active.is_none() {
                // The first request is due right after connect; later ones may idle.
                let wait = if served {
                    self.ctx.opts.idle_timeout
                } else {
                    self.ctx.opts.io_timeout
                };
                if !self.wait_for_input(wait) {
                    return Ok(());
                }
            }
            let Some(header) = self.read_record()? else {
                return match active {
                    None => Ok(()),
                    Some(_) => Err(ConnError::Truncated),
                };
            };
            let keep_conn = match self.on_record(header, &mut active)? {
                Step::Continue => continue,
                Step::Ready => match active.take() {
                    Some(req) => {
                        let keep = req.keep_conn;
                        self.respond(req)?;
                        keep
                    }
                    None => continue,
                },
                Step::Ended { keep_conn } => keep_conn,
            };
            served = true;
            if !keep_conn || self.ctx.is_stopping() {
                self.linger_close();
                return Ok(());
            }
        }
    }

    /// Waits for the next request's first byte, in slices so a shutdown closes idle
    /// connections promptly. False means close quietly (idle timeout, shutdown, poll error).
    fn wait_for_input(&self, timeout: Duration) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match sys::poll_readable(self.sock.as_raw_fd(), left.min(SLICE)) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    log::debug!("fastcgi: poll failed on a connection: {e}");
                    return false;
                }
            }
            if self.ctx.is_stopping() {
                log::debug!("fastcgi: closing idle connection for shutdown");
                return false;
            }
            if left.is_zero() {
                log::debug!("fastcgi: closing idle connection after {timeout:?}");
                return false;
            }
        }
    }

    /// Reads one record into `self.content`. `Ok(None)`: clean EOF before a header.
    fn read_record(&mut self) -> Result<Option<Header>, ConnError> {
        let mut hdr = [0u8; record::HEADER_LEN];
        let mut got = 0;
        while got < hdr.len() {
            let n = match self.reader.read(&mut hdr[got..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(e)),
            };
            if n == 0 {
                return if got == 0 {
                    Ok(None)
                } else {
                    Err(ConnError::Truncated)
                };
            }
            got += n;
        }
        let header = Header::decode(&hdr)?;
        self.content.resize(usize::from(header.content_length), 0);
        self.reader
            .read_exact(&mut self.content)
            .map_err(read_error)?;
        let mut padding = [0u8; 255];
        let padding = padding
            .get_mut(..usize::from(header.padding_length))
            .unwrap_or_default();
        self.reader.read_exact(padding).map_err(read_error)?;
        Ok(Some(header))
    }

    fn on_record(&mut self, h: Header, active: &mut Option<Active>) -> Result<Step, ConnError> {
        let id = h.request_id;
        let is_active = active.as_ref().is_some_and(|a| a.id == id);
        match h.rtype {
            record::GET_VALUES if id == 0 => {
                let mut out = Vec::new();
                let max = self.ctx.opts.max_connections.max(1);
                record::encode_get_values_result(&self.content, max, &mut out)?;
                self.send(&out)?;
                Ok(Step::Continue)
            }
            t if t == 0 || t > record::UNKNOWN_TYPE => {
                let mut out = Vec::new();
                record::encode_unknown_type(t, &mut out);
                self.send(&out)?;
                Ok(Step::Continue)
            }
            record::BEGIN_REQUEST if id != 0 => self.on_begin(id, active),
            record::ABORT_REQUEST if id != 0 => {
                if !is_active {
                    return Ok(Step::Continue); // a request we already finished or refused
                }
                let keep_conn = active.take().is_some_and(|a| a.keep_conn);
                log::debug!("fastcgi: request {id} aborted by the web server");
                // Protocol status REQUEST_COMPLETE with app status 0: the request is over
                // and nothing went wrong on our side.
                self.end_request(id, record::REQUEST_COMPLETE)?;
                Ok(Step::Ended { keep_conn })
            }
            record::PARAMS | record::STDIN | record::DATA if id != 0 => match active {
                Some(a) if a.id == id => self.on_stream(h.rtype, a),
                // Leftovers of a request we refused (CANT_MPX_CONN, UNKNOWN_ROLE) or that was
                // aborted: the spec says to ignore records for inactive ids.
                _ => Ok(Step::Continue),
            },
            rtype => Err(ConnError::Unexpected {
                rtype,
                request_id: id,
            }),
        }
    }

    fn on_begin(&mut self, id: u16, active: &mut Option<Active>) -> Result<Step, ConnError> {
        let begin = BeginRequest::decode(&self.content)?;
        match active {
            Some(a) if a.id == id => {
                return Err(ConnError::Unexpected {
                    rtype: record::BEGIN_REQUEST,
                    request_id: id,
                })
            }
            Some(_) => {
                self.end_request(id, record::CANT_MPX_CONN)?;
                return Ok(Step::Continue);
            }
            None => {}
        }
        if begin.role != record::ROLE_RESPONDER {
            log::warn!(
                "fastcgi: refusing role {} (only the responder role is supported)",
                begin.role
            );
            self.end_request(id, record::UNKNOWN_ROLE)?;
            return Ok(Step::Ended {
                keep_conn: begin.keep_conn(),
            });
        }
        *active = Some(Active {
            id,
            keep_conn: begin.keep_conn(),
            params_raw: Vec::new(),
            params: None,
            body: Vec::new(),
            body_too_large: false,
            _counted: InFlight::new(),
        });
        Ok(Step::Continue)
    }

    fn on_stream(&mut self, rtype: u8, a: &mut Active) -> Result<Step, ConnError> {
        let opts = &self.ctx.opts;
        let unexpected = ConnError::Unexpected {
            rtype,
            request_id: a.id,
        };
        match (rtype, a.params.is_some()) {
            (record::PARAMS, false) if self.content.is_empty() => {
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
                Ok(Step::Continue)
            }
            (record::PARAMS, false) => {
                if a.params_raw.len() + self.content.len() > opts.max_params {
                    return Err(ConnError::ParamsTooLarge {
                        limit: opts.max_params,
                    });
                }
                a.params_raw.extend_from_slice(&self.content);
                Ok(Step::Continue)
            }
            (record::STDIN, true) if self.content.is_empty() => Ok(Step::Ready),
            (record::STDIN, true) => {
                if a.body_too_large {
                    return Ok(Step::Continue); // discard to the end of stdin
                }
                if a.body.len() + self.content.len() > opts.max_body {
                    a.body_too_large = true;
                    a.body = Vec::new();
                    return Ok(Step::Continue);
                }
                a.body.extend_from_slice(&self.content);
                Ok(Step::Continue)
            }
            // The responder role has no DATA stream; tolerate it like the spec's filter data.
            (record::DATA, _) => Ok(Step::Continue),
            _ => Err(unexpected),
        }
    }

    /// Calls the handler (a panic becomes a 500) and writes its response.
    fn respond(&mut self, req: Active) -> Result<(), ConnError> {
        let id = req.id;
        let request = FcgiRequest {
            params: req.params.unwrap_or_default(),
            body: req.body,
            body_too_large: req.body_too_large,
        };
        let handler = &self.ctx.handler;
        let response =
            catch_unwind(AssertUnwindSafe(|| handler.handle(request))).unwrap_or_else(|payload| {
                let msg = payload
                    .downcast_ref::<&str>()
                    .copied()
                    .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                    .unwrap_or("(non-string panic payload)");
                log::error!("fastcgi: request handler panicked: {msg}");
                PANIC_RESPONSE.to_vec()
            });
        self.write_stdout(id, &response).map_err(ConnError::Write)?;
        // The rest of `req`, its InFlight guard, drops on return: the request is over.
        self.end_request(id, record::REQUEST_COMPLETE)
    }

    /// Writes the response as STDOUT records straight into the buffered writer, avoiding a
    /// second copy of large bodies.
    fn write_stdout(&mut self, id: u16, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(record::MAX_CONTENT) {
            let padding = record::padding_for(chunk.len());
            let header = Header {
                rtype: record::STDOUT,
                request_id: id,
                content_length: chunk.len() as u16,
                padding_length: padding,
            };
            self.writer.write_all(&header.encode())?;
            self.writer.write_all(chunk)?;
            self.writer.write_all(&[0u8; 8][..usize::from(padding)])?;
        }
        let end = Header {
            rtype: record::STDOUT,
            request_id: id,
            content_length: 0,
            padding_length: 0,
        };
        self.writer.write_all(&end.encode())
    }

    /// Writes END_REQUEST (app status 0) and flushes: the one flush per response.
    fn end_request(&mut self, id: u16, protocol_status: u8) -> Result<(), ConnError> {
        let mut out = Vec::with_capacity(16);
        record::encode_end_request(id, 0, protocol_status, &mut out);
        self.send(&out)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.writer
            .write_all(bytes)
            .and_then(|()| self.writer.flush())
            .map_err(ConnError::Write)
    }

    /// Closes after a complete response: half-close so the peer sees EOF, then swallow input
    /// that has already arrived (bounded, without waiting) so that closing with unread data
    /// does not make the kernel reset the connection under the response.
    fn linger_close(&mut self) {
        if self.sock.shutdown_write().is_err() {
            return;
        }
        let mut swallowed = self.reader.buffer().len();
        self.reader.consume(swallowed);
        let mut scratch = [0u8; 8192];
        while swallowed < LINGER_BYTES
            && matches!(
                sys::poll_readable(self.sock.as_raw_fd(), Duration::ZERO),
                Ok(true)
            )
        {
            match self.reader.get_mut().read(&mut scratch) {
                Ok(0) | Err(_) => return,
                Ok(n) => swallowed += n,
            }
        }
    }
}
