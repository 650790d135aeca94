//! Helpers shared by the end-to-end tests: start the real binary on a unix
//! socket in a temp dir, mint tokens, sign requests with Hawk, talk FastCGI.
#![allow(dead_code)]

pub mod client_auth;
pub mod commands;
pub mod engines;
pub mod fcgi_client;
pub mod firefox;
pub mod fxa;
pub mod rows;
pub mod site;
pub mod webservers;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use engines::{Engine, TestDatabase};
use fcgi_client::{CgiResponse, FcgiClient};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_syncserver-fcgi");
/// The public_url every test server uses unless told otherwise.
pub const PUBLIC_URL: &str = "http://localhost:5000";
/// The secret every test server uses unless told otherwise.
pub const SECRET: &str = "test-secret-0123456789abcdef";

/// A private temp directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/syncserver-fcgi-test-<pid>-<n>-<nanos>`.
    pub fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "syncserver-fcgi-test-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        // The server database that went with the directory (see `Server::start_in`) goes too.
        let gone: Vec<Arc<TestDatabase>> = {
            let mut dbs = DATABASES.lock().unwrap_or_else(|e| e.into_inner());
            let (gone, kept) = std::mem::take(&mut *dbs)
                .into_iter()
                .partition(|(dir, _)| *dir == self.0);
            *dbs = kept;
            gone.into_iter().map(|(_, db)| db).collect()
        };
        drop(gone);
    }
}

/// The MySQL/PostgreSQL databases of servers started with `SYNCSERVER_TEST_ENGINE` set, by
/// the temp dir they belong to: like the SQLite file inside it, a database outlives a
/// stopped server (`Server::stop` hands back the dir, `Server::start_in` finds it again) and
/// is dropped with the dir, which is after the server process was killed.
static DATABASES: Mutex<Vec<(PathBuf, Arc<TestDatabase>)>> = Mutex::new(Vec::new());

/// The URI of `dir`'s database on `engine`'s server, created on first use.
fn database_uri_for(dir: &Path, engine: Engine) -> String {
    let mut dbs = DATABASES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, db)) = dbs.iter().find(|(d, _)| d == dir) {
        assert_eq!(
            db.engine,
            engine,
            "{} already has a database",
            dir.display()
        );
        return db.uri.clone();
    }
    let server = engines::server_uri(engine).unwrap_or_else(|| {
        panic!(
            "SYNCSERVER_TEST_ENGINE={} but {} is not set: start the servers with \
             scripts/engines (scripts/test does) and export its env file",
            engine.name(),
            engine.env_var().unwrap_or_default()
        )
    });
    let db = TestDatabase::create_on(&server, "server");
    let uri = db.uri.clone();
    dbs.push((dir.to_path_buf(), Arc::new(db)));
    uri
}

/// Runs `f` on `dir`'s server database, if it has one (outside the registry's lock).
fn with_database<T>(dir: &Path, f: impl FnOnce(&TestDatabase) -> T) -> Option<T> {
    let db = {
        let dbs = DATABASES.lock().unwrap_or_else(|e| e.into_inner());
        dbs.iter()
            .find(|(d, _)| d == dir)
            .map(|(_, db)| Arc::clone(db))
    };
    db.map(|db| f(&db))
}

/// The `sqluri` an ini text sets itself (the first `sqluri = ...` line in any section).
fn explicit_sqluri(ini: &str) -> Option<String> {
    ini.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix("sqluri")?.trim_start();
        let value = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':'))?;
        Some(value.trim().to_string())
    })
}

/// The engine of a server whose ini is `ini`: the one its own `sqluri` names, else SQLite.
fn engine_of_ini(ini: &str) -> Engine {
    explicit_sqluri(ini)
        .and_then(|uri| Engine::of_uri(&uri))
        .unwrap_or(Engine::Sqlite)
}

/// Seconds since the epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Waits until the clock, at the server's two-decimal resolution, has moved past `secs` (a
/// timestamp the server already returned): a write after this gets a later `modified`.
pub fn wait_past(secs: f64) {
    let hundredths = (secs * 100.0).round();
    wait_until(
        "the clock to pass a server timestamp",
        Duration::from_secs(2),
        || (now() * 100.0).floor() > hundredths,
    );
}

/// A running server process; killed and reaped on drop.
pub struct Server {
    child: Option<Child>,
    /// The temp dir holding the ini, database, socket and log.
    pub dir: TempDir,
    /// The unix socket it listens on.
    pub socket: PathBuf,
    /// Its public_url.
    pub public_url: String,
    /// Its token secret.
    pub secret: String,
    /// The database engine it stores its data in.
    engine: Engine,
}

/// How to start a server.
pub struct ServerSpec {
    /// `[syncserver] public_url`.
    pub public_url: String,
    /// Extra lines appended to the ini (may contain more sections).
    pub extra_ini: String,
    /// Whether to write `secret = SECRET` into `[syncserver]`.
    pub with_secret: bool,
    /// `--workers`.
    pub workers: usize,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Extra arguments after `serve` (e.g. `--max-connections`).
    pub args: Vec<String>,
    /// Wait for a 200 before returning (else only for the socket to accept).
    pub wait_ready: bool,
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            public_url: PUBLIC_URL.into(),
            extra_ini: String::new(),
            with_secret: true,
            workers: 2,
            env: Vec::new(),
            args: Vec::new(),
            wait_ready: true,
        }
    }
}

impl Server {
    /// Starts a server with the default ini plus `extra_ini`.
    pub fn start(extra_ini: &str) -> Server {
        Server::start_spec(ServerSpec {
            extra_ini: extra_ini.into(),
            ..ServerSpec::default()
        })
    }

    /// Starts a server in a new temp dir.
    pub fn start_spec(spec: ServerSpec) -> Server {
        let dir = TempDir::new();
        Server::start_in(dir, spec)
    }

    /// Starts a server in `dir` (which may already hold a database `syncserver.db`).
    ///
    /// Its database is the SQLite default (`syncserver.db` in `dir`) unless `extra_ini` sets a
    /// `sqluri` itself, or `SYNCSERVER_TEST_ENGINE` names a server engine (`mysql`,
    /// `postgresql`): then `sqluri` is a fresh database on that server (see
    /// [`engines::TestDatabase`]), which belongs to `dir` as the SQLite file would.
    pub fn start_in(dir: TempDir, spec: ServerSpec) -> Server {
        let ini = dir.join("syncserver.ini");
        let mut text = format!("[syncserver]\npublic_url = {}\n", spec.public_url);
        if spec.with_secret {
            text.push_str(&format!("secret = {SECRET}\n"));
        }
        let engine = match explicit_sqluri(&spec.extra_ini) {
            Some(uri) => Engine::of_uri(&uri).unwrap_or(Engine::Sqlite),
            None => engines::test_engine(),
        };
        if engine != Engine::Sqlite && explicit_sqluri(&spec.extra_ini).is_none() {
            text.push_str(&format!("sqluri = {}\n", database_uri_for(&dir.0, engine)));
        }
        text.push_str(&spec.extra_ini);
        text.push('\n');
        std::fs::write(&ini, text).expect("write ini");
        Server::start_with_ini(dir, &ini, &spec, engine)
    }

    fn start_with_ini(dir: TempDir, ini: &Path, spec: &ServerSpec, engine: Engine) -> Server {
        let socket = dir.join("sync.sock");
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(ini)
            .arg("serve")
            .arg("--bind")
            .arg(format!("unix:{}", socket.display()))
            .arg("--workers")
            .arg(spec.workers.to_string())
            .args(&spec.args)
            .env_remove("RUST_BACKTRACE")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start server");
        let mut server = Server {
            child: Some(child),
            dir,
            socket,
            public_url: spec.public_url.clone(),
            secret: SECRET.into(),
            engine,
        };
        if spec.wait_ready {
            server.wait_ready();
        } else {
            server.wait_accepting();
        }
        server
    }

    fn wait_accepting(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while FcgiClient::connect_unix(&self.socket).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("server exited early ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no socket:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a server the way mod_fcgid and spawn-fcgi do: no `--bind`, the listening socket
    /// (`socket_name` in `dir`, created here) on stdin. Several such servers may share `dir`'s
    /// database; the caller keeps `dir` alive and the returned server does not own it.
    pub fn start_inherited(dir: &Path, socket_name: &str, workers: usize) -> Server {
        let engine =
            engine_of_ini(&std::fs::read_to_string(dir.join("syncserver.ini")).unwrap_or_default());
        let socket = dir.join(socket_name);
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind socket");
        let log = std::fs::File::create(dir.join(format!("{socket_name}.log"))).expect("log");
        let child = Command::new(BIN)
            .arg("--config")
            .arg(dir.join("syncserver.ini"))
            .arg("serve")
            .arg("--workers")
            .arg(workers.to_string())
            .env_remove("RUST_BACKTRACE")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(listener)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start server");
        let mut server = Server {
            child: Some(child),
            // An empty path: dropping it removes nothing; the caller owns the directory.
            dir: TempDir(PathBuf::new()),
            socket,
            public_url: PUBLIC_URL.into(),
            secret: SECRET.into(),
            engine,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            // The socket accepts before the database is ready: wait for an answer.
            if let Ok(mut client) = FcgiClient::connect_unix(&self.socket) {
                let params: [(&[u8], &[u8]); 3] = [
                    (b"REQUEST_METHOD", b"GET"),
                    (b"REQUEST_URI", b"/__lbheartbeat__"),
                    (b"HTTP_HOST", b"localhost"),
                ];
                if matches!(client.request(&params, b"", false), Ok(r) if r.status == 200) {
                    return;
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("server exited early ({status}):\n{}", self.log());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not start:\n{}", self.log());
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The database file. Panics unless the server runs on SQLite: a test that opens the
    /// file directly cannot run with `SYNCSERVER_TEST_ENGINE=mysql` or `postgresql`.
    #[track_caller]
    pub fn db_path(&self) -> PathBuf {
        assert!(
            self.engine == Engine::Sqlite,
            "db_path(): this server stores its data in {} (SYNCSERVER_TEST_ENGINE), not in a \
             SQLite file; this test reads the file directly and cannot run on that engine \
             (Server::sql runs SQL on any server engine)",
            self.engine.name()
        );
        self.dir.join("syncserver.db")
    }

    /// The database engine the server stores its data in.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The URI of its MySQL/PostgreSQL database (`None` on SQLite, or for a database the
    /// test's ini named itself).
    pub fn database_uri(&self) -> Option<String> {
        with_database(&self.dir.0, |db| db.uri.clone())
    }

    /// Runs SQL in its MySQL/PostgreSQL database ([`engines::TestDatabase::sql`]); panics on
    /// SQLite (use [`Server::db_path`]) or for a database the test's ini named itself.
    #[track_caller]
    pub fn sql(&self, statement: &str) -> String {
        self.try_sql(statement)
            .unwrap_or_else(|e| panic!("{statement}: {e}"))
    }

    /// [`Server::sql`], returning the client's error message instead of panicking on one.
    #[track_caller]
    pub fn try_sql(&self, statement: &str) -> Result<String, String> {
        with_database(&self.dir.0, |db| db.try_sql(statement)).unwrap_or_else(|| {
            panic!(
                "Server::sql: no test-managed server database ({} engine)",
                self.engine.name()
            )
        })
    }

    /// Runs SQL in its database whatever the engine: the SQLite file (`db_path`), or its
    /// MySQL/PostgreSQL database ([`Server::sql`]). The output has the same form on every
    /// engine: one line per row, fields tab-separated, NULL as `NULL`. For tests that must
    /// run unchanged under `SYNCSERVER_TEST_ENGINE`: write SQL all three engines accept.
    #[track_caller]
    pub fn db_sql(&self, statement: &str) -> String {
        if self.engine != Engine::Sqlite {
            return self.sql(statement);
        }
        let c = rusqlite::Connection::open(self.db_path()).expect("open the SQLite database");
        c.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        let mut out = String::new();
        // Each statement in turn (execute_batch would drop the rows of a query); the
        // tests' SQL has no `;` inside literals.
        for one in statement
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let mut stmt = c.prepare(one).unwrap_or_else(|e| panic!("{one}: {e}"));
            let cols = stmt.column_count();
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next().unwrap_or_else(|e| panic!("{one}: {e}")) {
                let fields: Vec<String> = (0..cols)
                    .map(|i| match row.get_ref(i).expect("column") {
                        rusqlite::types::ValueRef::Null => "NULL".to_string(),
                        rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                        rusqlite::types::ValueRef::Real(v) => v.to_string(),
                        rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                            String::from_utf8_lossy(t).into_owned()
                        }
                    })
                    .collect();
                out.push_str(&fields.join("\t"));
                out.push('\n');
            }
        }
        out
    }

    /// The single integer a query returns, on any engine ([`Server::db_sql`]).
    #[track_caller]
    pub fn db_int(&self, query: &str) -> i64 {
        let out = self.db_sql(query);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{query}: not one integer: {out:?}"))
    }

    /// The server process id (None once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server process's peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.pid().expect("server is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// Sends SIGTERM and waits for the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        child.wait().ok().and_then(|s| s.code())
    }

    /// Stops the server, keeping its directory (to restart on the same database).
    pub fn stop(mut self) -> TempDir {
        self.kill();
        let dir = std::mem::replace(&mut self.dir, TempDir(PathBuf::new()));
        std::mem::forget(self);
        dir
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The host and port of public_url (for Hawk and the Host header).
    pub fn host_port(&self) -> (String, u16) {
        let rest = self.public_url.split("://").nth(1).unwrap_or("");
        let authority = rest.split('/').next().unwrap_or("");
        let default = if self.public_url.starts_with("https") {
            443
        } else {
            80
        };
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().unwrap_or(default)),
            None => (authority.to_string(), default),
        }
    }

    /// The path prefix of public_url ("" or "/sync").
    pub fn prefix(&self) -> String {
        let rest = self.public_url.split("://").nth(1).unwrap_or("");
        match rest.find('/') {
            Some(i) => rest[i..].trim_end_matches('/').to_string(),
            None => String::new(),
        }
    }

    /// A token for `uid`, valid for an hour, naming this server's node.
    pub fn user(&self, uid: u64) -> User {
        self.user_expiring(uid, now() + 3600.0)
    }

    /// A token for `uid` with the given expiry.
    pub fn user_expiring(&self, uid: u64, expires: f64) -> User {
        let node = self.public_url.trim_end_matches('/');
        user_token(&self.secret, uid, node, expires)
    }

    /// Sends a raw FastCGI request with nginx-like params.
    pub fn request(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> CgiResponse {
        self.request_with_params(method, path_and_query, headers, &[], body)
    }

    /// [`Server::request`] plus CGI params of the web server's own (e.g. `REMOTE_ADDR`).
    pub fn request_with_params(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        cgi_params: &[(&str, &str)],
        body: &[u8],
    ) -> CgiResponse {
        let (host, port) = self.host_port();
        let host_header = format!("{host}:{port}");
        let full = format!("{}{}", self.prefix(), path_and_query);
        let (path, query) = full.split_once('?').unwrap_or((full.as_str(), ""));
        let len = body.len().to_string();
        let mut params: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"REQUEST_METHOD".to_vec(), method.as_bytes().to_vec()),
            (b"REQUEST_URI".to_vec(), full.as_bytes().to_vec()),
            (b"QUERY_STRING".to_vec(), query.as_bytes().to_vec()),
            (b"SCRIPT_NAME".to_vec(), path.as_bytes().to_vec()),
            (b"REQUEST_SCHEME".to_vec(), b"http".to_vec()),
            (b"SERVER_PORT".to_vec(), port.to_string().into_bytes()),
            (
                b"CONTENT_LENGTH".to_vec(),
                if body.is_empty() {
                    Vec::new()
                } else {
                    len.into_bytes()
                },
            ),
        ];
        let mut has_host = false;
        for (name, value) in headers {
            let cgi = match name.to_ascii_lowercase().as_str() {
                "content-type" => "CONTENT_TYPE".to_string(),
                n => {
                    has_host |= n == "host";
                    format!("HTTP_{}", n.to_ascii_uppercase().replace('-', "_"))
                }
            };
            params.push((cgi.into_bytes(), value.as_bytes().to_vec()));
        }
        if !has_host {
            params.push((b"HTTP_HOST".to_vec(), host_header.into_bytes()));
        }
        for (name, value) in cgi_params {
            params.push((name.as_bytes().to_vec(), value.as_bytes().to_vec()));
        }
        let refs: Vec<(&[u8], &[u8])> = params
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        let mut client = FcgiClient::connect_unix(&self.socket).expect("connect");
        client.request(&refs, body, false).expect("FastCGI request")
    }

    /// A Hawk-signed request for `user` (`path_and_query` below public_url).
    pub fn signed(
        &self,
        user: &User,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> CgiResponse {
        let auth = self.hawk(user, method, path_and_query, headers, body, false);
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        all.push(("Authorization", &auth));
        self.request(method, path_and_query, &all, body)
    }

    /// The Authorization header for a request (`with_hash`: include the payload hash).
    pub fn hawk(
        &self,
        user: &User,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        with_hash: bool,
    ) -> String {
        static NONCE: AtomicU32 = AtomicU32::new(0);
        let (host, port) = self.host_port();
        let full = format!("{}{}", self.prefix(), path_and_query);
        let ct = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_bytes());
        let nonce = format!(
            "n{}-{}",
            std::process::id(),
            NONCE.fetch_add(1, Ordering::SeqCst)
        );
        client_auth::hawk_header(&client_auth::Signed {
            id: &user.token,
            key: &user.key,
            ts: now() as i64,
            nonce: &nonce,
            method,
            path: &full,
            host: &host,
            port,
            payload: with_hash.then(|| (ct.unwrap_or_default(), body)),
        })
    }

    /// `/storage/1.5/{uid}` + `rest`.
    pub fn storage_path(uid: u64, rest: &str) -> String {
        format!("/storage/1.5/{uid}{rest}")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Credentials for `uid` on `node`, minted independently of the server's code (random salt,
/// as tokenlib does).
pub fn user_token(secret: &str, uid: u64, node: &str, expires: f64) -> User {
    static SALT: AtomicU32 = AtomicU32::new(0);
    let salt = format!(
        "{:06x}",
        (std::process::id() ^ SALT.fetch_add(1, Ordering::SeqCst)) & 0xff_ffff
    );
    let (token, key) = client_auth::mint(secret, uid, node, expires.floor() as i64, &salt);
    User { uid, token, key }
}

/// A user's credentials.
pub struct User {
    /// The uid.
    pub uid: u64,
    /// The token (Hawk id).
    pub token: String,
    /// The derived Hawk key.
    pub key: String,
}

/// The repo venv's python (`SYNCSERVER_TEST_PYTHON`, else `.venv/bin/python`), which
/// scripts/test creates with the PyPI packages the interop tests use, if it can import
/// `modules`; else `None` after [`skip`] (which fails the test unless skipping is allowed).
pub fn venv_python(modules: &[&str]) -> Option<PathBuf> {
    let path = match std::env::var_os("SYNCSERVER_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
    };
    let imports = Command::new(&path)
        .arg("-c")
        .arg(format!("import {}", modules.join(", ")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if imports {
        return Some(path);
    }
    skip(
        Prereq::Python,
        &format!("{} cannot import {}", path.display(), modules.join(", ")),
    );
    None
}

/// Parses a JSON body.
pub fn json(resp: &CgiResponse) -> serde_json::Value {
    resp.json()
}

impl Server {
    /// A token for `uid` naming `node` instead of this server (for wrong-node tests).
    pub fn user_for_node(&self, uid: u64, node: &str, secret: &str) -> User {
        user_token(secret, uid, node, now() + 3600.0)
    }

    /// Sends a FastCGI request whose `REQUEST_URI` and `QUERY_STRING` are raw bytes
    /// (for non-UTF-8 input); headers as in [`Server::request`].
    pub fn request_raw_uri(
        &self,
        method: &str,
        uri: &[u8],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> CgiResponse {
        let (host, port) = self.host_port();
        let query = match uri.iter().position(|b| *b == b'?') {
            Some(i) => uri[i + 1..].to_vec(),
            None => Vec::new(),
        };
        let mut params: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"REQUEST_METHOD".to_vec(), method.as_bytes().to_vec()),
            (b"REQUEST_URI".to_vec(), uri.to_vec()),
            (b"QUERY_STRING".to_vec(), query),
            (b"REQUEST_SCHEME".to_vec(), b"http".to_vec()),
            (b"SERVER_PORT".to_vec(), port.to_string().into_bytes()),
            (b"HTTP_HOST".to_vec(), format!("{host}:{port}").into_bytes()),
            (
                b"CONTENT_LENGTH".to_vec(),
                body.len().to_string().into_bytes(),
            ),
        ];
        for (name, value) in headers {
            let cgi = match name.to_ascii_lowercase().as_str() {
                "content-type" => "CONTENT_TYPE".to_string(),
                n => format!("HTTP_{}", n.to_ascii_uppercase().replace('-', "_")),
            };
            params.push((cgi.into_bytes(), value.as_bytes().to_vec()));
        }
        let refs: Vec<(&[u8], &[u8])> = params
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        let mut client = FcgiClient::connect_unix(&self.socket).expect("connect");
        client.request(&refs, body, false).expect("FastCGI request")
    }
}

/// One user's view of a server: paths are relative to `/storage/1.5/{uid}`.
pub struct Session<'a> {
    /// The server.
    pub server: &'a Server,
    /// The user's credentials.
    pub user: User,
}

impl<'a> Session<'a> {
    /// A session for `uid` with a fresh token.
    pub fn new(server: &'a Server, uid: u64) -> Session<'a> {
        Session {
            server,
            user: server.user(uid),
        }
    }

    /// The full path (below public_url) of `rest`.
    pub fn path(&self, rest: &str) -> String {
        Server::storage_path(self.user.uid, rest)
    }

    /// A signed request to `rest`.
    pub fn send(
        &self,
        method: &str,
        rest: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> CgiResponse {
        self.server
            .signed(&self.user, method, &self.path(rest), headers, body)
    }

    /// A signed GET.
    pub fn get(&self, rest: &str) -> CgiResponse {
        self.send("GET", rest, &[], b"")
    }

    /// A signed GET with extra headers.
    pub fn get_with(&self, rest: &str, headers: &[(&str, &str)]) -> CgiResponse {
        self.send("GET", rest, headers, b"")
    }

    /// A signed PUT of a JSON body.
    pub fn put(&self, rest: &str, body: &str) -> CgiResponse {
        self.send("PUT", rest, &JSON_CT, body.as_bytes())
    }

    /// A signed POST of a JSON body.
    pub fn post(&self, rest: &str, body: &str) -> CgiResponse {
        self.send("POST", rest, &JSON_CT, body.as_bytes())
    }

    /// A signed DELETE.
    pub fn delete(&self, rest: &str) -> CgiResponse {
        self.send("DELETE", rest, &[], b"")
    }

    /// A GET that must succeed, parsed as JSON.
    pub fn get_json(&self, rest: &str) -> serde_json::Value {
        let r = self.get(rest);
        assert_eq!(r.status, 200, "GET {rest}: {}", r.text());
        json(&r)
    }
}

/// `Content-Type: application/json`.
pub const JSON_CT: [(&str, &str); 1] = [("Content-Type", "application/json")];

/// Milliseconds of a two-decimal wire timestamp (`"1795866752.43"`); panics on
/// any other form, so it also checks the format.
pub fn ms(ts: &str) -> i64 {
    let (secs, frac) = ts
        .split_once('.')
        .unwrap_or_else(|| panic!("timestamp without decimals: {ts:?}"));
    assert_eq!(frac.len(), 2, "timestamp not two decimals: {ts:?}");
    secs.parse::<i64>().expect("seconds") * 1000 + frac.parse::<i64>().expect("decimals") * 10
}

/// A header that must be present.
pub fn hdr<'r>(resp: &'r CgiResponse, name: &str) -> &'r str {
    resp.header(name)
        .unwrap_or_else(|| panic!("no {name} header in {:?}", resp.headers))
}

/// Asserts status and exact body.
#[track_caller]
pub fn assert_resp(resp: &CgiResponse, status: u16, body: &str) {
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (status, body),
        "headers: {:?}",
        resp.headers
    );
}

/// The raw text of the number after `"key": ` in a JSON body (serde would
/// print `1.40` back as `1.4`; this keeps the exact wire form).
pub fn raw_num(text: &str, key: &str) -> String {
    let needle = format!("\"{key}\": ");
    let at = text
        .find(&needle)
        .unwrap_or_else(|| panic!("no {key:?} in {text}"));
    text[at + needle.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect()
}

/// Something a test needs from the machine rather than from this repository. When it is
/// missing, [`skip`] decides whether that is a failure (the default) or an allowed skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prereq {
    /// The nginx binary.
    Nginx,
    /// apache2 with mod_fcgid and mod_proxy_fcgi.
    Apache,
    /// Root, on a filesystem and kernel that allow `chattr +i` and `mount -t tmpfs`.
    Root,
    /// `.venv` with the pinned PyPI packages (scripts/test creates it).
    Python,
    /// systemd-analyze and systemd-socket-activate.
    Systemd,
    /// A private MariaDB/MySQL server (`SYNCSERVER_TEST_MYSQL`, from scripts/engines).
    Mysql,
    /// A private PostgreSQL server (`SYNCSERVER_TEST_POSTGRESQL`, from scripts/engines).
    Postgresql,
    /// Debian's firefox-esr (`SYNCSERVER_TEST_FIREFOX` names another binary).
    Firefox,
}

impl Prereq {
    /// The name `SYNCSERVER_TEST_ALLOW_SKIP` uses for it.
    pub fn key(self) -> &'static str {
        match self {
            Prereq::Nginx => "nginx",
            Prereq::Apache => "apache",
            Prereq::Root => "root",
            Prereq::Python => "python",
            Prereq::Systemd => "systemd",
            Prereq::Mysql => "mysql",
            Prereq::Postgresql => "postgresql",
            Prereq::Firefox => "firefox",
        }
    }

    /// How to provide it.
    fn fix(self) -> &'static str {
        match self {
            Prereq::Nginx => "sudo apt-get install nginx",
            Prereq::Apache => "sudo apt-get install apache2 libapache2-mod-fcgid",
            Prereq::Root => "run the tests as root (CI does: .ci/run)",
            Prereq::Python => "run scripts/test, which creates .venv with the pinned packages",
            Prereq::Systemd => "sudo apt-get install systemd",
            Prereq::Mysql | Prereq::Postgresql => {
                "scripts/test starts them; needs sudo apt-get install mariadb-server postgresql"
            }
            Prereq::Firefox => "sudo apt-get install firefox-esr",
        }
    }
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A test whose prerequisite is missing: a failure saying how to install it, unless the
/// comma-separated `SYNCSERVER_TEST_ALLOW_SKIP` names it (`nginx`, `apache`, `root`,
/// `python`, `systemd`, `mysql`, `postgresql`, `firefox`) or is `all`. An allowed skip writes `SKIP <test>: <why>` straight to
/// the process's stderr (libtest captures what passing tests print, and has no "skipped"
/// status: the test still shows `ok`) and appends the same line to the file named by
/// `SYNCSERVER_TEST_SKIP_REPORT`, from which scripts/test prints its closing `skipped:` line.
/// The caller returns right after this call.
#[track_caller]
pub fn skip(prereq: Prereq, why: &str) {
    // libtest names each test's thread after the test; the binary's name (less cargo's
    // hash) says which file it is in.
    let exe = std::env::current_exe().unwrap_or_default();
    let stem = exe.file_stem().unwrap_or_default().to_string_lossy();
    let file = stem.rsplit_once('-').map_or(&*stem, |(f, _)| f);
    let test = match std::thread::current().name() {
        Some(name) if name != "main" => format!("{file}::{name}"),
        _ => format!("{}", std::panic::Location::caller()),
    };
    let allowed = std::env::var("SYNCSERVER_TEST_ALLOW_SKIP").unwrap_or_default();
    let allowed = allowed
        .split(',')
        .map(str::trim)
        .any(|k| k == "all" || k == prereq.key());
    assert!(
        allowed,
        "{test}: {why}. To run it: {}. To skip it instead, set \
         SYNCSERVER_TEST_ALLOW_SKIP={} (or =all)",
        prereq.fix(),
        prereq.key()
    );
    let line = format!("SKIP {test}: {why}\n");
    announce(&line);
    if let Some(report) = std::env::var_os("SYNCSERVER_TEST_SKIP_REPORT") {
        use std::io::Write;
        // One short O_APPEND write per line: test binaries running side by side cannot
        // interleave inside a line.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&report)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            panic!("cannot append to SYNCSERVER_TEST_SKIP_REPORT: {e}");
        }
    }
}

/// Writes `line` straight to the process's stderr, past libtest's capture, so it shows even
/// when the test passes (a skip, the seed of a randomised test).
pub fn announce(line: &str) {
    // SAFETY: write(2) of a valid buffer to fd 2.
    unsafe { libc::write(2, line.as_ptr() as *const libc::c_void, line.len()) };
}

/// Polls `done` every 5 ms until it holds: the way tests wait for something observable (a
/// log line, a count, a socket drained) instead of sleeping a guessed time. Panics with
/// `what` after `limit`.
#[track_caller]
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Asserts a 503 with a positive `Retry-After`, as every refusal to try later must carry.
#[track_caller]
pub fn assert_503(r: &CgiResponse, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.text());
    let after: u32 = r
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no Retry-After in {:?}", r.headers));
    assert!(after > 0, "{what}");
}
