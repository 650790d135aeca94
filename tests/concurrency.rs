//! Several worker processes on one database file (as mod_fcgid runs them), many
//! clients doing read-modify-write loops with `X-If-Unmodified-Since` on the
//! same user's collections: no lost update, timestamps strictly increasing per
//! collection, conflicts answered 412 or 503 + Retry-After, never 500.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::engines::{test_engine, Engine, TestDatabase};
use common::{json, ms, Server, ServerSpec, TempDir, User, JSON_CT};

const PROCESSES: usize = 3;
const CLIENTS: usize = 8;
const COLLECTIONS: [&str; 2] = ["counters", "tabs"];
const RUN_FOR: Duration = Duration::from_secs(6);
const UID: u64 = 4242;

/// What one client saw.
#[derive(Default)]
struct Seen {
    /// (collection, value written, X-Last-Modified of the 200).
    writes: Vec<(usize, i64, i64)>,
    conflicts_412: u32,
    busy_503: u32,
    problems: Vec<String>,
}

fn start_processes(sqluri: &str) -> Vec<Server> {
    (0..PROCESSES)
        .map(|_| {
            Server::start_spec(ServerSpec {
                extra_ini: format!("sqluri = {sqluri}\n"),
                workers: 2,
                ..ServerSpec::default()
            })
        })
        .collect()
}

fn send(
    server: &Server,
    user: &User,
    method: &str,
    path: &str,
    h: &[(&str, &str)],
    body: &str,
) -> common::fcgi_client::CgiResponse {
    server.signed(user, method, path, h, body.as_bytes())
}

fn client(servers: &[Server], n: usize, deadline: Instant) -> Seen {
    let mut seen = Seen::default();
    let mut k = n;
    // One token per client, as a real client holds one: every server shares the secret and
    // node. (A token per request would be an account minting thousands, which the replay
    // guard bounds.)
    let user = servers[0].user(UID);
    while Instant::now() < deadline {
        k += 1;
        let server = &servers[k % servers.len()];
        let col = k % COLLECTIONS.len();
        let path = Server::storage_path(UID, &format!("/storage/{}/c", COLLECTIONS[col]));
        let r = send(server, &user, "GET", &path, &[], "");
        if r.status != 200 {
            if r.status == 503 && r.header("Retry-After").is_some() {
                seen.busy_503 += 1;
                continue;
            }
            seen.problems
                .push(format!("GET {}: {}", r.status, r.text()));
            continue;
        }
        let v = json(&r);
        let value: i64 = v["payload"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .unwrap_or(-1);
        let ts = r.header("X-Last-Modified").unwrap_or("0").to_string();
        let body = format!(r#"{{"payload": "{}"}}"#, value + 1);
        let headers = [JSON_CT[0], ("X-If-Unmodified-Since", ts.as_str())];
        let r = send(server, &user, "PUT", &path, &headers, &body);
        match r.status {
            200 => {
                let lm = r.header("X-Last-Modified").map(ms).unwrap_or(0);
                assert_eq!(ms(&r.text()), lm, "PUT body is the new timestamp");
                seen.writes.push((col, value + 1, lm));
            }
            412 => seen.conflicts_412 += 1,
            503 if r.header("Retry-After").is_some() => {
                seen.busy_503 += 1;
                // Back off like a client told to retry; not a wait for anything.
                std::thread::sleep(Duration::from_millis(50));
            }
            s => seen
                .problems
                .push(format!("PUT {s}: {} {:?}", r.text(), r.headers)),
        }
    }
    seen
}

#[test]
fn many_processes_one_database_no_lost_update() {
    let shared = TempDir::new();
    let db = shared.join("shared.db");
    // On a server engine (SYNCSERVER_TEST_ENGINE), one database every process shares;
    // dropped after the servers (declared before them).
    let server_db = match test_engine() {
        Engine::Sqlite => None,
        engine => match TestDatabase::create(engine, "concurrency") {
            Some(d) => Some(d),
            None => return,
        },
    };
    let sqluri = match &server_db {
        Some(d) => d.uri.clone(),
        None => format!("sqlite:///{}", db.display()),
    };
    let servers = Arc::new(start_processes(&sqluri));
    // Seed every counter at 0.
    for name in COLLECTIONS {
        let user = servers[0].user(UID);
        let path = Server::storage_path(UID, &format!("/storage/{name}/c"));
        let r = servers[0].signed(&user, "PUT", &path, &JSON_CT, br#"{"payload": "0"}"#);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let deadline = Instant::now() + RUN_FOR;
    let results = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|n| {
            let servers = servers.clone();
            let results = results.clone();
            std::thread::spawn(move || {
                let seen = client(&servers, n, deadline);
                results.lock().unwrap().push(seen);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let results = std::mem::take(&mut *results.lock().unwrap());
    let problems: Vec<&String> = results.iter().flat_map(|s| &s.problems).collect();
    assert!(problems.is_empty(), "unexpected answers: {problems:#?}");

    let (c412, c503): (u32, u32) = results
        .iter()
        .fold((0, 0), |(a, b), s| (a + s.conflicts_412, b + s.busy_503));
    for (col, name) in COLLECTIONS.iter().enumerate() {
        // value -> timestamp of the write that set it; each value written once.
        let mut by_value: BTreeMap<i64, i64> = BTreeMap::new();
        for s in &results {
            for &(c, value, ts) in &s.writes {
                if c == col {
                    assert!(
                        by_value.insert(value, ts).is_none(),
                        "{name}: value {value} written twice (lost update)"
                    );
                }
            }
        }
        let n = by_value.len() as i64;
        assert!(n > 0, "{name}: no write succeeded");
        assert_eq!(
            by_value.keys().copied().collect::<Vec<_>>(),
            (1..=n).collect::<Vec<_>>(),
            "{name}: gaps"
        );
        let ts: Vec<i64> = by_value.values().copied().collect();
        assert!(
            ts.windows(2).all(|w| w[0] < w[1]),
            "{name}: timestamps not strictly increasing: {ts:?}"
        );
        // The stored value is exactly the number of successful writes, whichever process reads.
        for server in servers.iter() {
            let user = server.user(UID);
            let path = Server::storage_path(UID, &format!("/storage/{name}/c"));
            let r = server.signed(&user, "GET", &path, &[], b"");
            assert_eq!(r.status, 200);
            assert_eq!(json(&r)["payload"], n.to_string(), "{name}");
            assert_eq!(
                common::hdr(&r, "X-Last-Modified"),
                format!("{:.2}", *ts.last().unwrap() as f64 / 1000.0)
            );
        }
        eprintln!("{name}: {n} successful read-modify-writes");
    }
    eprintln!("conflicts: {c412} x 412, {c503} x 503 + Retry-After, 0 x 500");
    if server_db.is_none() {
        let db = rusqlite::Connection::open(&db).expect("open");
        let ok: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("check");
        assert_eq!(ok, "ok");
    }
    for s in servers.iter() {
        assert!(!s.log().contains("panicked"), "{}", s.log());
    }
}
