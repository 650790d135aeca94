//! An immutable `syncserver.db-shm` (`chattr +i`) under a running server (issue 10, item 13).
//! SQLite maps that file; once it is immutable, the next write to the mapping is a SIGBUS that
//! used to kill the process without a log line (502 for everyone behind nginx). Now requests
//! that need the database answer 503 with Retry-After, one log line names the file and the
//! fix, and everything works again once the flag is removed. Needs root for `chattr`; without
//! it the test fails unless `SYNCSERVER_TEST_ALLOW_SKIP` names `root` (tests/common/mod.rs, `skip`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::fcgi_client::CgiResponse;
use common::{assert_503, is_root, json, Prereq, Server, Session};

fn chattr(flag: &str, path: &Path) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Removes the immutable flag even if the test fails half-way.
struct Immutable(PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        chattr("-i", &self.0);
    }
}

/// Sends `n` requests at once (so every database session, and new ones, are asked for).
fn concurrent_gets(server: &Server, uid: u64, n: usize) -> Vec<CgiResponse> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| scope.spawn(move || Session::new(server, uid).get("/info/collections")))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    })
}

#[test]
fn immutable_shm_is_503_with_a_clear_log_line_then_recovers() {
    if !is_root() {
        return common::skip(Prereq::Root, "needs root for chattr +i");
    }
    let mut server = Server::start("");
    let s = Session::new(&server, 81);
    assert_eq!(
        s.put("/storage/col/a", r#"{"payload": "before"}"#).status,
        200
    );
    let shm = PathBuf::from(format!("{}-shm", server.db_path().display()));
    assert!(shm.exists(), "no -shm beside the database");
    if !chattr("+i", &shm) {
        return common::skip(Prereq::Root, "chattr +i not available on this filesystem");
    }
    let guard = Immutable(shm.clone());
    let log_before = server.log().len();

    for i in 0..3 {
        let r = s.put(&format!("/storage/col/w{i}"), r#"{"payload": "during"}"#);
        assert_503(&r, "PUT with an immutable -shm");
        assert_503(&s.get("/storage/col/a"), "GET with an immutable -shm");
        for r in concurrent_gets(&server, 81, 6) {
            assert_503(&r, "concurrent GET with an immutable -shm");
        }
    }
    // Requests that need no database still work: the process is alive.
    assert_eq!(
        server.request("GET", "/__lbheartbeat__", &[], b"").status,
        200
    );

    let log = server.log()[log_before..].to_string();
    let shm_name = shm.display().to_string();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&shm_name)).collect();
    assert!(
        lines.iter().any(|l| l.contains("chattr -i")),
        "the log does not name the file and the fix:\n{log}"
    );
    assert!(
        lines.len() <= 2,
        "not rate-limited: {} lines:\n{log}",
        lines.len()
    );
    eprintln!("immutable -shm: all answered 503; logged: {}", lines[0]);

    drop(guard);
    let r = s.put("/storage/col/c", r#"{"payload": "after"}"#);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    assert_eq!(json(&s.get("/storage/col/a"))["payload"], "before");
    assert_eq!(json(&s.get("/storage/col/c"))["payload"], "after");
    assert_eq!(s.get("/storage/col/w0").status, 404);
    for r in concurrent_gets(&server, 81, 6) {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(server.terminate(), Some(0), "{}", server.log());
}

#[test]
fn sigterm_with_an_immutable_shm_exits_cleanly() {
    if !is_root() {
        return common::skip(Prereq::Root, "needs root for chattr +i");
    }
    let mut server = Server::start("");
    let s = Session::new(&server, 82);
    assert_eq!(
        s.put("/storage/col/a", r#"{"payload": "kept"}"#).status,
        200
    );
    let shm = PathBuf::from(format!("{}-shm", server.db_path().display()));
    if !chattr("+i", &shm) {
        return common::skip(Prereq::Root, "chattr +i not available on this filesystem");
    }
    let guard = Immutable(shm);
    // Closing the database at exit checkpoints through the mapping: that must not crash.
    assert_eq!(server.terminate(), Some(0), "{}", server.log());
    drop(guard);
    let db = rusqlite::Connection::open(server.db_path()).expect("open");
    let n: i64 = db
        .query_row("SELECT count(*) FROM bso", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 1, "the acknowledged record survived");
}
