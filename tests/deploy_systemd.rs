//! The systemd units in contrib/systemd: `systemd-analyze verify` accepts them (when it
//! works here), they carry the keys the deployment relies on, and their command lines
//! really start the server (own socket; socket activation via systemd-socket-activate)
//! and the purge.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fcgi_client::FcgiClient;
use common::{Prereq, TempDir, BIN, SECRET};

const INSTALLED_BIN: &str = "/usr/local/bin/syncserver-fcgi";
const INSTALLED_INI: &str = "/etc/syncserver-fcgi/syncserver.ini";
const INSTALLED_SOCKET: &str = "/run/syncserver-fcgi/sync.sock";
const UNITS: [&str; 5] = [
    "syncserver-fcgi.service",
    "syncserver-fcgi.socket",
    "syncserver-fcgi-activated.service",
    "syncserver-fcgi-purge.service",
    "syncserver-fcgi-purge.timer",
];

fn unit_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib/systemd")
        .join(name)
}

fn unit(name: &str) -> String {
    let path = unit_path(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `(section, key, value)` of every assignment, comments skipped.
fn entries(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        } else {
            panic!("not an assignment: {line:?}");
        }
    }
    out
}

/// The values of `section.key` in unit `name`.
fn values(name: &str, section: &str, key: &str) -> Vec<String> {
    entries(&unit(name))
        .into_iter()
        .filter(|(s, k, _)| s == section && k == key)
        .map(|(_, _, v)| v)
        .collect()
}

#[track_caller]
fn one(name: &str, section: &str, key: &str) -> String {
    let v = values(name, section, key);
    assert_eq!(v.len(), 1, "{name}: [{section}] {key} = {v:?}");
    v[0].clone()
}

#[test]
fn units_have_the_keys_the_deployment_relies_on() {
    let service = "syncserver-fcgi.service";
    assert_eq!(
        one(service, "Service", "ExecStart"),
        format!("{INSTALLED_BIN} --config {INSTALLED_INI} serve --bind unix:{INSTALLED_SOCKET} --workers 4")
    );
    assert_eq!(
        one(service, "Service", "RuntimeDirectory"),
        "syncserver-fcgi"
    );
    assert_eq!(one(service, "Service", "StateDirectory"), "syncserver-fcgi");
    assert_eq!(one(service, "Service", "User"), "syncserver-fcgi");
    // The socket's group: what lets the web server connect.
    assert_eq!(one(service, "Service", "Group"), "www-data");
    assert_eq!(one(service, "Service", "ProtectSystem"), "strict");
    assert_eq!(one(service, "Service", "NoNewPrivileges"), "yes");

    let socket = "syncserver-fcgi.socket";
    assert_eq!(one(socket, "Socket", "ListenStream"), INSTALLED_SOCKET);
    assert_eq!(one(socket, "Socket", "SocketMode"), "0660");
    assert_eq!(one(socket, "Socket", "SocketGroup"), "www-data");
    assert_eq!(
        one(socket, "Socket", "Service"),
        "syncserver-fcgi-activated.service"
    );
    let activated = "syncserver-fcgi-activated.service";
    let exec = one(activated, "Service", "ExecStart");
    assert!(!exec.contains("--bind"), "{exec}");
    // Stopping it must not delete the socket the .socket unit owns.
    assert!(values(activated, "Service", "RuntimeDirectory").is_empty());
    assert_eq!(one(activated, "Unit", "Requires"), "syncserver-fcgi.socket");

    let purge = "syncserver-fcgi-purge.service";
    assert_eq!(one(purge, "Service", "Type"), "oneshot");
    assert_eq!(
        one(purge, "Service", "ExecStart"),
        format!("{INSTALLED_BIN} --config {INSTALLED_INI} purge")
    );
    assert_eq!(
        one("syncserver-fcgi-purge.timer", "Timer", "OnCalendar"),
        "daily"
    );
    for name in UNITS {
        // Every file parses as assignments in sections.
        assert!(!entries(&unit(name)).is_empty(), "{name}");
    }
    // Every service documents itself with this project's README, where the setup
    // comment installs it (not the Python server's repository).
    let readme = "file:/usr/local/share/doc/syncserver-fcgi/README.md";
    for name in UNITS.iter().filter(|n| n.ends_with(".service")) {
        assert_eq!(one(name, "Unit", "Documentation"), readme, "{name}");
    }
    assert!(unit(service)
        .contains("install -D -m 644 README.md /usr/local/share/doc/syncserver-fcgi/README.md"));
}

/// `systemd-analyze verify`, with the binary path pointed at the one under test (it checks
/// that ExecStart is executable). Skipped where systemd-analyze is missing or unusable.
#[test]
fn systemd_analyze_verify() {
    let works = Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        return common::skip(Prereq::Systemd, "systemd-analyze is not available");
    }
    let dir = TempDir::new();
    let mut files = Vec::new();
    for name in UNITS {
        let path = dir.join(name);
        std::fs::write(&path, unit(name).replace(INSTALLED_BIN, BIN)).expect("write unit");
        files.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&files)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown keys are only warnings: fail on those too.
    assert!(stderr.trim().is_empty(), "{stderr}");
}

/// A temp dir with an ini (public_url http://localhost:5000) and a database path in it.
fn setup() -> (TempDir, PathBuf, PathBuf) {
    let dir = TempDir::new();
    let ini = dir.join("syncserver.ini");
    std::fs::write(
        &ini,
        format!(
            "[syncserver]\npublic_url = http://localhost:5000\nsecret = {SECRET}\nsqluri = sqlite:///{}\n",
            dir.join("syncserver.db").display()
        ),
    )
    .expect("write ini");
    let socket = dir.join("sync.sock");
    (dir, ini, socket)
}

/// ExecStart of `name`, with the installed paths replaced, as argv.
fn exec_start(name: &str, ini: &Path, socket: &Path) -> Vec<String> {
    one(name, "Service", "ExecStart")
        .replace(INSTALLED_BIN, BIN)
        .replace(INSTALLED_INI, &ini.display().to_string())
        .replace(INSTALLED_SOCKET, &socket.display().to_string())
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// `GET /` over FastCGI must answer "it works!".
fn it_works(socket: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut client = loop {
        if let Ok(c) = FcgiClient::connect_unix(socket) {
            break c;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("exited early: {status}");
        }
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(10));
    };
    let params: [(&[u8], &[u8]); 4] = [
        (b"REQUEST_METHOD", b"GET"),
        (b"REQUEST_URI", b"/"),
        (b"HTTP_HOST", b"localhost:5000"),
        (b"REQUEST_SCHEME", b"http"),
    ];
    let r = client
        .request(&params, b"", false)
        .expect("FastCGI request");
    assert_eq!((r.status, r.text().as_str()), (200, "it works!"));
}

fn terminate(mut child: Child) -> Option<i32> {
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    child.wait().ok().and_then(|s| s.code())
}

#[test]
fn service_command_line_serves() {
    let (_dir, ini, socket) = setup();
    let argv = exec_start("syncserver-fcgi.service", &ini, &socket);
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    it_works(&socket, &mut child);
    assert_eq!(terminate(child), Some(0));
}

/// The activated service's command line, given a socket the way systemd does
/// (LISTEN_FDS, fd 3), by systemd-socket-activate.
#[test]
fn activated_command_line_serves() {
    if Command::new("systemd-socket-activate")
        .arg("--version")
        .output()
        .is_err()
    {
        return common::skip(Prereq::Systemd, "systemd-socket-activate is not available");
    }
    let (_dir, ini, socket) = setup();
    let argv = exec_start("syncserver-fcgi-activated.service", &ini, &socket);
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&socket)
        .args(&argv)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start systemd-socket-activate");
    it_works(&socket, &mut child);
    // systemd-socket-activate exec'd the server in place: this stops the server.
    assert_eq!(terminate(child), Some(0));
}

/// The purge unit's command, run while the server (started by its unit's command line)
/// serves the same database, as the timer does.
#[test]
fn purge_command_line_runs() {
    let (_dir, ini, socket) = setup();
    let argv = exec_start("syncserver-fcgi.service", &ini, &socket);
    let mut server = Command::new(&argv[0])
        .args(&argv[1..])
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    it_works(&socket, &mut server);
    let argv = exec_start("syncserver-fcgi-purge.service", &ini, &socket);
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run purge");
    assert_eq!(terminate(server), Some(0));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
