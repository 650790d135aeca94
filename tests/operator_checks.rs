//! `check-config` checks the database the way `serve` opens it (also as another
//! user, `--as-user`), and `secret` prints the secret the server really uses.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::commands::run;
use common::{Server, ServerSpec, Session, TempDir, PUBLIC_URL};

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write_ini(dir: &TempDir, db: &Path) -> std::path::PathBuf {
    let ini = dir.join("syncserver.ini");
    std::fs::write(
        &ini,
        format!(
            "[syncserver]\npublic_url = {PUBLIC_URL}\nsecret = 0123456789abcdef0123\nsqluri = sqlite:///{}\n",
            db.display()
        ),
    )
    .expect("write ini");
    ini
}

fn chown(path: &Path, user: &str) {
    let status = Command::new("chown")
        .arg(format!("{user}:"))
        .arg(path)
        .status()
        .expect("chown");
    assert!(status.success());
}

fn am_root() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn check_config_fails_on_a_missing_database_directory() {
    let dir = TempDir::new();
    let ini = write_ini(&dir, &dir.join("no/such/dir/sync.db"));
    let o = run(&ini, &["check-config"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("[problem]") && out.contains("does not exist"),
        "{}",
        text(&o)
    );
    assert!(out.contains("no/such/dir"), "{}", text(&o));

    // And serve really fails there: check-config does not cry wolf.
    let o = run(
        &ini,
        &[
            "serve",
            "--bind",
            &format!("unix:{}", dir.join("s.sock").display()),
        ],
    );
    assert!(!o.status.success(), "{}", text(&o));

    let ok_ini = write_ini(&dir, &dir.join("sync.db"));
    let o = run(&ok_ini, &["check-config"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("OK"),
        "{}",
        text(&o)
    );
    assert!(
        !dir.join("sync.db").exists(),
        "check-config created the database"
    );
}

#[test]
fn check_config_as_user_reports_every_problem_of_that_user() {
    if !am_root() {
        eprintln!("skipped: --as-user needs root");
        return;
    }
    let dir = TempDir::new();
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = data.join("sync.db");
    let ini = write_ini(&dir, &db);
    // A database root created (e.g. by starting the server once as root).
    let o = run(&ini, &["stats"]);
    assert!(!o.status.success(), "no database yet: {}", text(&o));
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE t(x)")
        .unwrap();

    // As root everything passes: that is the trap --as-user exists for.
    let o = run(&ini, &["check-config"]);
    assert!(o.status.success(), "{}", text(&o));

    let o = run(&ini, &["check-config", "--as-user", "www-data"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let problems: Vec<&str> = out.lines().filter(|l| l.contains("[problem]")).collect();
    assert_eq!(
        problems.len(),
        2,
        "the directory and the file: {}",
        text(&o)
    );
    assert!(
        out.contains("cannot create files in the database directory"),
        "{out}"
    );
    assert!(out.contains("cannot read and write the database"), "{out}");
    assert!(out.contains("www-data"), "{out}");

    // An ini www-data cannot read (mod_fcgid starts us as www-data) is one more.
    std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = run(&ini, &["check-config", "--as-user", "www-data"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(out.matches("[problem]").count(), 3, "{}", text(&o));
    assert!(
        out.contains("cannot read") && out.contains("syncserver.ini"),
        "{out}"
    );
    std::fs::set_permissions(&ini, std::fs::Permissions::from_mode(0o644)).unwrap();

    // Given to www-data, it passes as www-data.
    chown(&data, "www-data");
    chown(&db, "www-data");
    let o = run(&ini, &["check-config", "--as-user", "www-data"]);
    assert!(o.status.success(), "{}", text(&o));

    // A user that does not exist is a usage error, not a pass.
    let o = run(&ini, &["check-config", "--as-user", "no-such-user-here"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn secret_prints_before_the_first_start_the_secret_serve_then_uses() {
    let dir = TempDir::new();
    let ini = dir.join("syncserver.ini");
    std::fs::write(&ini, format!("[syncserver]\npublic_url = {PUBLIC_URL}\n")).unwrap();
    let o = run(&ini, &["secret"]);
    assert!(o.status.success(), "{}", text(&o));
    let secret = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(secret.len(), 64, "{}", text(&o));
    let again = run(&ini, &["secret"]);
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), secret);
    let metrics = run(&ini, &["secret", "--metrics"]);
    let metrics = String::from_utf8_lossy(&metrics.stdout).trim().to_string();
    assert_eq!(metrics.len(), 64);
    assert_ne!(metrics, secret);

    let mut server = Server::start_in(
        dir,
        ServerSpec {
            with_secret: false,
            ..ServerSpec::default()
        },
    );
    server.secret = secret.clone();
    let r = Session::new(&server, 7).get("/info/collections");
    assert_eq!(
        r.status,
        200,
        "a token signed with the printed secret: {}",
        r.text()
    );
    let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
    assert!(!log.contains(&secret), "the secret was logged");
    assert!(!log.contains(&metrics), "the metrics secret was logged");
}

#[test]
fn secret_prints_the_configured_one() {
    let dir = TempDir::new();
    let ini = dir.join("syncserver.ini");
    std::fs::write(
        &ini,
        format!("[syncserver]\npublic_url = {PUBLIC_URL}\nsecret = first-secret-0123456789\n    second-secret-0123456789\n"),
    )
    .unwrap();
    let o = run(&ini, &["secret"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "second-secret-0123456789"
    );
    assert!(
        !dir.join("syncserver.db").exists(),
        "no database needed for a configured secret"
    );
}
