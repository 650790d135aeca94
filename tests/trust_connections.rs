//! Connections that hold a socket without finishing a request (idle ones, kept-alive ones,
//! half-sent ones) must not delay anybody else's request (issue 10, item 8). The old server
//! gave each open connection one of 64 threads, so 70 such connections made the next request
//! wait ~30 s for a timeout to free one.

mod common;

use std::time::{Duration, Instant};

use common::fcgi_client::{encode_pair, encode_record, FcgiClient};
use common::{Server, ServerSpec};

/// What a request may take while others hold connections: generous, the failure was ~30 s.
const PROMPT: Duration = Duration::from_secs(2);

const HEARTBEAT: [(&[u8], &[u8]); 3] = [
    (b"REQUEST_METHOD", b"GET"),
    (b"REQUEST_URI", b"/__lbheartbeat__"),
    (b"HTTP_HOST", b"localhost:5000"),
];

/// A connection that has sent BEGIN_REQUEST and part of its PARAMS, then stalls: a PARAMS
/// record header promising 200 bytes, followed by 20 of them.
fn half_sent(server: &Server) -> FcgiClient {
    let mut c = FcgiClient::connect_unix(&server.socket).expect("connect");
    let mut pairs = Vec::new();
    encode_pair(b"REQUEST_METHOD", b"GET", &mut pairs);
    encode_pair(b"REQUEST_URI", &[b'x'; 180], &mut pairs);
    let mut bytes = Vec::new();
    encode_record(1, 1, &[0, 1, 1, 0, 0, 0, 0, 0], &mut bytes);
    let mut params = Vec::new();
    encode_record(4, 1, &pairs, &mut params);
    bytes.extend_from_slice(&params[..8 + 20]);
    c.send_raw(&bytes).expect("send");
    c
}

/// A connection that made one keep-alive request and now sits idle, as nginx's upstream
/// `keepalive` cache holds them.
fn kept_alive(server: &Server) -> FcgiClient {
    let mut c = FcgiClient::connect_unix(&server.socket).expect("connect");
    let r = c.request(&HEARTBEAT, b"", true).expect("first request");
    assert_eq!(r.status, 200);
    c
}

/// One new connection, one request; returns how long the answer took.
fn timed_request(server: &Server) -> Duration {
    let t = Instant::now();
    let mut c = FcgiClient::connect_unix(&server.socket).expect("connect");
    c.set_read_timeout(Duration::from_secs(40))
        .expect("timeout");
    let r = c
        .request(&HEARTBEAT, b"", false)
        .unwrap_or_else(|e| panic!("no answer after {:?}: {e}", t.elapsed()));
    assert_eq!(r.status, 200, "{}", r.text());
    t.elapsed()
}

#[test]
fn held_connections_do_not_delay_a_request() {
    let mut server = Server::start("");
    // More of each kind than the old server had connection slots (64): connections that
    // never send anything, and requests stalled half-way through their params.
    let idle: Vec<FcgiClient> = (0..70)
        .map(|_| FcgiClient::connect_unix(&server.socket).expect("connect"))
        .collect();
    let mut stalled: Vec<FcgiClient> = (0..70).map(|_| half_sent(&server)).collect();
    let took = timed_request(&server);
    eprintln!("request behind 70 silent + 70 half-sent connections: answered in {took:?}");
    assert!(
        took < PROMPT,
        "a request waited {took:?} behind held connections"
    );

    // Kept-alive connections sitting idle, as nginx's upstream keepalive cache holds them.
    let mut kept: Vec<FcgiClient> = (0..70).map(|_| kept_alive(&server)).collect();
    let took = timed_request(&server);
    eprintln!("request behind 210 held connections: answered in {took:?}");
    assert!(
        took < PROMPT,
        "a request waited {took:?} behind held connections"
    );
    // Keep-alive still works: a held connection serves its next request.
    let r = kept[0]
        .request(&HEARTBEAT, b"", true)
        .expect("second request");
    assert_eq!(r.status, 200);

    // A half-sent request is dropped at the header deadline, well before the 30 s body/IO
    // timeout (which the old server applied to it).
    let c = &mut stalled[0];
    c.set_read_timeout(Duration::from_secs(40))
        .expect("timeout");
    let t = Instant::now();
    assert_eq!(c.read_to_end_raw().expect("closed"), b"");
    let closed_after = t.elapsed();
    eprintln!("half-sent request closed after {closed_after:?} more");
    assert!(
        closed_after < Duration::from_secs(20),
        "half-sent request held {closed_after:?}"
    );

    // Shutting down with connections still held is prompt and clean.
    let t = Instant::now();
    assert_eq!(server.terminate(), Some(0), "{}", server.log());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        t.elapsed()
    );
    drop((idle, stalled, kept));
}

#[test]
fn idle_connections_beyond_the_limit_make_room() {
    // With a deliberately small connection limit, idle keep-alive connections beyond it are
    // closed, oldest first, rather than keeping new ones waiting.
    let server = Server::start_spec(ServerSpec {
        args: vec!["--max-connections".into(), "16".into()],
        ..ServerSpec::default()
    });
    let mut kept: Vec<FcgiClient> = (0..40).map(|_| kept_alive(&server)).collect();
    let took = timed_request(&server);
    eprintln!("request with 40 kept-alive connections over a limit of 16: {took:?}");
    assert!(
        took < PROMPT,
        "a request waited {took:?} behind idle connections"
    );
    // The most recent idle connection is still open and serves.
    let last = kept.last_mut().expect("one");
    assert_eq!(
        last.request(&HEARTBEAT, b"", true).expect("reuse").status,
        200
    );
    // The oldest was closed to make room (nginx then opens a new one).
    let first = kept.first_mut().expect("one");
    first
        .set_read_timeout(Duration::from_secs(5))
        .expect("timeout");
    assert_eq!(first.read_to_end_raw().expect("closed"), b"");
}
