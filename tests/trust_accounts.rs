//! Trust between accounts and in front of the server, end to end on the real binary:
//! a deleted account's uid is never handed out again and its still-valid token is
//! refused at once by every serving process; `X-Forwarded-Proto` counts only when it
//! comes from a configured `trusted_proxies` address.

mod common;

use common::commands::{ok, run};
use common::fcgi_client::CgiResponse;
use common::fxa::{self, FakeFxa, TestKey};
use common::{json, Server, ServerSpec, TempDir, User};

const TOKEN_PATH: &str = "/token/1.0/sync/1.5";
const JSON_CT: [(&str, &str); 1] = [("Content-Type", "application/json")];

fn key1() -> TestKey {
    TestKey::load("oauth-test-key.pk8", "key-1")
}

/// Signs in `sub` (generation/keys-changed-at `kca`, key fingerprint `fp`) and
/// returns the storage credentials the tokenserver hands out.
fn sign_in(server: &Server, key: &TestKey, sub: &str, kca: i64, fp: u8) -> User {
    let bearer = format!("Bearer {}", key.token(&fxa::claims(sub, kca)));
    let kid = fxa::key_id(kca, fxa::fingerprint(fp));
    let r = server.request(
        "GET",
        TOKEN_PATH,
        &[("Authorization", &bearer), ("X-KeyID", &kid)],
        b"",
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    let v = json(&r);
    User {
        uid: v["uid"].as_u64().expect("uid"),
        token: v["id"].as_str().expect("id").to_string(),
        key: v["key"].as_str().expect("key").to_string(),
    }
}

fn path(user: &User, rest: &str) -> String {
    Server::storage_path(user.uid, rest)
}

fn put(server: &Server, user: &User, rest: &str, payload: &str) -> CgiResponse {
    let body = serde_json::json!({ "payload": payload }).to_string();
    server.signed(user, "PUT", &path(user, rest), &JSON_CT, body.as_bytes())
}

fn get(server: &Server, user: &User, rest: &str) -> CgiResponse {
    server.signed(user, "GET", &path(user, rest), &[], b"")
}

/// The storage 401: `{"status": "invalid-credentials", ...}` as for any bad token.
#[track_caller]
fn assert_refused(r: &CgiResponse, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    assert!(
        !r.text().contains("secret-of"),
        "{what} leaked data: {}",
        r.text()
    );
}

/// Two `serve` processes on one database (each with its own worker pool), both
/// verifying OAuth tokens against the stand-in account server.
fn two_processes(fxa: &FakeFxa) -> (Server, Server) {
    let first = Server::start_spec(ServerSpec {
        extra_ini: format!("oauth_verifier = {}\n", fxa.url),
        ..ServerSpec::default()
    });
    let db = first.db_path();
    let second = Server::start_spec(ServerSpec {
        extra_ini: format!(
            "oauth_verifier = {}\nsqluri = sqlite:///{}\n",
            fxa.url,
            db.display()
        ),
        ..ServerSpec::default()
    });
    (first, second)
}

#[test]
fn deleted_account_uid_is_never_reused_and_its_token_is_refused_everywhere() {
    let key = key1();
    let fxa = FakeFxa::start(&[&key]);
    let (one, two) = two_processes(&fxa);
    let ini = one.dir.join("syncserver.ini");
    let (sub_a, sub_b, sub_c) = (fxa::fxa_uid(), fxa::fxa_uid(), fxa::fxa_uid());

    let a = sign_in(&one, &key, &sub_a, 1000, 1);
    let b = sign_in(&two, &key, &sub_b, 1000, 2);
    assert!(b.uid > a.uid, "{} then {}", a.uid, b.uid);
    for (server, user) in [(&one, &a), (&two, &b)] {
        let r = put(
            server,
            user,
            "/storage/tabs/t",
            &format!("secret-of-{}", user.uid),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Both processes serve b before the deletion.
    for server in [&one, &two] {
        assert_eq!(get(server, &b, "/info/collections").status, 200);
    }

    // Delete the newest account while both processes keep running.
    let out = ok(&run(
        &ini,
        &["users", "delete", &b.uid.to_string(), "--yes"],
    ));
    assert!(out.contains("deleted account"), "{out}");

    // From now on b's token (valid for another hour) is refused by every process,
    // for reads, writes and deletes, and info/collections too.
    for server in [&one, &two] {
        assert_refused(
            &get(server, &b, "/info/collections"),
            "GET info/collections",
        );
        assert_refused(&get(server, &b, "/storage/tabs/t"), "GET item");
        assert_refused(&put(server, &b, "/storage/tabs/u", "late write"), "PUT");
        let r = server.signed(&b, "DELETE", &path(&b, ""), &[], b"");
        assert_refused(&r, "DELETE storage");
    }

    // A new account gets a uid never used before.
    let c = sign_in(&one, &key, &sub_c, 1000, 3);
    assert!(c.uid > b.uid, "uid {} was handed out again", c.uid);
    let r = put(&two, &c, "/storage/tabs/t", &format!("secret-of-{}", c.uid));
    assert_eq!(r.status, 200, "{}", r.text());
    // b's token still sees nothing, on its own uid or on c's.
    for server in [&one, &two] {
        assert_refused(&get(server, &b, "/storage/tabs/t"), "GET after C");
        let r = server.signed(&b, "GET", &path(&c, "/storage/tabs/t"), &[], b"");
        assert_refused(&r, "b's token on c's uid");
        assert_eq!(
            json(&get(server, &c, "/storage/tabs/t"))["payload"],
            format!("secret-of-{}", c.uid)
        );
    }

    // The deleted account may come back: as a new account with a new uid.
    let b2 = sign_in(&two, &key, &sub_b, 2000, 2);
    assert!(b2.uid > c.uid, "{} vs {}", b2.uid, c.uid);
    assert_eq!(get(&one, &b2, "/info/collections").text(), "{}");

    // A key change gives a a new uid; a's old token keeps working on its old
    // uid (the data is the same person's, only the delete revokes).
    let a2 = sign_in(&one, &key, &sub_a, 3000, 9);
    assert!(a2.uid > b2.uid, "{} vs {}", a2.uid, b2.uid);
    for server in [&one, &two] {
        let r = get(server, &a, "/storage/tabs/t");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(get(server, &a2, "/info/collections").status, 200);
    }
}

/// A database the Python server filled: the next uid continues after its
/// highest one even after that account is deleted.
#[test]
fn python_database_uids_continue_after_its_highest() {
    let key = key1();
    let fxa = FakeFxa::start(&[&key]);
    let dir = TempDir::new();
    {
        let conn = rusqlite::Connection::open(dir.join("syncserver.db")).expect("create db");
        conn.execute_batch(include_str!("fixtures/python_schema.sql"))
            .expect("python DDL");
        for (uid, email) in [(3, "aaaa"), (7, "bbbb")] {
            conn.execute(
                "INSERT INTO users (uid, service, email, generation, client_state, created_at,
                                    replaced_at, keys_changed_at, node)
                 VALUES (?1, 'sync-1.5', ?2, 1, '', 1600000000000, NULL, 1, 'http://localhost:5000')",
                rusqlite::params![uid, format!("{email}@api.accounts.firefox.com")],
            )
            .expect("python user row");
        }
    }
    let server = Server::start_in(
        dir,
        ServerSpec {
            extra_ini: format!("oauth_verifier = {}\n", fxa.url),
            ..ServerSpec::default()
        },
    );
    let ini = server.dir.join("syncserver.ini");
    ok(&run(&ini, &["users", "delete", "7", "--yes"]));
    let next = sign_in(&server, &key, &fxa::fxa_uid(), 1000, 1);
    assert_eq!(next.uid, 8, "the deleted uid 7 must not come back");
    // A token for the deleted uid (as the Python server would have issued it) is refused.
    let old = server.user(7);
    assert_refused(&get(&server, &old, "/info/collections"), "python uid 7");
}

/// A write that passed its check just before `users delete` committed can land
/// after the deletion emptied the uid; `purge` finds and removes it.
#[test]
fn purge_removes_late_writes_to_deleted_uids() {
    let server = Server::start("");
    let ini = server.dir.join("syncserver.ini");
    let db = rusqlite::Connection::open(server.db_path()).expect("open db");
    db.execute(
        "INSERT INTO users (uid, service, email, generation, client_state, created_at)
         VALUES (3, 'sync-1.5', 'late@api.accounts.firefox.com', 1, '', 1)",
        [],
    )
    .expect("user row");
    ok(&run(&ini, &["users", "delete", "3", "--yes"]));
    // The late write, as it would have been stored.
    db.execute_batch(
        "INSERT OR IGNORE INTO collections (name) VALUES ('tabs');
         INSERT INTO bso (userid, collection, id, modified, payload)
           SELECT 3, collectionid, 'late', 1, 'x' FROM collections WHERE name = 'tabs';
         INSERT INTO user_collections (userid, collection, last_modified)
           SELECT 3, collectionid, 1 FROM collections WHERE name = 'tabs';",
    )
    .expect("late write");
    ok(&run(&ini, &["purge"]));
    let left: i64 = db
        .query_row(
            "SELECT (SELECT COUNT(*) FROM bso WHERE userid = 3)
                  + (SELECT COUNT(*) FROM user_collections WHERE userid = 3)",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(left, 0);
    assert_refused(&get(&server, &server.user(3), "/info/collections"), "uid 3");
}

/// A signed GET of info/collections with the given web-server params and headers.
fn get_via(
    server: &Server,
    user: &User,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> CgiResponse {
    let p = path(user, "/info/collections");
    let auth = server.hawk(user, "GET", &p, &[], b"", false);
    let mut all = headers.to_vec();
    all.push(("Authorization", &auth));
    server.request_with_params("GET", &p, &all, params, b"")
}

#[test]
fn forwarded_proto_counts_only_from_trusted_proxies() {
    // Default: nobody is trusted, a client's own header changes nothing.
    let plain = Server::start("");
    let user = plain.user(71);
    for addr in ["203.0.113.9", "127.0.0.1"] {
        let r = get_via(
            &plain,
            &user,
            &[("REMOTE_ADDR", addr)],
            &[("X-Forwarded-Proto", "https")],
        );
        assert_eq!(r.status, 200, "{addr}: {}", r.text());
    }
    let unsigned = plain.request(
        "GET",
        &path(&user, "/info/collections"),
        &[("X-Forwarded-Proto", "https")],
        b"",
    );
    assert_eq!(unsigned.status, 401, "{}", unsigned.text());

    // An https public_url behind a TLS proxy that talks plain http to the web server.
    let behind = Server::start_spec(ServerSpec {
        public_url: "https://sync.example.org".into(),
        extra_ini: "trusted_proxies = 10.1.2.3, 192.168.0.0/16, 2001:db8::/32\n".into(),
        ..ServerSpec::default()
    });
    let user = behind.user(72);
    let https = [("X-Forwarded-Proto", "https")];
    for addr in ["10.1.2.3", "192.168.40.2", "::ffff:10.1.2.3", "2001:db8::7"] {
        let r = get_via(&behind, &user, &[("REMOTE_ADDR", addr)], &https);
        assert_eq!(r.status, 200, "{addr}: {}\n{}", r.text(), behind.log());
    }
    // The proxy appends to what the client sent: the last value is the proxy's own.
    let trusted = [("REMOTE_ADDR", "10.1.2.3")];
    let r = get_via(
        &behind,
        &user,
        &trusted,
        &[("X-Forwarded-Proto", "http, https")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Anything else leaves the request as it arrived (plain http here), and an
    // http request to an https public_url is refused without claiming a server error.
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("REMOTE_ADDR", "10.1.2.4")], "https"),
        (&[("REMOTE_ADDR", "172.16.0.1")], "https"),
        (&[], "https"),
        (&trusted, "https, http"),
        (&trusted, "gopher"),
    ];
    for (params, proto) in cases {
        let r = get_via(&behind, &user, params, &[("X-Forwarded-Proto", proto)]);
        assert_eq!(r.status, 421, "{params:?} {proto}: {}", r.text());
        assert!(r.text().contains("public_url"), "{}", r.text());
    }

    // check-config shows the setting; a bad entry stops the server with a clear message.
    let ini = behind.dir.join("syncserver.ini");
    let report = ok(&run(&ini, &["check-config"]));
    assert!(
        report.contains("trusted_proxies") && report.contains("192.168.0.0/16"),
        "{report}"
    );
    let bad = behind.dir.join("bad.ini");
    std::fs::write(
        &bad,
        "[syncserver]\npublic_url = http://localhost:5000\nsecret = 0123456789abcdef0123\ntrusted_proxies = 10.0.0.1, proxy.example\n",
    )
    .expect("write ini");
    let o = run(&bad, &["check-config"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("trusted_proxies") && err.contains("proxy.example"),
        "{err}"
    );
}
