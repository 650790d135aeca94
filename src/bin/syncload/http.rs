//! A minimal HTTP/1.1 keep-alive client for plain `http://` targets: a request is built as
//! one buffer ahead of time (so sending it is one `write`), and the answer is parsed in place
//! from one read buffer (status line, the few headers the workloads follow, a body framed by
//! `Content-Length`, `chunked` or the end of the connection). Far cheaper per request than a
//! general client, which matters because the load tool's CPU comes off the server's cores.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

/// Largest head (status line + headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// A request as bytes on the wire, built by [`build`].
pub fn build(
    method: &str,
    host: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + path.len() + body.len() + 64 * headers.len());
    let path = if path.is_empty() { "/" } else { path };
    for part in [method, " ", path, " HTTP/1.1\r\nHost: ", host, ":"] {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(port.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, v) in headers {
        for part in [k, ": ", v, "\r\n"] {
            out.extend_from_slice(part.as_bytes());
        }
    }
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE") {
        if !body.is_empty() {
            out.extend_from_slice(b"Content-Type: application/json\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// How the body of an answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length: n`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body runs to the end of the connection.
    Close,
}

/// The head of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of status line and headers, the blank line included.
    pub len: usize,
    pub framing: Framing,
    /// Whether the connection may carry another request afterwards.
    pub keep_alive: bool,
    /// `X-Last-Modified`.
    pub last_modified: Option<String>,
    /// `X-Weave-Next-Offset`.
    pub next_offset: Option<String>,
}

/// A malformed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError(pub String);

fn bad(m: impl Into<String>) -> HttpError {
    HttpError(m.into())
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, HttpError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err(bad("response head too large"))
        } else {
            Ok(None)
        };
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| bad("response head not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(bad(format!("bad status line {status_line:?}"))),
    };
    let status: u16 = parts
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut head = Head {
        status,
        len: end + 4,
        framing: Framing::Close,
        keep_alive: !http10,
        last_modified: None,
        next_offset: None,
    };
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {line:?}")))?;
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            let n: usize = v
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {v:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            if !chunked {
                return Err(bad(format!("unsupported Transfer-Encoding {v:?}")));
            }
        } else if k.eq_ignore_ascii_case("connection") {
            for t in v.split(',').map(str::trim) {
                if t.eq_ignore_ascii_case("close") {
                    head.keep_alive = false;
                } else if t.eq_ignore_ascii_case("keep-alive") && http10 {
                    head.keep_alive = true;
                }
            }
        } else if k.eq_ignore_ascii_case("x-last-modified") {
            head.last_modified = Some(v.to_string());
        } else if k.eq_ignore_ascii_case("x-weave-next-offset") {
            head.next_offset = Some(v.to_string());
        }
    }
    head.framing = if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(bad("response body too large"));
        }
        Framing::Length(n)
    } else if status == 204 || status == 304 || status < 200 {
        Framing::Length(0)
    } else {
        Framing::Close
    };
    if head.framing == Framing::Close {
        head.keep_alive = false;
    }
    Ok(Some(head))
}

/// Decodes a chunked body at the start of `buf`: `Ok(None)` while it is incomplete, else the
/// body and the bytes it took (trailers included).
pub fn parse_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = find_crlf(&buf[at..]) else {
            return if buf.len() - at > 1024 {
                Err(bad("chunk size line too long"))
            } else {
                Ok(None)
            };
        };
        let line = std::str::from_utf8(&buf[at..at + eol]).map_err(|_| bad("bad chunk size"))?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(hex, 16).map_err(|_| bad(format!("bad chunk size {hex:?}")))?;
        at += eol + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(eol) = find_crlf(&buf[at..]) else {
                    return Ok(None);
                };
                at += eol + 2;
                if eol == 0 {
                    return Ok(Some((body, at)));
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(bad("response body too large"));
        }
        if buf.len() < at + size + 2 {
            return Ok(None);
        }
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

/// A whole answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub last_modified: Option<String>,
    pub next_offset: Option<String>,
    pub body: Vec<u8>,
}

/// One keep-alive connection to `host:port`, opened on first use and after the server ends it.
pub struct Conn {
    host: String,
    port: u16,
    stream: Option<TcpStream>,
    /// Answers made on the current stream.
    used: u64,
    buf: Vec<u8>,
    timeout: Duration,
}

fn io_err(e: io::Error) -> HttpError {
    bad(e.to_string())
}

impl Conn {
    /// A connection to `host:port` (not yet opened).
    pub fn new(host: &str, port: u16, timeout: Duration) -> Conn {
        Conn {
            host: host.to_string(),
            port,
            stream: None,
            used: 0,
            buf: Vec::with_capacity(16 * 1024),
            timeout,
        }
    }

    /// Whether this is the connection to `host:port`.
    pub fn is(&self, host: &str, port: u16) -> bool {
        self.port == port && self.host == host
    }

    fn open(&mut self) -> Result<&mut TcpStream, HttpError> {
        if self.stream.is_none() {
            let addr = (self.host.as_str(), self.port);
            let s = TcpStream::connect(addr)
                .map_err(|e| bad(format!("{}:{}: {e}", self.host, self.port)))?;
            s.set_nodelay(true).map_err(io_err)?;
            s.set_read_timeout(Some(self.timeout)).map_err(io_err)?;
            s.set_write_timeout(Some(self.timeout)).map_err(io_err)?;
            self.stream = Some(s);
            self.used = 0;
            self.buf.clear();
        }
        self.stream.as_mut().ok_or_else(|| bad("no connection"))
    }

    fn drop_stream(&mut self) {
        if let Some(s) = self.stream.take() {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.buf.clear();
    }

    /// Sends `req` (built by [`build`]) and reads the whole answer. A reused connection the
    /// server had closed before answering anything is reopened once and the request sent again
    /// (the server never saw it, so even its Hawk nonce is still fresh).
    pub fn roundtrip(&mut self, req: &[u8]) -> Result<Response, HttpError> {
        let reused = self.stream.is_some() && self.used > 0;
        match self.try_roundtrip(req) {
            Err((e, false)) if reused => {
                let _ = e;
                self.drop_stream();
                self.try_roundtrip(req).map_err(|(e, _)| e)
            }
            r => r.map_err(|(e, _)| e),
        }
    }

    /// The error says whether any answer byte had come back.
    fn try_roundtrip(&mut self, req: &[u8]) -> Result<Response, (HttpError, bool)> {
        let r = self.exchange(req);
        if r.is_err() {
            let answered = !self.buf.is_empty();
            self.drop_stream();
            return r.map_err(|e| (e, answered));
        }
        r.map_err(|e| (e, true))
    }

    fn fill(&mut self) -> Result<usize, HttpError> {
        let s = self.stream.as_mut().ok_or_else(|| bad("no connection"))?;
        let old = self.buf.len();
        if self.buf.capacity() - old < 8192 {
            self.buf.reserve(self.buf.capacity().max(16 * 1024));
        }
        let cap = self.buf.capacity();
        self.buf.resize(cap, 0);
        let n = loop {
            match s.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(io_err(e));
                }
            }
        };
        self.buf.truncate(old + n);
        Ok(n)
    }

    fn exchange(&mut self, req: &[u8]) -> Result<Response, HttpError> {
        self.buf.clear();
        self.open()?.write_all(req).map_err(io_err)?;
        let head = loop {
            if let Some(h) = parse_head(&self.buf)? {
                break h;
            }
            if self.fill()? == 0 {
                return Err(bad(if self.buf.is_empty() {
                    "connection closed before an answer"
                } else {
                    "connection closed inside the response head"
                }));
            }
        };
        let body = match head.framing {
            Framing::Length(n) => {
                while self.buf.len() < head.len + n {
                    if self.fill()? == 0 {
                        return Err(bad("connection closed inside the body"));
                    }
                }
                if self.buf.len() > head.len + n {
                    return Err(bad("bytes after the response"));
                }
                self.buf[head.len..].to_vec()
            }
            Framing::Chunked => loop {
                if let Some((body, took)) = parse_chunked(&self.buf[head.len..])? {
                    if head.len + took != self.buf.len() {
                        return Err(bad("bytes after the response"));
                    }
                    break body;
                }
                if self.fill()? == 0 {
                    return Err(bad("connection closed inside a chunked body"));
                }
            },
            Framing::Close => {
                while self.fill()? > 0 {
                    if self.buf.len() > head.len + MAX_BODY {
                        return Err(bad("response body too large"));
                    }
                }
                self.buf[head.len..].to_vec()
            }
        };
        self.used += 1;
        if head.keep_alive {
            self.buf.clear();
        } else {
            self.drop_stream();
        }
        Ok(Response {
            status: head.status,
            last_modified: head.last_modified,
            next_offset: head.next_offset,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn requests_are_built_whole() {
        let r = build("GET", "h", 8080, "/a?b=1", &[("Authorization", "x")], b"");
        assert_eq!(
            r,
            b"GET /a?b=1 HTTP/1.1\r\nHost: h:8080\r\nAuthorization: x\r\n\r\n".to_vec()
        );
        let r = build("POST", "h", 80, "", &[], b"{}");
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "POST / HTTP/1.1\r\nHost: h:80\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn heads_with_content_length() {
        let buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Last-Modified: 12.34\r\nx-weave-next-offset:  7 \r\n\r\nhello";
        let h = parse_head(buf).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(5));
        assert_eq!(h.len, buf.len() - 5);
        assert!(h.keep_alive);
        assert_eq!(h.last_modified.as_deref(), Some("12.34"));
        assert_eq!(h.next_offset.as_deref(), Some("7"));
        // Incomplete heads wait for more.
        assert_eq!(parse_head(&buf[..20]).unwrap(), None);
    }

    #[test]
    fn keep_alive_rules() {
        let h = |s: &[u8]| parse_head(s).unwrap().unwrap();
        assert!(
            !h(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive
        );
        assert!(!h(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(
            h(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n").keep_alive
        );
        // No length: the body ends with the connection.
        let nolen = h(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((nolen.framing, nolen.keep_alive), (Framing::Close, false));
        assert_eq!(
            h(b"HTTP/1.1 304 Not Modified\r\n\r\n").framing,
            Framing::Length(0)
        );
    }

    #[test]
    fn malformed_heads_are_errors() {
        for bad in [
            &b"HTTP/2 200\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            assert!(
                parse_head(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_head(&vec![b'x'; MAX_HEAD + 1]).is_err());
    }

    #[test]
    fn chunked_bodies() {
        let b = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let (body, took) = parse_chunked(b).unwrap().unwrap();
        assert_eq!(body, b"hello world");
        assert_eq!(&b[took..], b"NEXT");
        for cut in 0..b.len() - 4 {
            assert_eq!(parse_chunked(&b[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse_chunked(b"zz\r\n").is_err());
        assert!(parse_chunked(b"2\r\nabX\r\n").is_err());
    }

    /// A one-connection server answering each request with the next canned reply.
    fn serve(replies: Vec<&'static [u8]>) -> (u16, std::thread::JoinHandle<Vec<Vec<u8>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let (mut s, _) = l.accept().unwrap();
            for r in replies {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap();
                seen.push(buf[..n].to_vec());
                if r.is_empty() {
                    // Close without answering: the client reconnects.
                    drop(s);
                    s = l.accept().unwrap().0;
                    let n = s.read(&mut buf).unwrap();
                    seen.push(buf[..n].to_vec());
                    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nre")
                        .unwrap();
                    continue;
                }
                // Answer in two writes to exercise partial reads.
                let (a, b) = r.split_at(r.len() / 2);
                s.write_all(a).unwrap();
                std::thread::sleep(Duration::from_millis(5));
                s.write_all(b).unwrap();
            }
            seen
        });
        (port, t)
    }

    #[test]
    fn keep_alive_connection_carries_many_answers() {
        let (port, t) = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"",
            b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ]);
        let mut c = Conn::new("127.0.0.1", port, Duration::from_secs(5));
        let req = build("GET", "127.0.0.1", port, "/x", &[], b"");
        let r = c.roundtrip(&req).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"first"[..]));
        let r = c.roundtrip(&req).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abc"[..]));
        // The server drops the connection without answering: sent again on a new one.
        let r = c.roundtrip(&req).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"re"[..]));
        let r = c.roundtrip(&req).unwrap();
        assert_eq!(r.status, 503);
        assert!(c.stream.is_none(), "Connection: close ends the stream");
        let seen = t.join().unwrap();
        assert_eq!(seen.len(), 5);
        assert!(seen.iter().all(|s| s == &req));
    }

    #[test]
    fn a_truncated_answer_is_an_error() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
                .unwrap();
        });
        let mut c = Conn::new("127.0.0.1", port, Duration::from_secs(5));
        let e = c
            .roundtrip(&build("GET", "h", 1, "/", &[], b""))
            .unwrap_err();
        assert!(e.0.contains("inside the body"), "{e:?}");
        t.join().unwrap();
        // Nothing listening any more: a connect error, not a hang.
        assert!(c.roundtrip(b"GET / HTTP/1.1\r\n\r\n").is_err());
    }
}
