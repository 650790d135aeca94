//! Faults under a running server: database read-only (immutable files), disk
//! full (a small tmpfs), database locked by another process beyond the busy
//! timeout, account server slow or down. Each answers 503 with Retry-After (or
//! the tokenserver's error), loses nothing acknowledged and recovers by itself
//! once the fault clears. Needs root for `chattr` and `mount`; without it
//! those tests fail unless `SYNCSERVER_TEST_ALLOW_SKIP` names `root`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::fcgi_client::CgiResponse;
use common::fxa::{self, FakeFxa, Mode, TestKey};
use common::{assert_503, is_root, json, Prereq, Server, ServerSpec, Session, TempDir};

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn integrity_ok(db: &Path) {
    let db = rusqlite::Connection::open(db).expect("open");
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(ok, "ok");
}

fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// Clears the immutable flag even if the test fails half-way.
struct Immutable(Vec<PathBuf>);

impl Drop for Immutable {
    fn drop(&mut self) {
        for p in &self.0 {
            run("chattr", &["-i", &p.display().to_string()]);
        }
    }
}

#[test]
fn read_only_database_is_503_then_recovers() {
    if !is_root() {
        return common::skip(Prereq::Root, "needs root for chattr +i");
    }
    let server = Server::start("");
    let s = Session::new(&server, 71);
    assert_eq!(
        s.put("/storage/col/a", r#"{"payload": "before"}"#).status,
        200
    );
    let db = server.db_path();
    let files: Vec<PathBuf> = ["", "-wal"]
        .iter()
        .map(|ext| PathBuf::from(format!("{}{ext}", db.display())))
        .filter(|p| p.exists())
        .collect();
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let mut args = vec!["+i"];
    args.extend(paths.iter().map(String::as_str));
    // Probe: does the immutable flag stop writes here (some filesystems ignore it)?
    if !run("chattr", &args) {
        return common::skip(Prereq::Root, "chattr +i not available on this filesystem");
    }
    let guard = Immutable(files.clone());
    let log_before = server.log();
    for i in 0..5 {
        let r = s.put(&format!("/storage/col/w{i}"), r#"{"payload": "during"}"#);
        assert_503(&r, "PUT while read-only");
        let r = s.post("/storage/col", r#"[{"id": "b", "payload": "x"}]"#);
        assert_503(&r, "POST while read-only");
        let r = s.delete("/storage/col/a");
        assert_503(&r, "DELETE while read-only");
        // Reads still work.
        let r = s.get("/storage/col/a");
        assert_eq!(r.status, 200, "read while read-only: {}", r.text());
        assert_eq!(json(&r)["payload"], "before");
        assert_eq!(s.get("/info/collections").status, 200);
    }
    let log = server.log()[log_before.len()..].to_string();
    let logged = count_lines(&log, "cannot be written") + count_lines(&log, "database error");
    assert!(logged >= 1, "cause not logged:\n{log}");
    eprintln!("read-only: 15 writes answered 503, cause logged on {logged} lines");
    drop(guard);
    // Recovers by itself.
    let r = s.put("/storage/col/c", r#"{"payload": "after"}"#);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    assert_eq!(json(&s.get("/storage/col/a"))["payload"], "before");
    assert_eq!(json(&s.get("/storage/col/c"))["payload"], "after");
    for i in 0..5 {
        assert_eq!(s.get(&format!("/storage/col/w{i}")).status, 404);
    }
    integrity_ok(&db);
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        run("umount", &["-l", &self.0.display().to_string()]);
    }
}

#[test]
fn disk_full_is_503_then_recovers() {
    if !is_root() {
        return common::skip(Prereq::Root, "needs root to mount a tmpfs");
    }
    let scratch = TempDir::new();
    let mnt = scratch.join("small");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    if !run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=2m",
            "tmpfs",
            &mnt.display().to_string(),
        ],
    ) {
        return common::skip(Prereq::Root, "mount -t tmpfs not permitted here");
    }
    let _mount = Tmpfs(mnt.clone());
    let db = mnt.join("full.db");
    let server = Server::start_spec(ServerSpec {
        extra_ini: format!("sqluri = sqlite:///{}\n", db.display()),
        ..ServerSpec::default()
    });
    let s = Session::new(&server, 72);
    let payload = "z".repeat(60_000);
    let mut acked = Vec::new();
    for i in 0..4 {
        let r = s.put(
            &format!("/storage/col/k{i}"),
            &format!(r#"{{"payload": "{payload}"}}"#),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        acked.push(format!("k{i}"));
    }
    // Fill what is left of the disk.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let mut refused = 0;
    for i in 0..20 {
        let id = format!("f{i}");
        let r = s.put(
            &format!("/storage/col/{id}"),
            &format!(r#"{{"payload": "{payload}"}}"#),
        );
        match r.status {
            200 => acked.push(id),
            _ => {
                assert_503(&r, "PUT on a full disk");
                refused += 1;
            }
        }
        assert_eq!(s.get("/storage/col/k0").status, 200, "read on a full disk");
    }
    assert!(refused > 0, "the disk never filled");
    eprintln!("disk full: {refused} of 20 writes answered 503");
    let log = server.log();
    assert!(
        log.contains("full") || log.contains("cannot be written") || log.contains("database error"),
        "cause not logged:\n{log}"
    );
    std::fs::remove_file(&filler).expect("free space");
    let r = s.put("/storage/col/after", r#"{"payload": "after"}"#);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    acked.push("after".into());
    let listed = s.get_json("/storage/col");
    for id in &acked {
        assert!(
            listed.as_array().unwrap().iter().any(|v| v == id.as_str()),
            "acknowledged {id} lost"
        );
    }
    drop(server);
    integrity_ok(&db);
}

#[test]
fn locked_database_is_503_within_busy_timeout_then_works() {
    let server = Server::start("");
    let s = Session::new(&server, 73);
    assert_eq!(s.put("/storage/col/a", r#"{"payload": "x"}"#).status, 200);
    let db = rusqlite::Connection::open(server.db_path()).expect("open");
    db.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let t0 = Instant::now();
    let r = s.put("/storage/col/b", r#"{"payload": "y"}"#);
    let took = t0.elapsed();
    assert_503(&r, "PUT while locked");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(7),
        "answered after {took:?}"
    );
    // Reads are not blocked by a writer in WAL mode.
    assert_eq!(s.get("/storage/col/a").status, 200);
    db.execute_batch("COMMIT").expect("unlock");
    let r = s.put("/storage/col/b", r#"{"payload": "y"}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        server.log().contains("database busy"),
        "cause not logged:\n{}",
        server.log()
    );
    drop(db);
    integrity_ok(&server.db_path());
}

#[test]
fn account_server_down_or_slow_then_back() {
    let key = TestKey::load("oauth-test-key.pk8", "key-1");
    let fxa = FakeFxa::start(&[&key]);
    let server = Server::start_spec(ServerSpec {
        extra_ini: format!("oauth_verifier = {}\n[oauth]\ntimeout = 1\n", fxa.url),
        ..ServerSpec::default()
    });
    let sub = fxa::fxa_uid();
    let get = || {
        let auth = format!("Bearer {}", key.token(&fxa::claims(&sub, 1)));
        let kid = fxa::key_id(1000, fxa::fingerprint(1));
        server.request(
            "GET",
            "/token/1.0/sync/1.5",
            &[("Authorization", &auth), ("X-KeyID", &kid)],
            b"",
        )
    };
    let unavailable = |r: &CgiResponse, what: &str| {
        assert_eq!(r.status, 503, "{what}: {}", r.text());
        assert_eq!(
            json(r)["errors"][0]["description"],
            "Resource is not available",
            "{what}"
        );
    };
    for (mode, what) in [
        (Mode::Down, "down"),
        (Mode::Slow(Duration::from_secs(3)), "slow"),
    ] {
        fxa.set_mode(mode);
        let t0 = Instant::now();
        unavailable(&get(), what);
        assert!(
            t0.elapsed() < Duration::from_millis(2500),
            "{what}: {:?}",
            t0.elapsed()
        );
    }
    fxa.set_mode(Mode::Normal);
    let r = get();
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    assert!(json(&r)["id"].is_string());
}
