//! End-to-end tests of the operator commands on what only SQLite has: `backup` (a copy of the
//! database file, restored by copying it back), a write lock held on the file, a database
//! file that is not there; and the commands' help and check-config's key hints, which no
//! engine changes. This file is not in scripts/test's engine matrix: its servers run on
//! SQLite (with `SYNCSERVER_TEST_ENGINE` set to a server engine, `Server::db_path` fails the
//! tests that read the file, rather than letting them pass untested). The commands that work the
//! same on every engine are tested in tests/operator_commands.rs, which is.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::commands::{fails, ok, run, run_with};
use common::rows::{cid, insert_expiring, insert_user, now_s, table_counts};
use common::{Server, ServerSpec, Session, TempDir, BIN};
use rusqlite::Connection;

fn ini(server: &Server) -> PathBuf {
    server.dir.join("syncserver.ini")
}

fn cli(server: &Server, args: &[&str]) -> Output {
    run(&ini(server), args)
}

fn db(server: &Server) -> Connection {
    let c = Connection::open(server.db_path()).expect("open database");
    c.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    c
}

fn put(s: &Session, rest: &str, body: &str) {
    let r = s.put(rest, body);
    assert_eq!(r.status, 200, "PUT {rest}: {}", r.text());
}

/// check-config names the closest known key for a misspelt one, and a missing
/// public_url names the misspelt key that is there.
#[test]
fn check_config_suggests_known_keys() {
    let dir = TempDir::new();
    let ini = dir.join("syncserver.ini");
    std::fs::write(
        &ini,
        "[syncserver]\npublc_url = http://localhost:5000\nsecret = s3cret\n",
    )
    .unwrap();
    let err = fails(&run_with(&ini, &["check-config"], None));
    assert!(
        err.contains("`public_url` is not set ([syncserver] publc_url (")
            && err.contains(":2) is there: did you mean public_url?)"),
        "{err}"
    );
    std::fs::write(
        &ini,
        "[syncserver]\npublic_url = http://localhost:5000\nsecret = s3cret\nsqlrui = x\n\
         [storage]\nquota_sise = 5\ntoken_duration = 60\n",
    )
    .unwrap();
    let out = ok(&run_with(&ini, &["check-config"], None));
    for hint in [
        "[syncserver] sqlrui",
        "did you mean sqluri?",
        "did you mean quota_size?",
        "did you mean [tokenserver] token_duration?",
    ] {
        assert!(out.contains(hint), "{hint}: {out}");
    }
}

fn no_partials(dir: &Path) {
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains("partial"))
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn backup_while_serving_then_restore() {
    let server = Arc::new(Server::start(""));
    let s = Session::new(&server, 1);
    for i in 0..40 {
        put(
            &s,
            &format!("/storage/bookmarks/b{i}"),
            &format!(r#"{{"payload": "{}"}}"#, "x".repeat(2000)),
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (server, stop) = (Arc::clone(&server), Arc::clone(&stop));
        std::thread::spawn(move || {
            let s = Session::new(&server, 2);
            let mut statuses = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) || i < 5 {
                let r = s.put(&format!("/storage/tabs/t{i}"), r#"{"payload": "w"}"#);
                statuses.push((r.status, r.text()));
                i += 1;
            }
            statuses
        })
    };
    let out_dir = TempDir::new();
    let target = out_dir.join("backup.db");
    let out = ok(&cli(&server, &["backup", target.to_str().unwrap()]));
    stop.store(true, Ordering::SeqCst);
    assert!(out.contains("backup written"), "{out}");
    for (status, body) in writer.join().expect("writer") {
        assert_eq!(status, 200, "{body}");
    }
    no_partials(&out_dir.0);
    {
        let copy = Connection::open(&target).unwrap();
        let check: String = copy
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        assert_eq!(
            copy.query_row("SELECT COUNT(*) FROM bso WHERE userid = 1", [], |r| r
                .get::<_, i64>(0))
                .unwrap(),
            40
        );
    }
    assert!(!out_dir.join("backup.db-wal").exists());

    // Written after the backup: must not survive the restore.
    put(&s, "/storage/bookmarks/later", r#"{"payload": "later"}"#);
    drop(s);
    let server = Arc::try_unwrap(server).unwrap_or_else(|_| panic!("server still shared"));
    let dir = server.stop();
    std::fs::copy(&target, dir.join("syncserver.db")).unwrap();
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(&format!("syncserver.db{ext}")));
    }
    let server = Server::start_in(dir, ServerSpec::default());
    let s = Session::new(&server, 1);
    let ids = s.get_json("/storage/bookmarks");
    assert_eq!(ids.as_array().map(Vec::len), Some(40), "{ids}");
    assert_eq!(
        s.get_json("/storage/bookmarks/b7")["payload"],
        "x".repeat(2000)
    );
    assert_eq!(s.get("/storage/bookmarks/later").status, 404);
}

#[test]
fn backup_refuses_bad_targets() {
    let server = Server::start("");
    put(
        &Session::new(&server, 1),
        "/storage/bookmarks/a",
        r#"{"payload": "x"}"#,
    );
    let out_dir = TempDir::new();
    let existing = out_dir.join("existing.db");
    std::fs::write(&existing, "keep me").unwrap();
    let err = fails(&cli(&server, &["backup", existing.to_str().unwrap()]));
    assert!(err.contains("exists already"), "{err}");
    assert!(!err.contains("database cannot be written"), "{err}");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");

    let missing = out_dir.join("no/such/dir/b.db");
    let err = fails(&cli(&server, &["backup", missing.to_str().unwrap()]));
    assert!(err.contains("does not exist"), "{err}");
    assert!(!out_dir.join("no").exists());

    // A file where the directory should be.
    let under_file = existing.join("b.db");
    let err = fails(&cli(&server, &["backup", under_file.to_str().unwrap()]));
    assert!(err.contains("does not exist"), "{err}");

    // Unwritable even for root: /proc accepts no new files.
    let err = fails(&cli(&server, &["backup", "/proc/syncserver-backup.db"]));
    assert!(
        err.contains("cannot write the backup /proc/syncserver-backup.db"),
        "{err}"
    );
    assert!(!Path::new("/proc/syncserver-backup.db").exists());
    no_partials(&out_dir.0);
    assert_eq!(
        std::fs::read_dir(&out_dir.0).unwrap().count(),
        1,
        "only the existing file"
    );
}

#[test]
fn missing_database_is_explained() {
    let dir = TempDir::new();
    let db = dir.join("nope.db");
    let ini = dir.join("syncserver.ini");
    std::fs::write(
        &ini,
        format!(
            "[syncserver]\npublic_url = http://localhost:5000\nsecret = s3cret\nsqluri = sqlite:///{}\n",
            db.display()
        ),
    )
    .unwrap();
    let target = dir.join("b.db");
    let commands: [&[&str]; 6] = [
        &["purge"],
        &["purge", "--replaced", "--grace-period", "0"],
        &["users", "list"],
        &["users", "delete", "1", "--yes"],
        &["stats", "--json"],
        &["backup", target.to_str().unwrap()],
    ];
    for args in commands {
        let err = fails(&run_with(&ini, args, None));
        assert!(
            err.contains("no database at") && err.contains("nope.db"),
            "{args:?}: {err}"
        );
        assert!(!db.exists(), "{args:?} created the database");
        assert!(!target.exists());
    }
}

#[test]
fn locked_database_fails_cleanly() {
    let server = Server::start("");
    let s = Session::new(&server, 1);
    put(&s, "/storage/history/live", r#"{"payload": "x"}"#);
    insert_user(&server, 1, "aaa@x", 1_600_000_000_000, None);
    let history = cid(&server, "history");
    insert_expiring(&server, 1, history, "e", 50, now_s() - 10);
    let before = table_counts(&server);

    let locker = db(&server);
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let ini = ini(&server);
    let jobs: Vec<_> = [
        vec!["purge", "--grace-period", "0", "--replaced"],
        vec!["users", "delete", "1", "--yes"],
    ]
    .into_iter()
    .map(|args| {
        let ini = ini.clone();
        std::thread::spawn(move || (args.clone(), run_with(&ini, &args, None)))
    })
    .collect();
    let results: Vec<_> = jobs.into_iter().map(|j| j.join().unwrap()).collect();
    locker.execute_batch("ROLLBACK").unwrap();
    for (args, o) in results {
        let err = fails(&o);
        assert!(err.contains("locked"), "{args:?}: {err}");
    }
    assert_eq!(table_counts(&server), before);
    assert_eq!(s.get_json("/storage/history/live")["payload"], "x");
}

#[test]
fn every_command_has_help() {
    // Bare `--help` prints serve's text (the default command); `help` the overview.
    let cases: [(&[&str], &[&str]); 8] = [
        (
            &["help"],
            &["purge", "users list", "stats", "backup", "--config"],
        ),
        (&["users", "list", "--help"], &["list", "--json"]),
        (
            &["purge", "--help"],
            &["--grace-period", "--replaced", "--chunk", "--json"],
        ),
        (&["users", "--help"], &["list", "delete", "--yes", "--json"]),
        (&["users", "delete", "--help"], &["ACCOUNT|UID", "--yes"]),
        (&["stats", "--help"], &["--json", "oldest expired"]),
        (&["backup", "--help"], &["FILE", "restore", "-wal"]),
        (&["serve", "--help"], &["--bind", "--workers", "SIGTERM"]),
    ];
    for (args, words) in cases {
        let o = Command::new(BIN)
            .args(args)
            .env_remove("SYNCSERVER_CONFIG")
            .output()
            .unwrap();
        let out = ok(&o);
        for w in words {
            assert!(out.contains(w), "{args:?} lacks {w:?}:\n{out}");
        }
    }
    let err = fails(
        &Command::new(BIN)
            .args(["purge", "--nope"])
            .output()
            .unwrap(),
    );
    assert!(err.contains("--nope"), "{err}");
}
