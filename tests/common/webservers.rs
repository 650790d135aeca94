//! Real web servers in front of the real binary, for the deployment tests: nginx, Apache
//! with mod_fcgid, Apache with mod_proxy_fcgi, each started from a temp dir on a free
//! loopback port with the committed `contrib/` config inside (only its documented
//! placeholder values replaced), plus a raw HTTP/1.1 client.
//!
//! Everything started here is a child of the test process and is stopped and reaped on
//! drop (this sandbox's PID 1 does not reap orphans).

pub mod flow;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{TempDir, BIN};

/// The repository root (contrib/ lives there).
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Debian's Apache module directory.
const APACHE_MODULES: &str = "/usr/lib/apache2/modules";

/// Which web server sits in front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// nginx → our own unix socket (contrib/nginx/).
    Nginx,
    /// Apache mod_fcgid, which spawns our processes (contrib/apache/syncserver-fcgid*.conf).
    ApacheFcgid,
    /// Apache mod_proxy_fcgi → our own socket (contrib/apache/syncserver-proxy-fcgi*.conf).
    ApacheProxyFcgi,
}

impl Front {
    /// The contrib file used for this front end, at the root or under /sync/.
    pub fn contrib_file(self, prefixed: bool) -> PathBuf {
        let name = match (self, prefixed) {
            (Front::Nginx, false) => "nginx/syncserver-fcgi.conf",
            (Front::Nginx, true) => "nginx/syncserver-fcgi-prefix.conf",
            (Front::ApacheFcgid, false) => "apache/syncserver-fcgid.conf",
            (Front::ApacheFcgid, true) => "apache/syncserver-fcgid-prefix.conf",
            (Front::ApacheProxyFcgi, false) => "apache/syncserver-proxy-fcgi.conf",
            (Front::ApacheProxyFcgi, true) => "apache/syncserver-proxy-fcgi-prefix.conf",
        };
        Path::new(ROOT).join("contrib").join(name)
    }

    /// The web server binary: `$SYNCSERVER_TEST_NGINX` / `$SYNCSERVER_TEST_APACHE2` when set
    /// (a path that does not exist hides an installed one), else the first in `PATH`, else
    /// /usr/sbin's (not in a non-root user's `PATH` on Debian).
    pub fn binary(self) -> Option<PathBuf> {
        let (var, name) = match self {
            Front::Nginx => ("SYNCSERVER_TEST_NGINX", "nginx"),
            _ => ("SYNCSERVER_TEST_APACHE2", "apache2"),
        };
        if let Some(path) = std::env::var_os(var) {
            let path = PathBuf::from(path);
            return path.is_file().then_some(path);
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin")])
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    }

    /// What is missing to run this front end here, if anything.
    pub fn missing(self) -> Option<String> {
        let Some(bin) = self.binary() else {
            let name = if self == Front::Nginx {
                "nginx"
            } else {
                "apache2"
            };
            return Some(format!("{name} is not installed"));
        };
        let module = match self {
            Front::Nginx => return None,
            Front::ApacheFcgid => "mod_fcgid.so",
            Front::ApacheProxyFcgi => "mod_proxy_fcgi.so",
        };
        let path = Path::new(APACHE_MODULES).join(module);
        (!path.exists()).then(|| format!("{} has no {}", bin.display(), path.display()))
    }
}

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackSpec {
    /// The web server.
    pub front: Front,
    /// Mount under `/sync/` (the `-prefix` contrib file) instead of the site root.
    pub prefixed: bool,
    /// `public_url`; `None`: `http://127.0.0.1:PORT[/sync]`. `{port}` is replaced.
    pub public_url: Option<String>,
    /// Extra ini lines (after `[syncserver]` keys; may open other sections). A `sqluri`
    /// among them replaces the SQLite file in the stack's temp dir.
    pub extra_ini: String,
}

/// A web server + our server, in a temp dir.
pub struct Stack {
    /// The front end.
    pub front: Front,
    /// The loopback port the web server listens on.
    pub port: u16,
    /// The server's public_url.
    pub public_url: String,
    /// "" or "/sync".
    pub prefix: String,
    /// How long starting took.
    pub startup: Duration,
    web: Option<Child>,
    backend: Option<Child>,
    dir: TempDir,
}

/// Uid and gid of www-data when we are root (servers then drop to it, as in production).
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("www-data:"))?;
    let mut fields = line.split(':').skip(2);
    let uid = fields.next()?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    Some((uid, gid))
}

/// A port nobody listens on right now, below Linux's ephemeral range (32768–60999).
/// A port from `bind(0)` is an ephemeral one, which any outgoing connection (a test
/// client, the server's database connection) may be given before nginx binds it:
/// that made nginx fail with "Address already in use" under parallel tests. Ports
/// handed out here are also never handed out twice by one test process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    // Test processes started together begin at different places.
    let start = std::process::id().wrapping_mul(7919) % COUNT;
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (start + n) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}

/// Reads a contrib file and replaces `placeholders` (each must occur), so the test runs
/// exactly the committed text apart from those values.
pub fn contrib_with(file: &Path, placeholders: &[(&str, &str)]) -> String {
    let mut text =
        std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    for (from, to) in placeholders {
        assert!(
            text.contains(from),
            "{} no longer contains the placeholder {from:?}",
            file.display()
        );
        text = text.replace(from, to);
    }
    text
}

fn mkdir(path: &Path, owner: Option<(u32, u32)>) {
    std::fs::create_dir_all(path).expect("mkdir");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    }
}

impl Stack {
    /// Starts our server (unless mod_fcgid spawns it) and the web server; waits until
    /// both answer.
    pub fn start(spec: StackSpec) -> Stack {
        let began = Instant::now();
        let dir = TempDir::new();
        // mktemp-style dirs may be 0700; Apache's and nginx's workers need to search it.
        mkdir(&dir.0, None);
        let user = run_as();
        let data = dir.join("data");
        mkdir(&data, user);
        let port = free_port();
        let prefix = if spec.prefixed { "/sync" } else { "" };
        let public_url = spec
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{{port}}{prefix}"))
            .replace("{port}", &port.to_string());
        let ini = data.join("syncserver.ini");
        let db = data.join("syncserver.db");
        let sqluri = match super::explicit_sqluri(&spec.extra_ini) {
            Some(_) => String::new(),
            None => format!("sqluri = sqlite:///{}\n", db.display()),
        };
        let text = format!(
            "[syncserver]\npublic_url = {public_url}\nsecret = {}\n{sqluri}{}\n",
            super::SECRET,
            spec.extra_ini
        );
        std::fs::write(&ini, text).expect("write ini");
        let socket = data.join("sync.sock");
        let mut stack = Stack {
            front: spec.front,
            port,
            public_url,
            prefix: prefix.to_string(),
            startup: Duration::ZERO,
            web: None,
            backend: None,
            dir,
        };
        if spec.front != Front::ApacheFcgid {
            stack.start_backend(&ini, &socket, user);
        }
        let file = spec.front.contrib_file(spec.prefixed);
        let web = match spec.front {
            Front::Nginx => stack.start_nginx(&file, &socket, user),
            _ => stack.start_apache(&file, &ini, &socket, user),
        };
        stack.web = Some(web);
        stack.wait_web();
        stack.startup = began.elapsed();
        stack
    }

    /// Kills our server with SIGKILL, as a crash or a power cut would; the web server stays
    /// up and answers 502 until [`Stack::restart_backend`]. Not for mod_fcgid, whose
    /// processes Apache spawns.
    pub fn kill_backend(&mut self) {
        assert_ne!(
            self.front,
            Front::ApacheFcgid,
            "mod_fcgid owns its processes"
        );
        if let Some(mut child) = self.backend.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts our server again on the same socket and database after [`Stack::kill_backend`].
    pub fn restart_backend(&mut self) {
        let data = self.dir.join("data");
        let socket = data.join("sync.sock");
        // The dead server's socket file: a new bind on the path needs it gone.
        let _ = std::fs::remove_file(&socket);
        self.start_backend(&data.join("syncserver.ini"), &socket, run_as());
    }

    /// The web server's access log so far (one line per request answered).
    pub fn access_log(&self) -> String {
        ["nginx/logs/access.log", "apache/logs/access.log"]
            .iter()
            .filter_map(|rel| std::fs::read_to_string(self.dir.join(rel)).ok())
            .collect()
    }

    fn start_backend(&mut self, ini: &Path, socket: &Path, user: Option<(u32, u32)>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(ini)
            .arg("serve")
            .arg("--bind")
            .arg(format!("unix:{}", socket.display()))
            .arg("--workers")
            .arg("2")
            .env_remove("RUST_BACKTRACE")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // As in production: our user/group owns the 0660 socket, the web server's workers
        // run in that group (here both are www-data).
        if let Some((uid, gid)) = user {
            cmd.uid(uid).gid(gid);
        }
        self.backend = Some(cmd.spawn().expect("start syncserver-fcgi"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            if let Some(Ok(Some(status))) = self.backend.as_mut().map(Child::try_wait) {
                panic!("syncserver-fcgi exited ({status}):\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "socket never appeared:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn start_nginx(&self, file: &Path, socket: &Path, user: Option<(u32, u32)>) -> Child {
        let user = user.map(|_| "www-data");
        start_nginx(&self.dir.join("nginx"), file, self.port, socket, user)
    }

    fn start_apache(
        &self,
        file: &Path,
        ini: &Path,
        socket: &Path,
        user: Option<(u32, u32)>,
    ) -> Child {
        let root = self.dir.join("apache");
        mkdir(&root.join("logs"), None);
        mkdir(&root.join("htdocs"), None);
        let vhost = format!("*:{}", self.port);
        let sock = socket.display().to_string();
        let ini = ini.display().to_string();
        let (modules, site) = match self.front {
            Front::ApacheFcgid => (
                "LoadModule fcgid_module {M}/mod_fcgid.so\n\
                 FcgidIPCDir logs/fcgidsock\n\
                 FcgidProcessTableFile logs/fcgid_shm\n",
                contrib_with(
                    file,
                    &[
                        ("*:80", &vhost),
                        ("/usr/local/bin/syncserver-fcgi", BIN),
                        ("/etc/syncserver-fcgi/syncserver.ini", &ini),
                    ],
                ),
            ),
            _ => (
                "LoadModule proxy_module {M}/mod_proxy.so\n\
                 LoadModule proxy_fcgi_module {M}/mod_proxy_fcgi.so\n",
                contrib_with(
                    file,
                    &[("*:80", &vhost), ("/run/syncserver-fcgi/sync.sock", &sock)],
                ),
            ),
        };
        let conf = format!(
            "ServerRoot \"{root}\"\nServerName localhost\nListen 127.0.0.1:{port}\n\
             PidFile logs/httpd.pid\nDefaultRuntimeDir logs\nErrorLog logs/error.log\n\
             LogLevel warn\n\
             LogFormat \"%h \\\"%r\\\" %>s %b %D\" timing\nCustomLog logs/access.log timing\n\
             LoadModule mpm_event_module {M}/mod_mpm_event.so\n\
             LoadModule authz_core_module {M}/mod_authz_core.so\n{modules}{user}\
             DocumentRoot \"{root}/htdocs\"\n<Directory \"{root}/htdocs\">\n    \
             Require all granted\n</Directory>\n\n# ---- {file}\n{site}\n",
            root = root.display(),
            port = self.port,
            modules = modules.replace("{M}", APACHE_MODULES),
            M = APACHE_MODULES,
            user = if user.is_some() {
                "User www-data\nGroup www-data\n"
            } else {
                ""
            },
            file = file.display(),
        );
        let path = root.join("httpd.conf");
        std::fs::write(&path, conf).expect("write httpd.conf");
        Command::new(Front::ApacheFcgid.binary().expect("apache2"))
            .arg("-d")
            .arg(&root)
            .arg("-f")
            .arg(&path)
            .arg("-DFOREGROUND")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(root.join("logs/stderr.log")).expect("stderr log"),
            ))
            .spawn()
            .expect("start apache2")
    }

    fn wait_web(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.web.as_mut().map(Child::try_wait) {
                panic!("{:?} exited ({status}):\n{}", self.front, self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "{:?} never listened:\n{}",
                self.front,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every log written so far (ours, the web server's), for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for rel in [
            "server.log",
            "nginx/logs/error.log",
            "nginx/logs/stderr.log",
            "apache/logs/error.log",
            "apache/logs/stderr.log",
        ] {
            if let Ok(text) = std::fs::read_to_string(self.dir.join(rel)) {
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                out.push_str(&format!("--- {rel}\n"));
                for line in tail.into_iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Sends `method target` with `headers` (Host is added unless given) and `body`.
    pub fn http(
        &self,
        method: &str,
        target: &[u8],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let mut head = format!("{method} ").into_bytes();
        head.extend_from_slice(target);
        head.extend_from_slice(b" HTTP/1.1\r\n");
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            head.extend_from_slice(format!("Host: 127.0.0.1:{}\r\n", self.port).as_bytes());
        }
        for (n, v) in headers {
            head.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            head.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        head.extend_from_slice(b"Connection: close\r\n\r\n");
        head.extend_from_slice(body);
        http_exchange(self.port, &head)
            .unwrap_or_else(|e| panic!("HTTP exchange failed: {e}\n{}", self.logs()))
    }

    fn stop(&mut self) {
        let signal = match self.front {
            Front::Nginx => libc::SIGQUIT,
            _ => libc::SIGTERM,
        };
        if let Some(child) = self.web.take() {
            stop_child(child, signal);
        }
        if let Some(child) = self.backend.take() {
            stop_child(child, libc::SIGTERM);
        }
    }
}

/// Starts nginx with the committed contrib `file` (only its documented placeholders
/// replaced: the listen address becomes 127.0.0.1:`port`, the socket `socket`), its
/// prefix, logs and temp files in `root` (created). `user`: the workers' user (the
/// `user` directive), for a test running as root. Stop it with [`stop_child`] and
/// `SIGQUIT`; its logs are `root/logs/error.log` and `root/logs/stderr.log`.
pub fn start_nginx(
    root: &Path,
    file: &Path,
    port: u16,
    socket: &Path,
    user: Option<&str>,
) -> Child {
    mkdir(&root.join("logs"), None);
    mkdir(&root.join("tmp"), None);
    let site = contrib_with(
        file,
        &[
            ("listen 80;", &format!("listen 127.0.0.1:{port};")),
            (
                "/run/syncserver-fcgi/sync.sock",
                &socket.display().to_string(),
            ),
        ],
    );
    let conf = format!(
        "{user}pid logs/nginx.pid;\nevents {{ worker_connections 256; }}\nhttp {{\n    \
         access_log logs/access.log;\n    \
         client_body_temp_path tmp/body;\n    fastcgi_temp_path tmp/fastcgi;\n    \
         proxy_temp_path tmp/proxy;\n    scgi_temp_path tmp/scgi;\n    \
         uwsgi_temp_path tmp/uwsgi;\n\n# ---- {}\n{site}\n}}\n",
        file.display(),
        user = user.map_or(String::new(), |u| format!("user {u};\n")),
    );
    let path = root.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    Command::new(Front::Nginx.binary().expect("nginx"))
        .arg("-p")
        .arg(root)
        .arg("-e")
        .arg(root.join("logs/error.log"))
        .arg("-c")
        .arg(&path)
        .arg("-g")
        .arg("daemon off; worker_processes 1;")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(root.join("logs/stderr.log")).expect("stderr log"),
        ))
        .spawn()
        .expect("start nginx")
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop();
        // For debugging a deployment: the logs of a passing run, too.
        if std::env::var_os("SYNCSERVER_TEST_LOGS").is_some() {
            eprintln!("==== {:?} logs\n{}", self.front, self.logs());
        }
    }
}

/// Signals a child, waits up to 10 s for it to exit, then kills it; always reaps it.
pub fn stop_child(mut child: Child, signal: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// An HTTP response (de-chunked): the same shape as a CGI response.
pub use super::fcgi_client::CgiResponse as HttpResponse;

/// Writes `request` (raw bytes, ending the connection) to 127.0.0.1:`port` and reads the
/// whole answer.
pub fn http_exchange(port: u16, request: &[u8]) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.write_all(request)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn bad(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// Parses a complete HTTP/1.1 response (Connection: close).
pub fn parse_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            bad(format!(
                "no header end in {:?}",
                String::from_utf8_lossy(raw)
            ))
        })?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        let len = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok());
        match len {
            Some(n) => rest.get(..n).unwrap_or(rest).to_vec(),
            None => rest.to_vec(),
        }
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk size".into()))?;
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| bad(format!("chunk size {size_text:?}: {e}")))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data
            .get(..size)
            .ok_or_else(|| bad("truncated chunk".into()))?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
}
