//! Keeps the load tool honest: `syncload` runs every workload for about a second at
//! concurrency 2 against the real binary (plain HTTP listener, `serve --http`), with tokens
//! minted from the shared secret and, for the token workload, JWTs the server accepts through
//! `[oauth] jwks`. Every request must succeed and the JSON, report and chart must come out.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{TempDir, BIN};
use serde_json::Value;

const SYNCLOAD: &str = env!("CARGO_BIN_EXE_syncload");
const SECRET: &str = "syncload-test-secret-0123456789";

fn key_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/oauth-test-key.pk8")
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

fn syncload(args: &[&str]) -> Output {
    let out = Command::new(SYNCLOAD)
        .args(args)
        .output()
        .expect("run syncload");
    assert!(
        out.status.success(),
        "syncload {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The server on a plain HTTP port; killed and reaped on drop.
struct HttpServer {
    child: Child,
    url: String,
    ini: PathBuf,
    dir: TempDir,
}

impl HttpServer {
    fn start() -> HttpServer {
        let dir = TempDir::new();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let jwks = syncload(&["jwks", "--jwt-key", key_path(), "--jwt-kid", "bench-key"]);
        let ini = dir.join("syncserver.ini");
        let text = format!(
            "[syncserver]\npublic_url = {url}\nsecret = {SECRET}\nsqluri = sqlite:///{}\n\
             [oauth]\njwks = {}\n",
            dir.join("syncserver.db").display(),
            String::from_utf8_lossy(&jwks.stdout).trim()
        );
        std::fs::write(&ini, text).expect("write ini");
        let log = std::fs::File::create(dir.join("server.log")).expect("log");
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&ini)
            .args(["serve", "--http", &format!("127.0.0.1:{port}")])
            .env_remove("RUST_BACKTRACE")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start server");
        let server = HttpServer {
            child,
            url,
            ini,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "no listener:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn key_path() -> &'static str {
    // Leaked once per test process: the path must outlive the argument slices.
    Box::leak(key_file().display().to_string().into_boxed_str())
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).expect("JSON output written");
    serde_json::from_str(&text).expect("JSON output parses")
}

#[test]
fn every_workload_runs_without_errors() {
    let server = HttpServer::start();
    let json = server.dir.join("ours.json");
    let svg = server.dir.join("chart.svg");
    let plain = format!("{}/__lbheartbeat__", server.url);
    syncload(&[
        "--base-url",
        &plain,
        "--workload",
        "plain",
        "--concurrency",
        "2",
        "--duration",
        "0.5",
        "--label",
        "hello",
        "--json-out",
        server.dir.join("ceiling.json").to_str().unwrap(),
    ]);
    let out = syncload(&[
        "--base-url",
        &server.url,
        "--secret",
        SECRET,
        "--jwt-key",
        key_path(),
        "--jwt-kid",
        "bench-key",
        "--workload",
        "all",
        "--concurrency",
        "2",
        "--duration",
        "1",
        "--users",
        "3",
        "--records",
        "300",
        "--seed",
        "--label",
        "ours",
        "--json-out",
        json.to_str().unwrap(),
        "--svg-out",
        svg.to_str().unwrap(),
    ]);
    let v = read_json(&json);
    let results = v["results"].as_array().expect("results");
    let names: Vec<&str> = results
        .iter()
        .filter_map(|r| r["workload"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "info",
            "read-page",
            "full-read",
            "batch",
            "put",
            "session",
            "token"
        ],
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for r in results {
        let what = format!("{r}\n{}", server.log());
        assert_eq!(r["concurrency"], 2, "{what}");
        assert!(r["ok"].as_u64().unwrap_or(0) > 0, "{what}");
        assert!(r["throughput"].as_f64().unwrap_or(0.0) > 0.0, "{what}");
        assert_eq!(r["errors"], serde_json::json!({}), "{what}");
        assert_eq!(r["transport_errors"], 0, "{what}");
        let l = &r["latency_ms"];
        assert!(l["p50"].as_f64() <= l["p99"].as_f64() && l["p99"].as_f64() <= l["max"].as_f64());
    }
    let chart = std::fs::read_to_string(&svg).expect("chart written");
    assert!(chart.starts_with("<svg") && chart.contains(">read-page<"));

    // Credentials from the token server (OAuth JWT + X-KeyID) instead of the shared secret.
    let via_token = server.dir.join("via-token.json");
    let token_server = format!("{}/token", server.url);
    syncload(&[
        "--token-server",
        &token_server,
        "--jwt-key",
        key_path(),
        "--jwt-kid",
        "bench-key",
        "--workload",
        "info",
        "--concurrency",
        "2",
        "--duration",
        "0.5",
        "--users",
        "2",
        "--json-out",
        via_token.to_str().unwrap(),
    ]);
    let r = &read_json(&via_token)["results"][0];
    assert!(
        r["ok"].as_u64().unwrap_or(0) > 0 && r["errors"] == serde_json::json!({}),
        "{r}"
    );

    // The report puts both files in one table with ratios to the ceiling.
    let table = syncload(&[
        "report",
        "--ceiling",
        server.dir.join("ceiling.json").to_str().unwrap(),
        json.to_str().unwrap(),
    ]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("| hello | plain | 2 |"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("| ours | batch | 2 |") && l.ends_with("% |")),
        "{table}"
    );
}

#[test]
fn startup_probe_reports_time_and_rss() {
    let server = HttpServer::start();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    // A second server process on the same database, started (and stopped) by the probe.
    let ini = server.dir.join("probe.ini");
    let text = std::fs::read_to_string(&server.ini)
        .expect("ini")
        .replace(&server.url, &url);
    std::fs::write(&ini, text).expect("write ini");
    let out = syncload(&[
        "startup",
        "--base-url",
        &url,
        "--secret",
        SECRET,
        "--runs",
        "2",
        "--",
        BIN,
        "--config",
        ini.to_str().unwrap(),
        "serve",
        "--http",
        &format!("127.0.0.1:{port}"),
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("startup JSON");
    assert!(
        v["first_response_ms"]["median"].as_f64().unwrap_or(0.0) > 0.0,
        "{v}"
    );
    assert!(v["rss_kb"]["max"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
}
