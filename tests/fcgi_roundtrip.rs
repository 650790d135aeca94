//! Drives `fcgi::serve` over a real unix socket with the test client.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::fcgi_client::{encode_pair, encode_record, encode_request, FcgiClient};
use syncserver_fcgi::fcgi::{open_listener, serve, BindAddr, FcgiRequest, Handler, ServerOptions};

/// Echo handler. Param ECHO selects: "body" (default) echoes the body, "params" lists the
/// params as raw `name=value\n`, "sleep:MS" sleeps, "panic" panics.
struct Echo {
    running: AtomicUsize,
    max_running: AtomicUsize,
    started: Mutex<Option<mpsc::Sender<()>>>,
}

impl Echo {
    fn new() -> Echo {
        Echo {
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
            started: Mutex::new(None),
        }
    }
}

impl Handler for Echo {
    fn handle(&self, req: FcgiRequest) -> Vec<u8> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        if let Some(tx) = self.started.lock().unwrap().as_ref() {
            let _ = tx.send(());
        }
        let mode = req.param(b"ECHO").unwrap_or(b"body").to_vec();
        let body = match mode.as_slice() {
            b"params" => {
                let mut out = Vec::new();
                for (n, v) in &req.params {
                    out.extend_from_slice(n);
                    out.push(b'=');
                    out.extend_from_slice(v);
                    out.push(b'\n');
                }
                out
            }
            b"panic" => {
                self.running.fetch_sub(1, Ordering::SeqCst);
                panic!("test panic");
            }
            m if m.starts_with(b"sleep:") => {
                let ms = std::str::from_utf8(&m[6..]).unwrap().parse().unwrap();
                thread::sleep(Duration::from_millis(ms));
                b"slept".to_vec()
            }
            _ => req.body.clone(),
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        let mut out = format!(
            "Status: 200 OK\r\nContent-Type: application/octet-stream\r\n\
             X-Too-Large: {}\r\nX-Body-Len: {}\r\n\r\n",
            req.body_too_large,
            req.body.len()
        )
        .into_bytes();
        out.extend_from_slice(&body);
        out
    }
}

struct TestServer {
    path: PathBuf,
    dir: PathBuf,
    shutdown: Arc<AtomicBool>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
    echo: Arc<Echo>,
}

impl TestServer {
    fn start(name: &str, opts: ServerOptions) -> TestServer {
        let dir = std::env::temp_dir().join(format!("fcgi-rt-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = open_listener(Some(&BindAddr::Unix(path.clone())), 0o666).unwrap();
        let shutdown = Arc::new(AtomicBool::new(false));
        let echo = Arc::new(Echo::new());
        let (h, s) = (echo.clone() as Arc<dyn Handler>, shutdown.clone());
        let handle = thread::spawn(move || serve(listener, h, opts, s));
        TestServer {
            path,
            dir,
            shutdown,
            handle: Some(handle),
            echo,
        }
    }

    fn client(&self) -> FcgiClient {
        FcgiClient::connect_unix(&self.path).unwrap()
    }

    /// Sets the flag and waits for `serve` to return; returns how long that took.
    fn stop(&mut self) -> Duration {
        let t = Instant::now();
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            h.join().unwrap().unwrap();
        }
        t.elapsed()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn quick_opts() -> ServerOptions {
    ServerOptions {
        max_connections: 8,
        max_body: 4 << 20,
        drain_timeout: Duration::from_secs(10),
        ..ServerOptions::default()
    }
}

const GET: (&[u8], &[u8]) = (b"REQUEST_METHOD", b"GET");

#[test]
fn raw_param_bytes_survive() {
    let srv = TestServer::start("raw", quick_opts());
    let mut c = srv.client();
    let long = vec![b'z'; 300];
    let params: Vec<(&[u8], &[u8])> = vec![
        (b"QUERY_STRING", b"x=\xe9"),
        GET,
        (b"HTTP_USER_AGENT", b"caf\xe9 \xff"),
        (b"HTTP_AUTHORIZATION", b"Hawk id=\"abc\""),
        (b"HTTP_X_LONG", &long),
        (b"ECHO", b"params"),
    ];
    let r = c.request(&params, b"", false).unwrap();
    assert_eq!(r.status, 200);
    let mut expected = Vec::new();
    for (n, v) in &params {
        expected.extend_from_slice(n);
        expected.push(b'=');
        expected.extend_from_slice(v);
        expected.push(b'\n');
    }
    assert_eq!(r.body, expected);
}

#[test]
fn keep_alive_serves_several_requests_then_closes() {
    let srv = TestServer::start("keep", quick_opts());
    let mut c = srv.client();
    for i in 0..3 {
        let body = format!("request {i}");
        let r = c.request(&[GET], body.as_bytes(), true).unwrap();
        assert_eq!(r.text(), body);
        assert_eq!(
            r.header("x-body-len"),
            Some(body.len().to_string().as_str())
        );
    }
    let r = c.request(&[GET], b"last", false).unwrap();
    assert_eq!(r.text(), "last");
    assert_eq!(
        c.read_to_end_raw().unwrap(),
        b"",
        "server closes after keep_conn=0"
    );
}

#[test]
fn two_mib_body_arrives_intact() {
    let srv = TestServer::start("big", quick_opts());
    let mut c = srv.client();
    let mut x = 0x9e37_79b9u32;
    let body: Vec<u8> = (0..2 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let r = c
        .request(&[(b"CONTENT_LENGTH", b"2097152")], &body, true)
        .unwrap();
    assert_eq!(r.header("X-Too-Large"), Some("false"));
    assert!(r.body == body, "2 MiB body came back different");
}

#[test]
fn body_over_max_body_is_flagged_and_discarded() {
    let opts = ServerOptions {
        max_body: 100_000,
        ..quick_opts()
    };
    let srv = TestServer::start("toolarge", opts);
    let mut c = srv.client();
    let body = vec![b'a'; 150_000];
    // Declared too large.
    let r = c
        .request(&[(b"CONTENT_LENGTH", b"150000")], &body, true)
        .unwrap();
    assert_eq!(r.header("X-Too-Large"), Some("true"));
    assert_eq!(r.header("X-Body-Len"), Some("0"));
    // Not declared: caught while receiving; the connection stays in sync.
    let r = c.request(&[GET], &body, true).unwrap();
    assert_eq!(r.header("X-Too-Large"), Some("true"));
    let r = c.request(&[GET], &body[..100_000], true).unwrap();
    assert_eq!(r.header("X-Too-Large"), Some("false"));
    assert_eq!(r.body.len(), 100_000);
}

/// Each malformed input gets the connection closed (no response) and the server keeps serving.
#[test]
fn malformed_input_closes_only_that_connection() {
    let srv = TestServer::start("malformed", quick_opts());
    let begin = |id: u16| {
        let mut v = Vec::new();
        encode_record(1, id, &[0, 1, 1, 0, 0, 0, 0, 0], &mut v);
        v
    };
    let mut bad_pairs = begin(1);
    encode_record(4, 1, &[5, 0x80, 0, 0], &mut bad_pairs); // truncated 4-byte value length
    encode_record(4, 1, &[], &mut bad_pairs);
    let mut huge_pair = begin(1);
    encode_record(4, 1, &[1, 0xff, 0xff, 0xff, 0xff, b'A'], &mut huge_pair);
    encode_record(4, 1, &[], &mut huge_pair);
    let mut client_stdout = begin(1);
    encode_record(6, 1, b"hi", &mut client_stdout);
    let mut short_begin = Vec::new();
    encode_record(1, 1, &[0, 1, 0], &mut short_begin);
    let mut end_request = Vec::new();
    encode_record(3, 1, &[0; 8], &mut end_request);
    let mut stdin_before_params = begin(1);
    encode_record(5, 1, b"x", &mut stdin_before_params);
    let mut too_many_params = begin(1);
    for _ in 0..5 {
        encode_record(4, 1, &[0u8; 65535], &mut too_many_params); // 320 KiB > 256 KiB
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "version 2",
            vec![2, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
        ),
        ("truncated header", vec![1, 1, 0]),
        ("truncated content", begin(1)[..12].to_vec()),
        ("EOF mid-request", begin(1)),
        ("bad pair lengths", bad_pairs),
        ("2^31 pair length", huge_pair),
        ("STDOUT from client", client_stdout),
        ("BEGIN body < 8", short_begin),
        ("END_REQUEST from client", end_request),
        ("STDIN before params end", stdin_before_params),
        ("params over max_params", too_many_params),
    ];
    for (what, bytes) in cases {
        let rest = read_after_half_close(&srv.path, &bytes);
        assert_eq!(rest, Vec::<u8>::new(), "{what}: expected a silent close");
        let r = srv
            .client()
            .request(&[GET], what.as_bytes(), false)
            .unwrap();
        assert_eq!(r.text(), what, "server still serves after {what}");
    }
}

/// Sends `bytes`, half-closes (so the server sees EOF where the input stops), and returns
/// whatever the server sends before closing.
fn read_after_half_close(path: &std::path::Path, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn management_records_roles_mpx_abort_and_panics() {
    let srv = TestServer::start("mgmt", quick_opts());
    let mut c = srv.client();
    let vals = c
        .get_values(&[
            "FCGI_MAX_CONNS",
            "FCGI_MPXS_CONNS",
            "FCGI_MAX_REQS",
            "OTHER",
        ])
        .unwrap();
    let want = [
        ("FCGI_MAX_CONNS", "8"),
        ("FCGI_MPXS_CONNS", "0"),
        ("FCGI_MAX_REQS", "8"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(vals, want);

    // Unknown management type.
    let mut out = Vec::new();
    encode_record(42, 0, &[], &mut out);
    c.send_raw(&out).unwrap();
    let (t, id, content) = c.read_record().unwrap();
    assert_eq!((t, id, content[0]), (11, 0, 42));

    // Unknown role (Filter) → END_REQUEST with UNKNOWN_ROLE (3), connection kept.
    out.clear();
    encode_record(1, 5, &[0, 3, 1, 0, 0, 0, 0, 0], &mut out);
    c.send_raw(&out).unwrap();
    let (t, id, content) = c.read_record().unwrap();
    assert_eq!((t, id, content[4]), (3, 5, 3));

    // A second BEGIN while one is active → CANT_MPX_CONN (1) for it; the first completes.
    let full = encode_request(1, &[GET], b"first", true);
    let (begin1, rest1) = full.split_at(16);
    c.send_raw(begin1).unwrap();
    out.clear();
    encode_record(1, 2, &[0, 1, 1, 0, 0, 0, 0, 0], &mut out);
    c.send_raw(&out).unwrap();
    let (t, id, content) = c.read_record().unwrap();
    assert_eq!((t, id, content[4]), (3, 2, 1));
    c.send_raw(rest1).unwrap();
    assert!(c.read_response(1).unwrap().ends_with(b"first"));

    // Abort while the body is still arriving: END_REQUEST without calling the handler.
    out.clear();
    encode_record(1, 7, &[0, 1, 1, 0, 0, 0, 0, 0], &mut out);
    encode_record(4, 7, &[], &mut out);
    encode_record(5, 7, b"partial", &mut out);
    encode_record(2, 7, &[], &mut out);
    c.send_raw(&out).unwrap();
    let (t, id, content) = c.read_record().unwrap();
    assert_eq!((t, id), (3, 7), "END_REQUEST, no STDOUT");
    assert_eq!(content[..5], [0, 0, 0, 0, 0]);

    // A panicking handler gives a 500 and the connection carries on.
    let r = c.request(&[(b"ECHO", b"panic")], b"", true).unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), "0");
    let r = c.request(&[GET], b"after panic", true).unwrap();
    assert_eq!(r.text(), "after panic");

    // Large response split into several STDOUT records.
    let big = vec![b'q'; 200_000];
    let r = c.request(&[GET], &big, true).unwrap();
    assert_eq!(r.body, big);
}

#[test]
fn shutdown_waits_for_in_flight_request_and_closes_idle_ones() {
    let mut srv = TestServer::start("shutdown", quick_opts());
    let (tx, rx) = mpsc::channel();
    *srv.echo.started.lock().unwrap() = Some(tx);
    // An idle keep-alive connection.
    let mut idle = srv.client();
    idle.request(&[GET], b"x", true).unwrap();
    rx.recv().unwrap();
    // A slow request in flight (the handler's sleep is the slowness under test).
    let path = srv.path.clone();
    let slow = thread::spawn(move || {
        let mut c = FcgiClient::connect_unix(&path).unwrap();
        c.request(&[(b"ECHO", b"sleep:800")], b"", true).unwrap()
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let took = srv.stop();
    // Observed, not timed: when `serve` returned, the slow handler had finished.
    assert_eq!(
        srv.echo.running.load(Ordering::SeqCst),
        0,
        "serve returned with a request in flight after {took:?}"
    );
    let r = slow.join().unwrap();
    assert_eq!(r.text(), "slept");
    assert!(took < Duration::from_secs(5), "serve took {took:?}");
    assert_eq!(
        idle.read_to_end_raw().unwrap(),
        b"",
        "idle connection closed"
    );
    assert!(
        FcgiClient::connect_unix(&srv.path).is_err(),
        "no longer accepting"
    );
}

#[test]
fn connections_beyond_the_limit_make_room_and_requests_queue() {
    let opts = ServerOptions {
        max_connections: 2,
        max_requests: 2,
        ..quick_opts()
    };
    let srv = TestServer::start("queue", opts);
    // Both connection places taken by idle keep-alive connections.
    let mut a = srv.client();
    let mut b = srv.client();
    a.request(&[GET], b"a", true).unwrap();
    b.request(&[GET], b"b", true).unwrap();
    // A third connection is served at once: the one idle longest (a) is closed for it.
    let mut c = srv.client();
    let t = Instant::now();
    assert_eq!(c.request(&[GET], b"third", true).unwrap().text(), "third");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(a.read_to_end_raw().unwrap(), b"", "oldest idle closed");
    assert_eq!(b.request(&[GET], b"b2", true).unwrap().text(), "b2");
    drop((b, c));

    // Many slow requests at once: all answered, never more than 2 handlers at a time.
    let opts = ServerOptions {
        max_requests: 2,
        ..quick_opts()
    };
    let srv = TestServer::start("queue2", opts);
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let path = srv.path.clone();
            thread::spawn(move || {
                let mut c = FcgiClient::connect_unix(&path).unwrap();
                // Slow handlers, so that they overlap: the sleep is the load, not a wait.
                c.request(&[(b"ECHO", b"sleep:100")], b"", false).unwrap()
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().text(), "slept");
    }
    assert_eq!(srv.echo.max_running.load(Ordering::SeqCst), 2);
}

#[test]
fn pairs_with_four_byte_lengths_split_across_records() {
    let srv = TestServer::start("split", quick_opts());
    let mut c = srv.client();
    let value = vec![0xe9u8; 70_000];
    let mut pairs = Vec::new();
    encode_pair(b"HTTP_X_BIG", &value, &mut pairs);
    encode_pair(b"ECHO", b"params", &mut pairs);
    let mut out = Vec::new();
    encode_record(1, 1, &[0, 1, 0, 0, 0, 0, 0, 0], &mut out);
    // Split at awkward places: inside the length bytes, inside the value.
    for chunk in [&pairs[..3], &pairs[3..40_000], &pairs[40_000..]] {
        encode_record(4, 1, chunk, &mut out);
    }
    encode_record(4, 1, &[], &mut out);
    encode_record(5, 1, &[], &mut out);
    c.send_raw(&out).unwrap();
    let raw = c.read_response(1).unwrap();
    let mut expected = b"HTTP_X_BIG=".to_vec();
    expected.extend_from_slice(&value);
    expected.extend_from_slice(b"\nECHO=params\n");
    assert!(raw.ends_with(&expected));
}

#[test]
fn stalled_and_idle_connections_time_out() {
    let opts = ServerOptions {
        header_timeout: Duration::from_millis(300),
        io_timeout: Duration::from_millis(900),
        idle_timeout: Duration::from_millis(600),
        ..quick_opts()
    };
    let srv = TestServer::start("timeouts", opts);
    let closed_after = |c: &mut FcgiClient| {
        let t = Instant::now();
        assert_eq!(c.read_to_end_raw().unwrap(), b"");
        t.elapsed()
    };
    // Slow loris: BEGIN_REQUEST, then nothing: the head is due within header_timeout.
    let mut c = srv.client();
    c.send_raw(&encode_request(1, &[GET], b"", true)[..16])
        .unwrap();
    let took = closed_after(&mut c);
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(850),
        "{took:?}"
    );
    // A body that stops moving: dropped after io_timeout, not header_timeout.
    let mut c = srv.client();
    let full = encode_request(1, &[GET], b"0123456789", true);
    c.send_raw(&full[..full.len() - 20]).unwrap();
    let took = closed_after(&mut c);
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // Idle keep-alive connection: closed after idle_timeout.
    let mut c = srv.client();
    c.request(&[GET], b"x", true).unwrap();
    let took = closed_after(&mut c);
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // A connection that never sends anything is dropped after header_timeout.
    let mut c = srv.client();
    let took = closed_after(&mut c);
    assert!(took < Duration::from_millis(850), "{took:?}");
}

#[test]
fn tcp_listener_serves_too() {
    let listener = open_listener(Some(&"127.0.0.1:0".parse().unwrap()), 0).unwrap();
    let addr = listener.describe().trim_start_matches("tcp ").to_string();
    let shutdown = Arc::new(AtomicBool::new(false));
    let s = shutdown.clone();
    let h = thread::spawn(move || serve(listener, Arc::new(Echo::new()), quick_opts(), s));
    let mut c = FcgiClient::connect_tcp(&addr).unwrap();
    for _ in 0..2 {
        assert_eq!(
            c.request(&[GET], b"over tcp", true).unwrap().text(),
            "over tcp"
        );
    }
    shutdown.store(true, Ordering::SeqCst);
    h.join().unwrap().unwrap();
}
