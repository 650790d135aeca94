//! The operator commands on what only the database servers have: `backup` names the engine's
//! own dump command (which really dumps), rows the Python server left under uid 0 on
//! PostgreSQL show in `stats` and go with `purge`, and `check-config` connects and probes
//! privileges (a wrong password, a read-only user, a closed port, TLS options), never
//! printing the password.
//!
//! Each test runs on MariaDB and on PostgreSQL, each on a fresh database of the servers
//! scripts/engines started (`SYNCSERVER_TEST_MYSQL` / `_POSTGRESQL`); without a server it
//! skips through `common::skip` (a failure unless `SYNCSERVER_TEST_ALLOW_SKIP` allows it).
//! This file is not in the engine matrix: it picks its engines itself.

mod common;

use std::process::{Command, Output, Stdio};

use common::commands::{fails, ok, run};
use common::engines::{server_uri, Engine, ServerAddr, TestDatabase};
use common::{Server, Session, TempDir, PUBLIC_URL};
use serde_json::Value;

/// The password scripts/engines gives `sync` (in the URIs, percent-encoded).
fn password(uri: &str) -> String {
    let addr = ServerAddr::parse(uri);
    assert!(!addr.password.is_empty(), "the test servers use a password");
    addr.password
}

/// Panics if `text` shows `password` in any form (as is, percent-encoded, or its first word).
#[track_caller]
fn assert_no_password(text: &str, password: &str) {
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    for form in [password, encoded.as_str(), &password.replace(' ', "%20")] {
        assert!(
            !text.contains(form),
            "the password ({form:?}) is shown:\n{text}"
        );
    }
}

fn output(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ini_with(dir: &TempDir, sqluri: &str) -> std::path::PathBuf {
    let ini = dir.join("syncserver.ini");
    std::fs::write(
        &ini,
        format!(
            "[syncserver]\npublic_url = {PUBLIC_URL}\nsecret = 0123456789abcdef0123\nsqluri = {sqluri}\n"
        ),
    )
    .expect("write ini");
    ini
}

/// A server on a fresh database of `engine`, or `None` after `skip`.
fn server_on(engine: Engine, label: &str) -> Option<(TestDatabase, Server)> {
    let db = TestDatabase::create(engine, label)?;
    let server = Server::start(&format!("sqluri = {}", db.uri));
    Some((db, server))
}

#[test]
fn backup_names_the_dump_command_that_works() {
    for engine in Engine::SERVERS {
        let Some((db, server)) = server_on(engine, "backup") else {
            continue;
        };
        let s = Session::new(&server, 1);
        assert_eq!(
            s.put("/storage/bookmarks/a", r#"{"payload": "dumped"}"#)
                .status,
            200
        );
        let out = TempDir::new();
        let target = out.join("sync backup.dump");
        let ini = server.dir.join("syncserver.ini");
        let o = run(&ini, &["backup", target.to_str().unwrap()]);
        let err = fails(&o);
        assert_eq!(o.status.code(), Some(1), "{}", output(&o));
        assert_no_password(&output(&o), &password(&db.uri));
        assert!(!target.exists(), "{engine:?}: backup wrote something");
        let addr = db.addr();
        let tool = match engine {
            Engine::Mysql => "mariadb-dump --single-transaction",
            _ => "pg_dump --format=custom",
        };
        let command = err
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(tool))
            .unwrap_or_else(|| panic!("{engine:?}: no {tool} command in\n{err}"));
        for part in [
            format!("--host={}", addr.host),
            format!("--port={}", addr.port),
            db.name.clone(),
        ] {
            assert!(command.contains(&part), "{part} in {command}");
        }
        // The exact command dumps the database: run it as printed, the password given the
        // way the tool reads it from the environment instead of the prompt.
        let (command, env) = match engine {
            Engine::Mysql => (command.replace(" --password ", " "), "MYSQL_PWD"),
            _ => (command.to_string(), "PGPASSWORD"),
        };
        let dump = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env(env, &addr.password)
            .stdin(Stdio::null())
            .output()
            .expect("run the dump command");
        assert!(dump.status.success(), "{command}: {}", output(&dump));
        let size = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
        assert!(size > 1000, "{engine:?}: a {size}-byte dump");
        if engine == Engine::Mysql {
            let text = std::fs::read_to_string(&target).unwrap();
            assert!(text.contains("CREATE TABLE `bso`") && text.contains("dumped"));
        }
    }
}

#[test]
fn uid_zero_rows_show_in_stats_and_go_with_purge() {
    for engine in Engine::SERVERS {
        let Some((db, server)) = server_on(engine, "uid0") else {
            continue;
        };
        let s = Session::new(&server, 1);
        assert_eq!(
            s.put("/storage/bookmarks/mine", r#"{"payload": "kept"}"#)
                .status,
            200
        );
        // What the Python server on PostgreSQL left: first syncs of several accounts under
        // uid 0 (its first token said uid 0), an open batch among them.
        let cid = db.sql("SELECT collectionid FROM collections WHERE name = 'bookmarks'");
        let cid = cid.trim();
        let now_ms = common::now() as i64 * 1000;
        db.sql(&format!(
            "INSERT INTO user_collections (userid, collection, last_modified) VALUES (0, {cid}, {now_ms});
             INSERT INTO bso (userid, collection, id, modified, payload, payload_size, ttl) VALUES
               (0, {cid}, 'x1', {now_ms}, 'mixed', 5, 2100000000),
               (0, {cid}, 'x2', {now_ms}, 'mixed', 5, 2100000000);
             INSERT INTO batch_uploads (batch, userid, collection) VALUES ({now_ms}, 0, {cid});
             INSERT INTO batch_upload_items (batch, userid, id, payload, payload_size)
               VALUES ({now_ms}, 0, 'b1', 'p', 1)"
        ));
        let ini = server.dir.join("syncserver.ini");
        let stats: Value = serde_json::from_str(&ok(&run(&ini, &["stats", "--json"]))).unwrap();
        assert_eq!(
            (
                &stats["records"],
                &stats["collections"],
                &stats["open_batches"]
            ),
            (&Value::from(3), &Value::from(2), &Value::from(1)),
            "{engine:?}: {stats}"
        );
        assert!(stats["database_bytes"].as_i64().unwrap() > 0, "{stats}");

        let o = run(&ini, &["purge", "--json"]);
        let v: Value = serde_json::from_str(&ok(&o)).unwrap();
        assert_eq!(v["removed_uids"], 1, "{engine:?}: {v}");
        assert_eq!(v["removed_uid_records"], 2, "{v}");
        assert_eq!(v["removed_uid_collections"], 1, "{v}");
        assert_eq!(v["removed_uid_batch_rows"], 2, "{v}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("uid 0"), "the operator is told why: {err}");
        for table in [
            "bso",
            "user_collections",
            "batch_uploads",
            "batch_upload_items",
        ] {
            let left = db.sql(&format!("SELECT COUNT(*) FROM {table} WHERE userid = 0"));
            assert_eq!(left.trim(), "0", "{engine:?}: {table}");
        }
        let stats: Value = serde_json::from_str(&ok(&run(&ini, &["stats", "--json"]))).unwrap();
        assert_eq!(stats["records"], 1, "{stats}");
        assert_eq!(s.get_json("/storage/bookmarks/mine")["payload"], "kept");
        // Nothing left: the next purge says nothing about uid 0.
        let o = run(&ini, &["purge", "--json"]);
        let v: Value = serde_json::from_str(&ok(&o)).unwrap();
        assert_eq!(v["removed_uids"], 0, "{v}");
        assert!(!String::from_utf8_lossy(&o.stderr).contains("uid 0"));
    }
}

/// A login that may only SELECT in one database, made with the instance's admin account,
/// dropped on drop (after the database, which is declared after it).
struct ReadOnlyUser {
    engine: Engine,
    name: String,
}

impl ReadOnlyUser {
    const PASSWORD: &'static str = "read only pw";

    fn create(db: &TestDatabase) -> ReadOnlyUser {
        let name = format!("ro_{}", &db.name[db.name.len() - 12..]);
        let pw = Self::PASSWORD;
        let user = ReadOnlyUser {
            engine: db.engine,
            name: name.clone(),
        };
        match db.engine {
            Engine::Mysql => {
                mysql_admin(&format!(
                    "CREATE USER '{name}'@'127.0.0.1' IDENTIFIED BY '{pw}';
                     GRANT SELECT ON `{}`.* TO '{name}'@'127.0.0.1'",
                    db.name
                ))
                .unwrap();
            }
            _ => {
                let admin = pg_admin(db.addr());
                admin
                    .try_sql(None, &format!("CREATE ROLE {name} LOGIN PASSWORD '{pw}'"))
                    .unwrap();
                admin
                    .try_sql(
                        Some(&db.name),
                        &format!(
                            "GRANT CONNECT ON DATABASE \"{}\" TO {name};
                             GRANT USAGE ON SCHEMA public TO {name};
                             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {name}",
                            db.name
                        ),
                    )
                    .unwrap();
            }
        }
        user
    }

    /// `db`'s URI with this user's credentials.
    fn uri(&self, db: &TestDatabase) -> String {
        let addr = db.addr();
        let scheme = match self.engine {
            Engine::Mysql => "pymysql",
            _ => "postgresql",
        };
        format!(
            "{scheme}://{}:read%20only%20pw@{}:{}/{}",
            self.name, addr.host, addr.port, db.name
        )
    }
}

impl Drop for ReadOnlyUser {
    fn drop(&mut self) {
        let result = match self.engine {
            Engine::Mysql => {
                mysql_admin(&format!("DROP USER IF EXISTS '{}'@'127.0.0.1'", self.name))
            }
            _ => {
                let server = server_uri(Engine::Postgresql).expect("a PostgreSQL server");
                pg_admin(&ServerAddr::parse(&server))
                    .try_sql(None, &format!("DROP ROLE IF EXISTS {}", self.name))
                    .map(|_| ())
            }
        };
        if let Err(e) = result {
            common::announce(&format!("WARNING: cannot drop user {}: {e}\n", self.name));
        }
    }
}

/// MariaDB's admin: the invoking OS user over the instance's socket (scripts/engines).
fn mysql_admin(sql: &str) -> Result<(), String> {
    let socket = std::env::var("SYNCSERVER_TEST_MYSQL_SOCKET")
        .map_err(|_| "SYNCSERVER_TEST_MYSQL_SOCKET is not set".to_string())?;
    let me = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let client = if Command::new("mariadb").arg("--version").output().is_ok() {
        "mariadb"
    } else {
        "mysql"
    };
    let o = Command::new(client)
        .args(["--no-defaults", "--protocol=socket"])
        .arg(format!("--socket={socket}"))
        .arg(format!("--user={}", me.trim()))
        .arg("--execute")
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

/// PostgreSQL's superuser `postgres`, which scripts/engines gives the same password as
/// `sync` over TCP.
fn pg_admin(addr: &ServerAddr) -> ServerAddr {
    ServerAddr {
        user: "postgres".into(),
        ..addr.clone()
    }
}

/// `uri` with its password replaced.
fn with_password(uri: &str, password: &str) -> String {
    let (head, rest) = uri.split_once("://").unwrap();
    let (userinfo, tail) = rest.rsplit_once('@').unwrap();
    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
    format!("{head}://{user}:{password}@{tail}")
}

/// check-config's verdict: (exit code, the `[problem]` lines), after checking that nothing
/// it printed shows `password`.
fn check(dir: &TempDir, sqluri: &str, password: &str) -> (Option<i32>, Vec<String>) {
    let ini = ini_with(dir, sqluri);
    let o = run(&ini, &["check-config"]);
    let text = output(&o);
    assert_no_password(&text, password);
    let problems = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("[problem] ").map(String::from))
        .collect();
    if o.status.success() {
        assert!(
            text.contains("OK: serve can read its files and open the database"),
            "{text}"
        );
    }
    (o.status.code(), problems)
}

#[test]
fn check_config_on_database_servers() {
    for engine in Engine::SERVERS {
        let Some(db) = TestDatabase::create(engine, "check") else {
            continue;
        };
        let pw = password(&db.uri);
        let addr = db.addr().clone();
        let dir = TempDir::new();
        let scheme_uri = match engine {
            // The seed's documented form.
            Engine::Mysql => db.uri.replacen("mysql://", "pymysql://", 1),
            _ => db.uri.clone(),
        };

        // A good URI, on an empty database: OK (serve would create the tables).
        let (code, problems) = check(&dir, &scheme_uri, &pw);
        assert_eq!((code, &problems), (Some(0), &vec![]), "{engine:?}");
        // And with the tables in place (serve made them).
        drop(Server::start(&format!("sqluri = {scheme_uri}")));
        let (code, problems) = check(&dir, &scheme_uri, &pw);
        assert_eq!((code, &problems), (Some(0), &vec![]), "{engine:?}");

        // A wrong password: the server is named, the password never shown.
        let wrong = "Wr0ng-pa55word";
        let (code, problems) = check(&dir, &with_password(&scheme_uri, wrong), wrong);
        assert_eq!(code, Some(1), "{engine:?}");
        let place = format!("{}:{}/{}", addr.host, addr.port, db.name);
        assert!(
            problems.len() == 1
                && problems[0].starts_with("cannot connect to ")
                && problems[0].contains(&place)
                && problems[0].contains("sync@")
                && (problems[0].contains("password authentication failed")
                    || problems[0].contains("Access denied")),
            "{engine:?}: {problems:?}"
        );

        // A closed port: a clear problem, quickly.
        let closed = scheme_uri.replace(&format!(":{}/", addr.port), ":1/");
        let t0 = std::time::Instant::now();
        let (code, problems) = check(&dir, &closed, &pw);
        assert_eq!(code, Some(1), "{engine:?}");
        assert!(
            problems.len() == 1
                && problems[0].starts_with("cannot connect to ")
                && problems[0].contains(&format!("{}:1/", addr.host))
                && problems[0].to_lowercase().contains("refused"),
            "{engine:?}: {problems:?}"
        );
        assert!(t0.elapsed().as_secs() < 10, "{:?}", t0.elapsed());

        // TLS options are refused, never dropped.
        let tls: &[&str] = match engine {
            Engine::Mysql => &["?ssl_ca=/etc/ssl/certs/ca.pem", "?ssl_cert=/x.pem"],
            _ => &[
                "?sslmode=require",
                "?sslmode=verify-full",
                "?sslrootcert=/ca.pem",
            ],
        };
        for option in tls {
            let (code, problems) = check(&dir, &format!("{scheme_uri}{option}"), &pw);
            assert_eq!(code, Some(1), "{engine:?} {option}");
            assert!(
                problems.len() == 1 && problems[0].contains("TLS"),
                "{engine:?} {option}: {problems:?}"
            );
        }

        // A user that may only SELECT: every refused privilege, table by table.
        let ro = ReadOnlyUser::create(&db);
        let (code, problems) = check(&dir, &ro.uri(&db), ReadOnlyUser::PASSWORD);
        assert_eq!(code, Some(1), "{engine:?}: {problems:?}");
        let mut tables = vec![
            "collections",
            "user_collections",
            "bso",
            "batch_uploads",
            "batch_upload_items",
            "users",
        ];
        if engine == Engine::Mysql {
            tables.push("syncserver_fcgi_locks");
        }
        for table in &tables {
            for verb in ["INSERT", "DELETE"] {
                let want = format!("{verb} on {table} is refused");
                assert!(
                    problems.iter().any(|p| p.starts_with(&want)),
                    "{engine:?}: {want} in {problems:#?}"
                );
            }
        }
        assert!(
            !problems.iter().any(|p| p.starts_with("SELECT")),
            "{engine:?}: {problems:#?}"
        );
        drop(db);
        drop(ro);
    }
}
