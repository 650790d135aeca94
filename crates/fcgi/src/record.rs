//! FastCGI 1.0 wire format as pure functions on byte slices.
//!
//! Nothing here does I/O or panics, whatever the input: the connection loop feeds it the bytes
//! it read, and a fuzzer can feed it anything.

use std::fmt;

/// Length of every record header.
pub const HEADER_LEN: usize = 8;
/// Largest content a single record can carry (the length field is 16 bits).
pub const MAX_CONTENT: usize = 65535;

/// The only protocol version there is.
pub const VERSION_1: u8 = 1;

/// Record type: web server starts a request.
pub const BEGIN_REQUEST: u8 = 1;
/// Record type: web server aborts a request.
pub const ABORT_REQUEST: u8 = 2;
/// Record type: application ends a request.
pub const END_REQUEST: u8 = 3;
/// Record type: name-value pairs (CGI environment).
pub const PARAMS: u8 = 4;
/// Record type: request body.
pub const STDIN: u8 = 5;
/// Record type: response bytes.
pub const STDOUT: u8 = 6;
/// Record type: error stream from the application.
pub const STDERR: u8 = 7;
/// Record type: extra data stream (Filter role only).
pub const DATA: u8 = 8;
/// Management record type: web server asks for configuration values.
pub const GET_VALUES: u8 = 9;
/// Management record type: answer to GET_VALUES.
pub const GET_VALUES_RESULT: u8 = 10;
/// Management record type: the application did not understand a management record.
pub const UNKNOWN_TYPE: u8 = 11;

/// Role: the only one we implement.
pub const ROLE_RESPONDER: u16 = 1;
/// BEGIN_REQUEST flag: keep the connection open after this request.
pub const FLAG_KEEP_CONN: u8 = 1;

/// END_REQUEST protocol status: normal end.
pub const REQUEST_COMPLETE: u8 = 0;
/// END_REQUEST protocol status: we do not multiplex requests on one connection.
pub const CANT_MPX_CONN: u8 = 1;
/// END_REQUEST protocol status: the role is not one we implement.
pub const UNKNOWN_ROLE: u8 = 3;

/// Decoded name-value pairs, raw bytes, in wire order.
pub type Params = Vec<(Vec<u8>, Vec<u8>)>;

/// Why a byte sequence is not valid FastCGI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// Fewer than 8 bytes where a record header was expected.
    ShortHeader(usize),
    /// The version byte is not 1.
    BadVersion(u8),
    /// A BEGIN_REQUEST body shorter than its fixed 8 bytes.
    ShortBeginRequest(usize),
    /// A name-value pair length runs past the end of the params stream.
    TruncatedPair {
        /// Byte offset of the pair in the params stream.
        offset: usize,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ShortHeader(n) => write!(f, "record header truncated after {n} of 8 bytes"),
            Self::BadVersion(v) => write!(f, "unsupported FastCGI version {v} (expected 1)"),
            Self::ShortBeginRequest(n) => {
                write!(f, "BEGIN_REQUEST body is {n} bytes (expected 8)")
            }
            Self::TruncatedPair { offset } => {
                write!(
                    f,
                    "name-value pair at byte {offset} runs past the end of the params"
                )
            }
        }
    }
}

impl std::error::Error for RecordError {}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Record type (BEGIN_REQUEST, PARAMS, ...).
    pub rtype: u8,
    /// Request id; 0 for management records.
    pub request_id: u16,
    /// Number of content bytes that follow the header.
    pub content_length: u16,
    /// Number of padding bytes after the content.
    pub padding_length: u8,
}

impl Header {
    /// Decodes the first 8 bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Header, RecordError> {
        let b: &[u8; HEADER_LEN] = buf
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(RecordError::ShortHeader(buf.len()))?;
        if b[0] != VERSION_1 {
            return Err(RecordError::BadVersion(b[0]));
        }
        Ok(Header {
            rtype: b[1],
            request_id: u16::from_be_bytes([b[2], b[3]]),
            content_length: u16::from_be_bytes([b[4], b[5]]),
            padding_length: b[6],
        })
    }

    /// Encodes the header (version 1, reserved byte 0).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let id = self.request_id.to_be_bytes();
        let len = self.content_length.to_be_bytes();
        [
            VERSION_1,
            self.rtype,
            id[0],
            id[1],
            len[0],
            len[1],
            self.padding_length,
            0,
        ]
    }
}

/// The body of a BEGIN_REQUEST record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeginRequest {
    /// Role requested by the web server (1 = responder).
    pub role: u16,
    /// Flags; bit 0 is FLAG_KEEP_CONN.
    pub flags: u8,
}

impl BeginRequest {
    /// Decodes a BEGIN_REQUEST body (8 bytes, extra bytes ignored).
    pub fn decode(body: &[u8]) -> Result<BeginRequest, RecordError> {
        match body {
            [r0, r1, flags, _, _, _, _, _, ..] => Ok(BeginRequest {
                role: u16::from_be_bytes([*r0, *r1]),
                flags: *flags,
            }),
            _ => Err(RecordError::ShortBeginRequest(body.len())),
        }
    }

    /// Whether the web server wants the connection kept open after this request.
    pub fn keep_conn(&self) -> bool {
        self.flags & FLAG_KEEP_CONN != 0
    }
}

/// Reads one pair length (1 byte if the high bit is clear, else 4 bytes with that bit masked).
fn decode_len(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let first = *buf.get(pos)?;
    if first & 0x80 == 0 {
        return Some((usize::from(first), pos + 1));
    }
    match buf.get(pos..pos.checked_add(4)?)? {
        [_, b1, b2, b3] => {
            let n = u32::from_be_bytes([first & 0x7f, *b1, *b2, *b3]);
            Some((usize::try_from(n).ok()?, pos + 4))
        }
        _ => None,
    }
}

/// Decodes a complete params stream (all PARAMS contents concatenated) into raw byte pairs,
/// in order, duplicates kept. Lengths are checked against the bytes present before anything is
/// allocated, so a lying length can never cause a large allocation.
pub fn decode_pairs(buf: &[u8]) -> Result<Params, RecordError> {
    let mut pairs = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let offset = pos;
        let bad = || RecordError::TruncatedPair { offset };
        let (name_len, p) = decode_len(buf, pos).ok_or_else(bad)?;
        let (value_len, p) = decode_len(buf, p).ok_or_else(bad)?;
        let name_end = p.checked_add(name_len).ok_or_else(bad)?;
        let value_end = name_end.checked_add(value_len).ok_or_else(bad)?;
        let name = buf.get(p..name_end).ok_or_else(bad)?;
        let value = buf.get(name_end..value_end).ok_or_else(bad)?;
        pairs.push((name.to_vec(), value.to_vec()));
        pos = value_end;
    }
    Ok(pairs)
}

/// Appends one pair length in the 1- or 4-byte form. Lengths above 2^31-1 cannot be encoded;
/// callers only pass names and values far below that.
fn encode_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let n = (len.min(0x7fff_ffff) as u32) | 0x8000_0000;
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Appends one encoded name-value pair.
pub fn encode_pair(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    encode_len(name.len(), out);
    encode_len(value.len(), out);
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// Padding that brings `len` up to a multiple of 8.
pub fn padding_for(len: usize) -> u8 {
    ((8 - len % 8) % 8) as u8
}

/// Appends one record with padding. `content` longer than MAX_CONTENT is cut; use
/// [`encode_stream`] for arbitrary lengths.
pub fn encode_record(rtype: u8, request_id: u16, content: &[u8], out: &mut Vec<u8>) {
    let content = content.get(..MAX_CONTENT).unwrap_or(content);
    let padding = padding_for(content.len());
    let header = Header {
        rtype,
        request_id,
        content_length: content.len() as u16,
        padding_length: padding,
    };
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(content);
    out.extend_from_slice(&[0u8; 8][..usize::from(padding)]);
}

/// Appends `data` as a stream: records of at most MAX_CONTENT bytes, then the empty record
/// that ends the stream.
pub fn encode_stream(rtype: u8, request_id: u16, data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(MAX_CONTENT) {
        encode_record(rtype, request_id, chunk, out);
    }
    encode_record(rtype, request_id, &[], out);
}

/// Frames `data` as a stream, like [`encode_stream`], inside `data`'s own buffer: each chunk
/// moves up to make room for its header and padding (last chunk first, so nothing is
/// overwritten before it has moved). A multi-megabyte answer is then never held twice.
pub fn frame_stream_in_place(rtype: u8, request_id: u16, mut data: Vec<u8>) -> Vec<u8> {
    let len = data.len();
    let chunks = len.div_ceil(MAX_CONTENT);
    let framed_len = |i: usize| {
        let size = MAX_CONTENT.min(len - i * MAX_CONTENT);
        HEADER_LEN + size + usize::from(padding_for(size))
    };
    let total: usize = (0..chunks).map(framed_len).sum::<usize>() + HEADER_LEN;
    data.resize(total, 0);
    // Every chunk but the last is full, so chunk i starts at i × (a full framed chunk).
    let full = HEADER_LEN + MAX_CONTENT + usize::from(padding_for(MAX_CONTENT));
    for i in (0..chunks).rev() {
        let src = i * MAX_CONTENT;
        let size = MAX_CONTENT.min(len - src);
        let dst = i * full;
        data.copy_within(src..src + size, dst + HEADER_LEN);
        let padding = padding_for(size);
        let header = Header {
            rtype,
            request_id,
            content_length: size as u16,
            padding_length: padding,
        };
        data[dst..dst + HEADER_LEN].copy_from_slice(&header.encode());
        data[dst + HEADER_LEN + size..dst + HEADER_LEN + size + usize::from(padding)].fill(0);
    }
    let end = Header {
        rtype,
        request_id,
        content_length: 0,
        padding_length: 0,
    };
    data[total - HEADER_LEN..].copy_from_slice(&end.encode());
    data
}

/// Appends an END_REQUEST record.
pub fn encode_end_request(
    request_id: u16,
    app_status: u32,
    protocol_status: u8,
    out: &mut Vec<u8>,
) {
    let s = app_status.to_be_bytes();
    let body = [s[0], s[1], s[2], s[3], protocol_status, 0, 0, 0];
    encode_record(END_REQUEST, request_id, &body, out);
}

/// Appends an UNKNOWN_TYPE management record naming the type we did not understand.
pub fn encode_unknown_type(rtype: u8, out: &mut Vec<u8>) {
    encode_record(UNKNOWN_TYPE, 0, &[rtype, 0, 0, 0, 0, 0, 0, 0], out);
}

/// Appends the GET_VALUES_RESULT answering the GET_VALUES `query`: only the variables asked
/// for that we know (FCGI_MAX_CONNS, FCGI_MAX_REQS, FCGI_MPXS_CONNS), as the spec says.
pub fn encode_get_values_result(
    query: &[u8],
    max_conns: usize,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    let asked = decode_pairs(query)?;
    let conns = max_conns.to_string();
    let mut content = Vec::new();
    for (name, _) in &asked {
        let value: &[u8] = match name.as_slice() {
            b"FCGI_MAX_CONNS" | b"FCGI_MAX_REQS" => conns.as_bytes(),
            b"FCGI_MPXS_CONNS" => b"0",
            _ => continue,
        };
        encode_pair(name, value, &mut content);
    }
    encode_record(GET_VALUES_RESULT, 0, &content, out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip() {
        let h = Header {
            rtype: STDIN,
            request_id: 0x1234,
            content_length: 0xfffe,
            padding_length: 2,
        };
        assert_eq!(Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn header_malformed() {
        assert_eq!(Header::decode(&[1, 1, 0]), Err(RecordError::ShortHeader(3)));
        assert_eq!(Header::decode(&[]), Err(RecordError::ShortHeader(0)));
        assert_eq!(
            Header::decode(&[2, 1, 0, 1, 0, 8, 0, 0]),
            Err(RecordError::BadVersion(2))
        );
    }

    #[test]
    fn begin_request() {
        let b = BeginRequest::decode(&[0, 1, 1, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(b.role, ROLE_RESPONDER);
        assert!(b.keep_conn());
        assert!(!BeginRequest::decode(&[0, 2, 0, 0, 0, 0, 0, 0])
            .unwrap()
            .keep_conn());
        for n in 0..8 {
            assert_eq!(
                BeginRequest::decode(&[0u8; 8][..n]),
                Err(RecordError::ShortBeginRequest(n))
            );
        }
    }

    #[test]
    fn pairs_keep_raw_bytes_and_duplicates() {
        let mut buf = Vec::new();
        encode_pair(b"QUERY_STRING", b"x=\xe9", &mut buf);
        encode_pair(b"HTTP_X_BAD", b"caf\xe9\xff\x00", &mut buf);
        encode_pair(b"HTTP_HOST", b"a", &mut buf);
        encode_pair(b"HTTP_HOST", b"b:8080", &mut buf);
        encode_pair(b"EMPTY", b"", &mut buf);
        let pairs = decode_pairs(&buf).unwrap();
        assert_eq!(pairs.len(), 5);
        assert_eq!(pairs[0].1, b"x=\xe9");
        assert_eq!(pairs[1].1, b"caf\xe9\xff\x00");
        assert_eq!(pairs[3], (b"HTTP_HOST".to_vec(), b"b:8080".to_vec()));
        assert_eq!(pairs[4].1, b"");
        assert_eq!(decode_pairs(&[]).unwrap(), vec![]);
    }

    #[test]
    fn pairs_four_byte_lengths() {
        let long_name = vec![b'N'; 200];
        let long_value = vec![0xe9u8; 70000];
        let mut buf = Vec::new();
        encode_pair(&long_name, &long_value, &mut buf);
        assert_eq!(&buf[..8], &[0x80, 0, 0, 200, 0x80, 1, 0x11, 0x70]);
        let pairs = decode_pairs(&buf).unwrap();
        assert_eq!(pairs, vec![(long_name, long_value)]);
        // A 4-byte length may also encode a short value.
        let buf = [0x80, 0, 0, 1, 0x80, 0, 0, 2, b'A', b'x', b'y'];
        assert_eq!(
            decode_pairs(&buf).unwrap(),
            vec![(b"A".to_vec(), b"xy".to_vec())]
        );
    }

    #[test]
    fn framing_in_place_matches_encode_stream() {
        for len in [0, 1, 7, 8, 65_534, 65_535, 65_536, 131_070, 200_003] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut expected = Vec::new();
            encode_stream(STDOUT, 3, &data, &mut expected);
            assert_eq!(frame_stream_in_place(STDOUT, 3, data), expected, "{len}");
        }
    }

    #[test]
    fn pairs_malformed() {
        let bad = |b: &[u8]| decode_pairs(b).unwrap_err();
        // Name length byte only.
        assert_eq!(bad(&[3]), RecordError::TruncatedPair { offset: 0 });
        // Truncated 4-byte length.
        assert_eq!(bad(&[1, 0x80, 0]), RecordError::TruncatedPair { offset: 0 });
        // Lengths past the end (a 2^31-1 value must not allocate).
        assert_eq!(
            bad(&[1, 0xff, 0xff, 0xff, 0xff, b'A']),
            RecordError::TruncatedPair { offset: 0 }
        );
        assert_eq!(bad(&[5, 0, b'A']), RecordError::TruncatedPair { offset: 0 });
        // Second pair broken: offset points at it.
        assert_eq!(
            bad(&[1, 1, b'A', b'B', 2, 2, b'C']),
            RecordError::TruncatedPair { offset: 4 }
        );
    }

    #[test]
    fn pairs_never_panic_on_garbage() {
        // Cheap deterministic fuzz: every prefix of a valid stream and a few byte flips.
        let mut buf = Vec::new();
        encode_pair(&[b'K'; 130], &[b'V'; 300], &mut buf);
        encode_pair(b"A", b"B", &mut buf);
        for end in 0..=buf.len() {
            let _ = decode_pairs(&buf[..end]);
        }
        for i in 0..buf.len() {
            let mut m = buf.clone();
            m[i] ^= 0xa5;
            let _ = decode_pairs(&m);
        }
    }

    #[test]
    fn stream_splits_at_65535_and_pads() {
        let data = vec![7u8; 65535 * 2 + 10];
        let mut out = Vec::new();
        encode_stream(STDOUT, 1, &data, &mut out);
        let mut pos = 0;
        let mut lens = Vec::new();
        let mut got = Vec::new();
        while pos < out.len() {
            let h = Header::decode(&out[pos..]).unwrap();
            assert_eq!((h.rtype, h.request_id), (STDOUT, 1));
            let len = usize::from(h.content_length);
            assert_eq!((len + usize::from(h.padding_length)) % 8, 0);
            got.extend_from_slice(&out[pos + 8..pos + 8 + len]);
            lens.push(len);
            pos += 8 + len + usize::from(h.padding_length);
        }
        assert_eq!(lens, vec![65535, 65535, 10, 0]);
        assert_eq!(got, data);
    }

    #[test]
    fn end_request_and_unknown_type() {
        let mut out = Vec::new();
        encode_end_request(3, 0x01020304, CANT_MPX_CONN, &mut out);
        assert_eq!(out, [1, 3, 0, 3, 0, 8, 0, 0, 1, 2, 3, 4, 1, 0, 0, 0]);
        out.clear();
        encode_unknown_type(42, &mut out);
        assert_eq!(out, [1, 11, 0, 0, 0, 8, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn get_values_answers_only_what_was_asked() {
        let mut q = Vec::new();
        encode_pair(b"FCGI_MPXS_CONNS", b"", &mut q);
        encode_pair(b"FCGI_WHATEVER", b"", &mut q);
        encode_pair(b"FCGI_MAX_CONNS", b"", &mut q);
        let mut out = Vec::new();
        encode_get_values_result(&q, 64, &mut out).unwrap();
        let h = Header::decode(&out).unwrap();
        assert_eq!(h.rtype, GET_VALUES_RESULT);
        let content = &out[8..8 + usize::from(h.content_length)];
        let pairs = decode_pairs(content).unwrap();
        assert_eq!(
            pairs,
            vec![
                (b"FCGI_MPXS_CONNS".to_vec(), b"0".to_vec()),
                (b"FCGI_MAX_CONNS".to_vec(), b"64".to_vec()),
            ]
        );
        assert!(encode_get_values_result(&[9], 1, &mut out).is_err());
    }
}
