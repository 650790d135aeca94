//! Process lifecycle end to end: SIGTERM/SIGINT drain in-flight requests and
//! exit 0, several processes start at once on a brand-new database, and the
//! per-request log line carries no credentials or payloads.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fcgi_client::{encode_request, CgiResponse, FcgiClient};
use common::{json, Server, ServerSpec, Session, TempDir, BIN, PUBLIC_URL, SECRET};

/// A server process started by these tests (the harness's `Server` keeps one
/// fixed socket per directory and only sends SIGTERM).
struct Proc {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

impl Proc {
    fn spawn(ini: &Path, socket: PathBuf, log: PathBuf) -> Proc {
        Proc::spawn_with(ini, socket, log, &[])
    }

    /// As [`Proc::spawn`], with more arguments after `serve`.
    fn spawn_with(ini: &Path, socket: PathBuf, log: PathBuf, extra: &[&str]) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .arg("--config")
            .arg(ini)
            .arg("serve")
            .arg("--bind")
            .arg(format!("unix:{}", socket.display()))
            .arg("--workers")
            .arg("2")
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .expect("start server");
        Proc {
            child: Some(child),
            socket,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if FcgiClient::connect_unix(&self.socket).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("server exited early ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not start:\n{}", self.log());
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("running")
    }

    /// Sends `sig` without waiting.
    fn signal(&self, sig: i32) {
        // SAFETY: plain syscall on our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Waits (at most 30 s) for the exit code.
    fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not exit:\n{}", self.log());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The encoded FastCGI request (id 1, connection closed after) of a signed
/// storage request for `uid`; `rest` is below `/storage/1.5/{uid}`.
fn signed_request(uid: u64, secret: &str, method: &str, rest: &str, body: &[u8]) -> Vec<u8> {
    let user = common::user_token(secret, uid, PUBLIC_URL, common::now() + 3600.0);
    let path = format!("/storage/1.5/{uid}{rest}");
    let ct = "application/json";
    let auth = common::client_auth::hawk_header(&common::client_auth::Signed {
        id: &user.token,
        key: &user.key,
        ts: common::now() as i64,
        nonce: &format!("lifecycle-{}-{uid}-{}", std::process::id(), body.len()),
        method,
        path: &path,
        host: "localhost",
        port: 5000,
        payload: None,
    });
    let len = body.len().to_string();
    let mut params: Vec<(&[u8], &[u8])> = vec![
        (b"REQUEST_METHOD", method.as_bytes()),
        (b"REQUEST_URI", path.as_bytes()),
        (b"QUERY_STRING", b""),
        (b"SCRIPT_NAME", path.as_bytes()),
        (b"REQUEST_SCHEME", b"http"),
        (b"SERVER_PORT", b"5000"),
        (b"HTTP_HOST", b"localhost:5000"),
        (b"HTTP_AUTHORIZATION", auth.as_bytes()),
    ];
    if !body.is_empty() {
        params.push((b"CONTENT_TYPE", ct.as_bytes()));
        params.push((b"CONTENT_LENGTH", len.as_bytes()));
    }
    encode_request(1, &params, body, false)
}

/// An unsigned GET of `path` (any answer proves the process is serving).
fn unsigned_get(path: &str) -> Vec<u8> {
    let params: Vec<(&[u8], &[u8])> = vec![
        (b"REQUEST_METHOD", b"GET"),
        (b"REQUEST_URI", path.as_bytes()),
        (b"QUERY_STRING", b""),
        (b"REQUEST_SCHEME", b"http"),
        (b"SERVER_PORT", b"5000"),
        (b"HTTP_HOST", b"localhost:5000"),
    ];
    encode_request(1, &params, b"", false)
}

fn try_send(socket: &Path, encoded: &[u8]) -> std::io::Result<CgiResponse> {
    let mut client = FcgiClient::connect_unix(socket)?;
    client.send_raw(encoded)?;
    CgiResponse::parse(&client.read_response(1)?)
}

fn send(socket: &Path, encoded: &[u8]) -> CgiResponse {
    try_send(socket, encoded).expect("request")
}

fn write_ini(dir: &TempDir, extra: &str) -> PathBuf {
    let ini = dir.join("syncserver.ini");
    std::fs::write(
        &ini,
        format!("[syncserver]\npublic_url = {PUBLIC_URL}\n{extra}\n"),
    )
    .expect("write ini");
    ini
}

/// A request whose body is still arriving when the signal comes is answered
/// in full, and only then does the process exit 0.
fn drains_on(sig: i32) {
    let dir = TempDir::new();
    let ini = write_ini(&dir, &format!("secret = {SECRET}"));
    let mut server = Proc::spawn(&ini, dir.join("s.sock"), dir.join("server.log"));
    server.wait_ready();

    // 100 records is the default max_post_records.
    let records: Vec<String> = (0..100)
        .map(|i| format!(r#"{{"id": "r{i}", "payload": "{}"}}"#, "p".repeat(1000)))
        .collect();
    let body = format!("[{}]", records.join(","));
    let encoded = signed_request(1, SECRET, "POST", "/storage/bookmarks", body.as_bytes());
    let split = encoded.len() - 5000;

    let mut client = FcgiClient::connect_unix(&server.socket).expect("connect");
    client.send_raw(&encoded[..split]).expect("first part");
    // The server has read all of it, so the request is in flight (not in the backlog).
    common::wait_until(
        "the server to read the first part",
        Duration::from_secs(10),
        || client.unread_by_peer().expect("SIOCOUTQ") == 0,
    );
    server.signal(sig);
    // It has seen the signal; the rest of the body, then the response, prove it waited.
    common::wait_until("the shutdown log line", Duration::from_secs(10), || {
        server.log().contains("shutting down")
    });
    assert!(
        server.running(),
        "exited with a request in flight:\n{}",
        server.log()
    );
    client.send_raw(&encoded[split..]).expect("rest");
    let raw = client.read_response(1).expect("response after the signal");
    let resp = CgiResponse::parse(&raw).expect("parse");
    assert_eq!(resp.status, 200, "{}\n{}", resp.text(), server.log());
    let v = json(&resp);
    assert_eq!(v["success"].as_array().map(Vec::len), Some(100), "{v}");
    drop(client);
    assert_eq!(server.wait(), Some(0), "{}", server.log());
    let log = server.log();
    assert!(
        log.contains("POST /storage/1.5/1/storage/bookmarks"),
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");

    // The data really was committed.
    let mut again = Proc::spawn(&ini, dir.join("s2.sock"), dir.join("server2.log"));
    again.wait_ready();
    let r = send(
        &again.socket,
        &signed_request(1, SECRET, "GET", "/info/collection_counts", b""),
    );
    assert_eq!(r.text(), r#"{"bookmarks": 100}"#);
}

#[test]
fn sigterm_finishes_in_flight_request_and_exits_0() {
    drains_on(libc::SIGTERM);
}

#[test]
fn sigint_finishes_in_flight_request_and_exits_0() {
    drains_on(libc::SIGINT);
}

#[test]
fn sigterm_while_a_client_keeps_requesting() {
    let mut server = Server::start("");
    let socket = server.socket.clone();
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = answered.clone();
    let client = std::thread::spawn(move || {
        let mut statuses = Vec::new();
        for i in 0..2000 {
            let body = format!(r#"{{"payload": "v{i}"}}"#);
            let req = signed_request(3, SECRET, "PUT", "/storage/tabs/t", body.as_bytes());
            // After the listener closes, connecting or reading fails: stop there.
            match try_send(&socket, &req) {
                Ok(r) => statuses.push((r.status, r.text())),
                Err(_) => break,
            }
            counter.fetch_add(1, Ordering::SeqCst);
        }
        statuses
    });
    // The signal lands while the client is busy.
    common::wait_until("20 answered requests", Duration::from_secs(20), || {
        answered.load(Ordering::SeqCst) >= 20
    });
    let started = Instant::now();
    assert_eq!(server.terminate(), Some(0), "{}", server.log());
    assert!(started.elapsed() < Duration::from_secs(5), "slow shutdown");
    let statuses = client.join().expect("client");
    assert!(!statuses.is_empty());
    for (status, body) in &statuses {
        assert_eq!(*status, 200, "{body}");
    }
    let log = server.log();
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

/// Several processes at once on a file that does not exist yet (mod_fcgid
/// starts them like this; the Python server crashed creating its tables).
#[test]
fn four_processes_start_on_a_new_database() {
    for round in 0..3 {
        let dir = TempDir::new();
        let db = dir.join("shared.db");
        // Round 0 has no secret: the processes must also agree on the generated one.
        let secret_line = if round == 0 {
            String::new()
        } else {
            format!("secret = {SECRET}")
        };
        let ini = write_ini(
            &dir,
            &format!("sqluri = sqlite:///{}\n{secret_line}", db.display()),
        );
        let mut procs: Vec<Proc> = (0..4)
            .map(|i| {
                Proc::spawn(
                    &ini,
                    dir.join(&format!("s{i}.sock")),
                    dir.join(&format!("log{i}")),
                )
            })
            .collect();
        for p in &mut procs {
            p.wait_ready();
            // The socket is bound before the database is prepared: an answer
            // means this process finished its start-up.
            let r = send(&p.socket, &unsigned_get("/"));
            assert!(r.status > 0, "{}", p.log());
        }
        let secret = if round == 0 {
            let c = rusqlite::Connection::open(&db).expect("open");
            c.query_row(
                "SELECT value FROM syncserver_fcgi_meta WHERE name = 'secret'",
                [],
                |r| r.get::<_, String>(0),
            )
            .expect("stored secret")
        } else {
            SECRET.to_string()
        };
        for (i, p) in procs.iter().enumerate() {
            let uid = 100 + i as u64;
            let r = send(
                &p.socket,
                &signed_request(
                    uid,
                    &secret,
                    "PUT",
                    "/storage/bookmarks/x",
                    br#"{"payload": "hi"}"#,
                ),
            );
            assert_eq!(
                r.status,
                200,
                "round {round} proc {i}: {}\n{}",
                r.text(),
                p.log()
            );
            // Another process reads it back, with the same token secret.
            let other = &procs[(i + 1) % procs.len()];
            let r = send(
                &other.socket,
                &signed_request(uid, &secret, "GET", "/storage/bookmarks/x", b""),
            );
            assert_eq!(
                r.status,
                200,
                "round {round}: {}\n{}",
                r.text(),
                other.log()
            );
            assert_eq!(json(&r)["payload"], "hi");
        }
        for p in &procs {
            p.signal(libc::SIGTERM);
        }
        for (i, p) in procs.iter_mut().enumerate() {
            assert_eq!(p.wait(), Some(0), "round {round} proc {i}:\n{}", p.log());
            let log = p.log();
            assert!(!log.contains("ERROR"), "round {round} proc {i}:\n{log}");
        }
    }
}

#[test]
fn request_log_lines_carry_no_secrets() {
    let server = Server::start_spec(ServerSpec {
        env: vec![("RUST_LOG".into(), "info".into())],
        ..ServerSpec::default()
    });
    let s = Session::new(&server, 7);
    let marker = "PAYLOAD-MARKER-5f3a9";
    let mut expected: Vec<(&str, String, u16)> = Vec::new();
    let mut check = |method: &'static str, rest: &str, status: u16, r: CgiResponse| {
        assert_eq!(r.status, status, "{method} {rest}: {}", r.text());
        let path = Server::storage_path(7, rest);
        let path = path.split('?').next().unwrap_or("").to_string();
        expected.push((method, path, status));
    };
    let body = format!(r#"{{"payload": "{marker}"}}"#);
    check(
        "PUT",
        "/storage/bookmarks/x",
        200,
        s.put("/storage/bookmarks/x", &body),
    );
    check(
        "GET",
        "/storage/bookmarks/x",
        200,
        s.get("/storage/bookmarks/x"),
    );
    check(
        "GET",
        "/storage/bookmarks?full=1",
        200,
        s.get("/storage/bookmarks?full=1"),
    );
    let batch = format!(r#"[{{"id": "y", "payload": "{marker}"}}]"#);
    check(
        "POST",
        "/storage/bookmarks?batch=true&commit=true",
        200,
        s.post("/storage/bookmarks?batch=true&commit=true", &batch),
    );
    check(
        "GET",
        "/storage/nothing/z",
        404,
        s.get("/storage/nothing/z"),
    );
    check(
        "DELETE",
        "/storage/bookmarks/x",
        200,
        s.delete("/storage/bookmarks/x"),
    );
    check("GET", "/info/collections", 200, s.get("/info/collections"));
    // A token signed with another secret is refused; it must not be logged either.
    let forged = server.user_for_node(7, PUBLIC_URL, "another-secret-value-42");
    let r = server.signed(&forged, "GET", &s.path("/info/collections"), &[], b"");
    check("GET", "/info/collections", 401, r);
    // The tokenserver with a bearer token (no verifier can accept it).
    let bearer = "bearer-token-value-9c1e";
    let r = server.request(
        "GET",
        "/1.0/sync/1.5",
        &[("Authorization", &format!("Bearer {bearer}"))],
        b"",
    );
    assert!(r.status >= 400, "{}", r.text());

    let log = server.log();
    let request_lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ms") && (l.contains(" uid=") || l.contains("/1.0/sync/1.5")))
        .collect();
    assert_eq!(
        request_lines.len(),
        expected.len() + 1,
        "one line per request:\n{log}"
    );
    for (line, (method, path, status)) in request_lines.iter().zip(&expected) {
        assert!(line.contains(" INFO "), "{line}");
        let want = format!("{method} {path} uid=7 {status} ");
        assert!(line.contains(&want), "{line:?} lacks {want:?}");
    }
    for secret in [
        s.user.token.as_str(),
        s.user.key.as_str(),
        forged.token.as_str(),
        forged.key.as_str(),
        SECRET,
        marker,
        bearer,
        "Hawk ",
        "Authorization",
    ] {
        assert!(!log.contains(secret), "log contains {secret:?}:\n{log}");
    }
}

#[test]
fn sigterm_and_sigint_remove_the_socket_we_created() {
    let dir = TempDir::new();
    let ini = write_ini(&dir, &format!("secret = {SECRET}"));
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let socket = dir.join("s.sock");
        let mut server = Proc::spawn(&ini, socket.clone(), dir.join("server.log"));
        server.wait_ready();
        assert!(socket.exists());
        server.signal(sig);
        assert_eq!(server.wait(), Some(0), "{}", server.log());
        assert!(
            !socket.exists(),
            "signal {sig} left the socket behind:\n{}",
            server.log()
        );
    }
}

/// The system's Python (not a per-user one another user cannot run).
const PYTHON: &str = "/usr/bin/python3";

/// Whether `user` can connect to the unix socket at `path` (a real connect,
/// made by a process running as that user).
fn connects_as(user: &str, path: &Path) -> bool {
    let script = "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])";
    Command::new("setpriv")
        .args([
            "--reuid",
            user,
            "--regid",
            user,
            "--init-groups",
            PYTHON,
            "-c",
            script,
        ])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Run as root with the default mode 660, the socket is root's and nginx
/// (www-data) gets "Permission denied": the start-up log says so, and
/// `--socket-group www-data` fixes it.
#[test]
fn socket_group_lets_the_web_server_user_connect() {
    // SAFETY: plain syscall.
    let root = unsafe { libc::geteuid() } == 0;
    let www_gid: Option<u32> = std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("www-data:"))
        .and_then(|l| l.split(':').nth(3)?.parse().ok());
    let tools =
        Path::new(PYTHON).exists() && Command::new("setpriv").arg("--version").output().is_ok();
    let (true, Some(www_gid), true) = (root, www_gid, tools) else {
        eprintln!("skipped: needs root, a www-data user, setpriv and {PYTHON}");
        return;
    };
    let dir = TempDir::new();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ini = write_ini(&dir, &format!("secret = {SECRET}"));

    let socket = dir.join("plain.sock");
    let mut server = Proc::spawn(&ini, socket.clone(), dir.join("plain.log"));
    server.wait_ready();
    assert!(
        !connects_as("www-data", &socket),
        "mode 660 root:root let www-data in?"
    );
    let log = server.log();
    assert!(
        log.contains("WARN") && log.contains("www-data") && log.contains("--socket-group"),
        "no warning about the unreachable socket:\n{log}"
    );
    drop(server);

    let socket = dir.join("group.sock");
    let mut server = Proc::spawn_with(
        &ini,
        socket.clone(),
        dir.join("group.log"),
        &["--socket-group", "www-data"],
    );
    server.wait_ready();
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), www_gid, "socket group");
    assert!(connects_as("www-data", &socket), "{}", server.log());
    assert!(!server.log().contains("--socket-group"), "{}", server.log());

    let bad = Command::new(BIN)
        .arg("--config")
        .arg(&ini)
        .args(["serve", "--bind"])
        .arg(format!("unix:{}", dir.join("x.sock").display()))
        .args(["--socket-group", "no-such-group-here"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("no-such-group-here"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
