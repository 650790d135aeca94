//! A site of three processes, as Mozilla runs Sync at scale: one tokenserver
//! (`role = tokenserver`, `sqlnode`, its own database) and two storage nodes
//! (`role = storage`, each with its own database), every process behind its own nginx
//! running the committed contrib file. Used by tests/nodes.rs and tests/firefox_sync.rs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::engines::{self, Engine, TestDatabase};
use super::webservers::{self, flow, Front, HttpResponse};
use super::{commands, TempDir, BIN, SECRET};

pub const SQLNODE: &str = "tokenserver.assignment.sqlnode.SQLNodeAssignment";
/// The token endpoint, below a tokenserver's public_url.
pub const TOKEN_PATH: &str = "/token/1.0/sync/1.5";

/// A database of the site: a SQLite file in the site's directory, or a fresh database
/// on the engine's server (dropped with it).
pub enum Db {
    Sqlite(PathBuf),
    Server(TestDatabase),
}

impl Db {
    pub fn new(engine: Engine, dir: &Path, label: &str) -> Db {
        match engine {
            Engine::Sqlite => Db::Sqlite(dir.join(format!("{label}.db"))),
            _ => {
                let server = engines::server_uri(engine).expect("checked by on_every_engine");
                Db::Server(TestDatabase::create_on(&server, label))
            }
        }
    }

    /// Its `sqluri`.
    pub fn uri(&self) -> String {
        match self {
            Db::Sqlite(path) => format!("sqlite:///{}", path.display()),
            Db::Server(db) => db.uri.clone(),
        }
    }

    /// The rows of `query` (SQL every engine takes), fields as text, NULL as `NULL`.
    #[track_caller]
    pub fn rows(&self, query: &str) -> Vec<Vec<String>> {
        let text = match self {
            Db::Server(db) => db.sql(query),
            Db::Sqlite(path) => {
                let c = rusqlite::Connection::open(path).expect("open the SQLite database");
                c.busy_timeout(Duration::from_secs(10))
                    .expect("busy timeout");
                let mut stmt = c.prepare(query).unwrap_or_else(|e| panic!("{query}: {e}"));
                let cols = stmt.column_count();
                let mut rows = stmt.raw_query();
                let mut out = String::new();
                while let Some(row) = rows.next().unwrap_or_else(|e| panic!("{query}: {e}")) {
                    let fields: Vec<String> = (0..cols)
                        .map(|i| match row.get_ref(i).expect("column") {
                            rusqlite::types::ValueRef::Null => "NULL".to_string(),
                            rusqlite::types::ValueRef::Integer(v) => v.to_string(),
                            rusqlite::types::ValueRef::Real(v) => v.to_string(),
                            rusqlite::types::ValueRef::Text(t)
                            | rusqlite::types::ValueRef::Blob(t) => {
                                String::from_utf8_lossy(t).into_owned()
                            }
                        })
                        .collect();
                    out.push_str(&fields.join("\t"));
                    out.push('\n');
                }
                out
            }
        };
        text.lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    }

    /// `(uid, collection name, record id)` of every record stored, in order.
    #[track_caller]
    pub fn records(&self) -> Vec<(u64, String, String)> {
        self.rows(
            "SELECT b.userid, c.name, b.id FROM bso b JOIN collections c \
             ON c.collectionid = b.collection ORDER BY b.userid, c.name, b.id",
        )
        .into_iter()
        .map(|r| (r[0].parse().expect("userid"), r[1].clone(), r[2].clone()))
        .collect()
    }
}

/// One process of the site, with the nginx in front of it.
pub struct Proc {
    pub name: &'static str,
    /// The port its nginx listens on.
    pub port: u16,
    /// "" (at the root) or "/sync" (the contrib prefix file).
    pub prefix: &'static str,
    pub dir: PathBuf,
    pub backend: Option<Child>,
    pub nginx: Option<Child>,
}

impl Proc {
    pub fn new(site: &Path, name: &'static str, prefix: &'static str) -> Proc {
        let dir = site.join(name);
        mkdir(&dir);
        Proc {
            name,
            port: webservers::free_port(),
            prefix,
            dir,
            backend: None,
            nginx: None,
        }
    }

    /// Its public_url (and, for a storage node, its URL in the nodes table).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.prefix)
    }

    pub fn ini(&self) -> PathBuf {
        self.dir.join("syncserver.ini")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("sync.sock")
    }

    /// (Re)starts the server with `[syncserver] public_url` and `secret` and then `ini`,
    /// starts its nginx the first time, and waits until a request through nginx reaches it.
    pub fn start(&mut self, ini: &str) {
        self.start_ini(&format!("secret = {SECRET}\n{ini}"));
    }

    /// [`Proc::start`] without the master secret (`ini` follows `public_url`).
    pub fn start_ini(&mut self, ini: &str) {
        assert!(self.backend.is_none(), "{} is running", self.name);
        let text = format!("[syncserver]\npublic_url = {}\n{ini}\n", self.url());
        std::fs::write(self.ini(), text).expect("write ini");
        let _ = std::fs::remove_file(self.socket());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(self.ini())
            .arg("serve")
            .arg("--bind")
            .arg(format!("unix:{}", self.socket().display()))
            .arg("--workers")
            .arg("2")
            .env_remove("RUST_BACKTRACE")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // As root, nginx's workers run as www-data, the group of the 0660 socket (as the
        // contrib systemd units set it up).
        if super::is_root() {
            cmd.args(["--socket-group", "www-data"]);
        }
        self.backend = Some(cmd.spawn().expect("start syncserver-fcgi"));
        if self.nginx.is_none() {
            let file = Front::Nginx.contrib_file(!self.prefix.is_empty());
            let user = super::is_root().then_some("www-data");
            self.nginx = Some(webservers::start_nginx(
                &self.dir.join("nginx"),
                &file,
                self.port,
                &self.socket(),
                user,
            ));
        }
        self.wait_ready();
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let target = format!("{}/__lbheartbeat__", self.prefix);
        loop {
            if let Ok(r) = http(self.port, "GET", &target, &[], b"") {
                if r.status == 200 {
                    return;
                }
            }
            let exited = [&mut self.backend, &mut self.nginx]
                .into_iter()
                .flatten()
                .find_map(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!(
                    "{}: a process exited ({status}):\n{}",
                    self.name,
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer through nginx:\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (its nginx keeps running, answering 502 meanwhile).
    pub fn stop_backend(&mut self) {
        if let Some(child) = self.backend.take() {
            webservers::stop_child(child, libc::SIGTERM);
        }
    }

    /// A request through its nginx; `target` is the raw path and query.
    pub fn http(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> HttpResponse {
        http(self.port, method, target, headers, b"")
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", self.name, self.logs()))
    }

    /// The tails of its server's and its nginx's logs.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for rel in [
            "server.log",
            "nginx/logs/error.log",
            "nginx/logs/stderr.log",
        ] {
            if let Ok(text) = std::fs::read_to_string(self.dir.join(rel)) {
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(30)..];
                out.push_str(&format!("--- {} {rel}\n{}\n", self.name, tail.join("\n")));
            }
        }
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(child) = self.nginx.take() {
            webservers::stop_child(child, libc::SIGQUIT);
        }
        self.stop_backend();
    }
}

pub fn mkdir(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).expect("mkdir");
    // nginx's workers (www-data, as root) reach the sockets through these directories.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// An HTTP/1.1 exchange with 127.0.0.1:`port` (Host: 127.0.0.1:`port`).
pub fn http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    webservers::http_exchange(port, &raw)
}

/// Tokenserver lines for node assignment in `ts_db`.
pub fn sqlnode_ini(ts_db: &Db) -> String {
    format!(
        "[tokenserver]\nbackend = {SQLNODE}\nsqluri = {}\n",
        ts_db.uri()
    )
}

/// A tokenserver and two storage nodes, A (at the root) and B (under /sync/), each with
/// its own database and nginx; A and B are in the nodes table with the given capacities.
pub struct Site {
    pub ts: Proc,
    pub a: Proc,
    pub b: Proc,
    // After the processes: dropped once they are stopped.
    pub ts_db: Db,
    pub a_db: Db,
    pub b_db: Db,
    pub dir: TempDir,
}

impl Site {
    /// `token_duration`: the tokenserver's, in seconds.
    pub fn start(engine: Engine, token_duration: u64, capacity_a: i64, capacity_b: i64) -> Site {
        let dir = TempDir::new();
        mkdir(&dir.0);
        let mut site = Site {
            ts: Proc::new(&dir.0, "ts", ""),
            a: Proc::new(&dir.0, "a", ""),
            b: Proc::new(&dir.0, "b", "/sync"),
            ts_db: Db::new(engine, &dir.0, "nodes_ts"),
            a_db: Db::new(engine, &dir.0, "nodes_a"),
            b_db: Db::new(engine, &dir.0, "nodes_b"),
            dir,
        };
        let ts_ini = format!(
            "role = tokenserver\n{}token_duration = {token_duration}\n{}",
            sqlnode_ini(&site.ts_db),
            flow::oauth_ini()
        );
        site.ts.start(&ts_ini);
        // A derives its secret from the master secret; B is given its own only, as
        // `nodes secret` prints it.
        let a_ini = storage_ini(&site.a_db);
        site.a.start(&a_ini);
        let (a, b) = (site.a.url(), site.b.url());
        let b_ini = format!(
            "{}[storage]\nnode_secret = {}\n",
            storage_ini(&site.b_db),
            site.node_secret(&b)
        );
        site.b.start_ini(&b_ini);
        site.nodes(&["add", &a, "--capacity", &capacity_a.to_string()]);
        // Written with a trailing slash: `nodes add` stores it as public_url reads, which
        // is what B compares its tokens' node with.
        let b_slash = format!("{b}/");
        site.nodes(&["add", &b_slash, "--capacity", &capacity_b.to_string()]);
        site
    }

    /// `nodes secret URL --json`: the node's own secret.
    #[track_caller]
    pub fn node_secret(&self, url: &str) -> String {
        let out = self.nodes(&["secret", url, "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        v["node_secret"].as_str().expect("node_secret").to_string()
    }

    /// `syncserver-fcgi --config <tokenserver ini> nodes ARGS`; its stdout.
    #[track_caller]
    pub fn nodes(&self, args: &[&str]) -> String {
        let mut all = vec!["nodes"];
        all.extend_from_slice(args);
        commands::ok(&commands::run(&self.ts.ini(), &all))
    }

    pub fn logs(&self) -> String {
        format!("{}{}{}", self.ts.logs(), self.a.logs(), self.b.logs())
    }
}

pub fn storage_ini(db: &Db) -> String {
    format!(
        "role = storage\nsqluri = {}\n[hawkauth]\nexpired_token_timeout = 0\n",
        db.uri()
    )
}
