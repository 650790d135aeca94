//! A small synchronous FastCGI client for tests: plays the web server's part (nginx, Apache)
//! against the real responder. Written independently of `crates/fcgi/src/record.rs` so that it also
//! cross-checks the server's encoding.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

const BEGIN_REQUEST: u8 = 1;
const END_REQUEST: u8 = 3;
const PARAMS: u8 = 4;
const STDIN: u8 = 5;
const STDOUT: u8 = 6;
const STDERR: u8 = 7;
const GET_VALUES: u8 = 9;
const GET_VALUES_RESULT: u8 = 10;

/// A parsed CGI response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgiResponse {
    /// From the `Status:` header; 200 if absent.
    pub status: u16,
    /// Header lines in order (the Status line included).
    pub headers: Vec<(String, String)>,
    /// Everything after the blank line.
    pub body: Vec<u8>,
}

impl CgiResponse {
    /// First header with this name, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {}", self.status, self.text()))
    }

    /// Parses CGI output: header lines, a blank line, the body.
    pub fn parse(raw: &[u8]) -> io::Result<CgiResponse> {
        let (head, body) = split_head(raw)
            .ok_or_else(|| bad_data("CGI response has no blank line after the headers"))?;
        let head = std::str::from_utf8(head).map_err(|_| bad_data("CGI headers not UTF-8"))?;
        let mut headers = Vec::new();
        let mut status = 200;
        for line in head.split('\n').map(|l| l.trim_end_matches('\r')) {
            if line.is_empty() {
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad_data("CGI header line without a colon"))?;
            let value = value.trim().to_string();
            if name.eq_ignore_ascii_case("Status") {
                status = value
                    .split_whitespace()
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad_data("bad Status header"))?;
            }
            headers.push((name.to_string(), value));
        }
        Ok(CgiResponse {
            status,
            headers,
            body: body.to_vec(),
        })
    }
}

fn split_head(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some((&raw[..i], &raw[i + 4..]));
    }
    let i = raw.windows(2).position(|w| w == b"\n\n")?;
    Some((&raw[..i], &raw[i + 2..]))
}

fn bad_data(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Appends one record (padded to 8 bytes); `content` must be at most 65535 bytes.
pub fn encode_record(rtype: u8, id: u16, content: &[u8], out: &mut Vec<u8>) {
    let len = content.len() as u16;
    let pad = (8 - content.len() % 8) % 8;
    out.extend_from_slice(&[1, rtype, (id >> 8) as u8, id as u8]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&[pad as u8, 0]);
    out.extend_from_slice(content);
    out.extend_from_slice(&[0u8; 8][..pad]);
}

fn encode_stream(rtype: u8, id: u16, data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(65535) {
        encode_record(rtype, id, chunk, out);
    }
    encode_record(rtype, id, &[], out);
}

fn encode_len(n: usize, out: &mut Vec<u8>) {
    if n < 128 {
        out.push(n as u8);
    } else {
        out.extend_from_slice(&(n as u32 | 0x8000_0000).to_be_bytes());
    }
}

/// Appends one name-value pair (1- or 4-byte lengths).
pub fn encode_pair(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    encode_len(name.len(), out);
    encode_len(value.len(), out);
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// The bytes a web server sends for one responder request.
pub fn encode_request(id: u16, params: &[(&[u8], &[u8])], body: &[u8], keep_conn: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 8000 + 1024);
    encode_record(
        BEGIN_REQUEST,
        id,
        &[0, 1, u8::from(keep_conn), 0, 0, 0, 0, 0],
        &mut out,
    );
    let mut pairs = Vec::new();
    for (n, v) in params {
        encode_pair(n, v, &mut pairs);
    }
    encode_stream(PARAMS, id, &pairs, &mut out);
    encode_stream(STDIN, id, body, &mut out);
    out
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// A FastCGI connection to the server under test.
pub struct FcgiClient {
    stream: Stream,
    next_id: u16,
}

impl FcgiClient {
    /// Connects to a unix socket, with a 30 s read/write timeout so a broken server fails the
    /// test instead of hanging it.
    pub fn connect_unix(path: &Path) -> io::Result<Self> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(FcgiClient {
            stream: Stream::Unix(s),
            next_id: 1,
        })
    }

    /// Connects over TCP (`host:port`), same timeouts.
    pub fn connect_tcp(addr: &str) -> io::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
        Ok(FcgiClient {
            stream: Stream::Tcp(s),
            next_id: 1,
        })
    }

    /// Changes the read timeout (e.g. shorter for tests that expect the server to close).
    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        match &self.stream {
            Stream::Unix(s) => s.set_read_timeout(Some(t)),
            Stream::Tcp(s) => s.set_read_timeout(Some(t)),
        }
    }

    /// Sends one request and returns the parsed response. Request ids count up from 1 on
    /// each connection, like nginx with keep-alive.
    pub fn request(
        &mut self,
        params: &[(&[u8], &[u8])],
        body: &[u8],
        keep_conn: bool,
    ) -> io::Result<CgiResponse> {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        self.send_raw(&encode_request(id, params, body, keep_conn))?;
        let raw = self.read_response(id)?;
        CgiResponse::parse(&raw)
    }

    /// How many bytes written on a unix socket the server has not read yet (`SIOCOUTQ`):
    /// 0 once it has taken everything sent so far.
    pub fn unread_by_peer(&self) -> io::Result<usize> {
        use std::os::unix::io::AsRawFd;
        let Stream::Unix(s) = &self.stream else {
            return Err(io::Error::other("unread_by_peer: unix sockets only"));
        };
        let mut n: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (= SIOCOUTQ) writes one c_int through the pointer.
        if unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// Writes bytes as they are (for malformed-input tests).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.stream {
            Stream::Unix(s) => s.write_all(bytes),
            Stream::Tcp(s) => s.write_all(bytes),
        }
    }

    /// Reads until the server closes the connection.
    pub fn read_to_end_raw(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_to_end(&mut out)?;
        Ok(out)
    }

    /// Reads records until END_REQUEST for `id`; returns that request's STDOUT bytes and its
    /// protocol status in the error if it is not REQUEST_COMPLETE.
    pub fn read_response(&mut self, id: u16) -> io::Result<Vec<u8>> {
        let mut stdout = Vec::new();
        loop {
            let (rtype, rid, content) = self.read_record()?;
            match rtype {
                STDOUT if rid == id => stdout.extend_from_slice(&content),
                STDERR => {}
                END_REQUEST if rid == id => {
                    let proto = content.get(4).copied().unwrap_or(255);
                    if proto != 0 {
                        return Err(bad_data(&format!("END_REQUEST protocol status {proto}")));
                    }
                    return Ok(stdout);
                }
                _ => {}
            }
        }
    }

    /// Sends FCGI_GET_VALUES for `names` and returns the answered pairs.
    pub fn get_values(&mut self, names: &[&str]) -> io::Result<Vec<(String, String)>> {
        let mut q = Vec::new();
        for n in names {
            encode_pair(n.as_bytes(), b"", &mut q);
        }
        let mut out = Vec::new();
        encode_record(GET_VALUES, 0, &q, &mut out);
        self.send_raw(&out)?;
        let (rtype, _, content) = self.read_record()?;
        if rtype != GET_VALUES_RESULT {
            return Err(bad_data(&format!(
                "expected GET_VALUES_RESULT, got type {rtype}"
            )));
        }
        decode_pairs(&content)
    }

    /// Reads one record: (type, request id, content), padding skipped.
    pub fn read_record(&mut self) -> io::Result<(u8, u16, Vec<u8>)> {
        let mut h = [0u8; 8];
        self.read_exact(&mut h)?;
        if h[0] != 1 {
            return Err(bad_data(&format!("record version {}", h[0])));
        }
        let id = u16::from_be_bytes([h[2], h[3]]);
        let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
        let mut content = vec![0u8; len + usize::from(h[6])];
        self.read_exact(&mut content)?;
        content.truncate(len);
        Ok((h[1], id, content))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        match &mut self.stream {
            Stream::Unix(s) => s.read_exact(buf),
            Stream::Tcp(s) => s.read_exact(buf),
        }
    }

    fn read_to_end(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Unix(s) => s.read_to_end(out),
            Stream::Tcp(s) => s.read_to_end(out),
        }
    }
}

fn decode_pairs(mut buf: &[u8]) -> io::Result<Vec<(String, String)>> {
    fn len(buf: &mut &[u8]) -> io::Result<usize> {
        let first = *buf.first().ok_or_else(|| bad_data("truncated pair"))?;
        if first < 128 {
            *buf = &buf[1..];
            return Ok(usize::from(first));
        }
        let b = buf.get(..4).ok_or_else(|| bad_data("truncated pair"))?;
        let n = u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]) as usize;
        *buf = &buf[4..];
        Ok(n)
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let n = len(&mut buf)?;
        let v = len(&mut buf)?;
        if buf.len() < n + v {
            return Err(bad_data("truncated pair"));
        }
        out.push((
            String::from_utf8_lossy(&buf[..n]).into_owned(),
            String::from_utf8_lossy(&buf[n..n + v]).into_owned(),
        ));
        buf = &buf[n + v..];
    }
    Ok(out)
}
