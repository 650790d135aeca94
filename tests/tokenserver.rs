//! The tokenserver end to end: the real binary, a local stand-in for the
//! account server (tests/common/fxa.rs), OAuth JWTs signed with the fixture
//! keys, and the `users` table read back with rusqlite (on MySQL/PostgreSQL, with
//! `SYNCSERVER_TEST_ENGINE`, through their command-line clients).
//! Verifier failures and hostile tokens are in tests/tokenserver_oauth.rs.

mod common;

use common::engines::Engine;
use common::fcgi_client::CgiResponse;
use common::fxa::{self, FakeFxa, TestKey};
use common::{hdr, json, Server, ServerSpec, User, PUBLIC_URL};
use serde_json::json;

const TOKEN_PATH: &str = "/token/1.0/sync/1.5";

fn key1() -> TestKey {
    TestKey::load("oauth-test-key.pk8", "key-1")
}

/// A server whose OAuth verifier is the stand-in; `extra` goes on after `[syncserver]`.
fn spec(fxa: &FakeFxa, extra: &str) -> ServerSpec {
    ServerSpec {
        extra_ini: format!("oauth_verifier = {}\n{extra}", fxa.url),
        ..ServerSpec::default()
    }
}

/// `GET /token/1.0/sync/1.5` with a bearer token and these extra headers.
fn get_token(server: &Server, bearer: &str, headers: &[(&str, &str)]) -> CgiResponse {
    let auth = format!("Bearer {bearer}");
    let mut all = vec![("Authorization", auth.as_str())];
    all.extend_from_slice(headers);
    server.request("GET", TOKEN_PATH, &all, b"")
}

/// An account: its FxA uid and the key used to sign its tokens.
struct Account<'k> {
    sub: String,
    key: &'k TestKey,
}

impl<'k> Account<'k> {
    fn new(key: &'k TestKey) -> Account<'k> {
        Account {
            sub: fxa::fxa_uid(),
            key,
        }
    }

    /// A token request with `generation` and `X-KeyID: kca-fingerprint(fp)`.
    fn sign_in(&self, server: &Server, generation: i64, kca: i64, fp: u8) -> CgiResponse {
        let token = self.key.token(&fxa::claims(&self.sub, generation));
        let kid = fxa::key_id(kca, fxa::fingerprint(fp));
        get_token(server, &token, &[("X-KeyID", &kid)])
    }

    fn email(&self, fxa: &FakeFxa) -> String {
        format!("{}@127.0.0.1:{}", self.sub, fxa.port)
    }
}

/// `(uid, generation, client_state, keys_changed_at, replaced_at is set)` per row.
type Row = (i64, i64, String, Option<i64>, bool);

fn rows(server: &Server, email: &str) -> Vec<Row> {
    if server.engine() != Engine::Sqlite {
        // The same query through the engine's command-line client (tab-separated rows).
        let out = server.sql(&format!(
            "SELECT uid, generation, client_state, keys_changed_at, \
             CASE WHEN replaced_at IS NULL THEN 0 ELSE 1 END \
             FROM users WHERE email = '{}' AND service = 'sync-1.5' ORDER BY uid",
            email.replace('\'', "''")
        ));
        return out
            .lines()
            .map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                assert_eq!(f.len(), 5, "{line:?}");
                let int = |s: &str| s.parse::<i64>().unwrap_or_else(|_| panic!("{line:?}"));
                (
                    int(f[0]),
                    int(f[1]),
                    f[2].to_string(),
                    (f[3] != "NULL").then(|| int(f[3])),
                    f[4] == "1",
                )
            })
            .collect();
    }
    let db = rusqlite::Connection::open(server.db_path()).expect("open db");
    let mut st = db
        .prepare(
            "SELECT uid, generation, client_state, keys_changed_at, replaced_at IS NOT NULL
             FROM users WHERE email = ?1 AND service = 'sync-1.5' ORDER BY uid",
        )
        .expect("prepare");
    let rows = st
        .query_map([email], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .expect("query");
    rows.map(|r| r.expect("row")).collect()
}

fn all_users(server: &Server) -> i64 {
    if server.engine() != Engine::Sqlite {
        // As below: no users table yet counts as none.
        return server
            .try_sql("SELECT COUNT(*) FROM users")
            .map_or(0, |out| out.trim().parse().expect("count"));
    }
    let db = rusqlite::Connection::open(server.db_path()).expect("open db");
    db.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
        .unwrap_or(0)
}

/// Asserts a tokenserver error body exactly.
#[track_caller]
fn assert_error(r: &CgiResponse, code: u16, status: &str, loc: &str, name: &str, desc: &str) {
    assert_eq!(r.status, code, "{}", r.text());
    let expected =
        json!({"status": status, "errors": [{"location": loc, "name": name, "description": desc}]});
    assert_eq!(json(r), expected);
    assert!(
        hdr(r, "Content-Type").starts_with("application/json"),
        "{:?}",
        r.headers
    );
}

/// A 401 with `location: body`, `description: Unauthorized`.
#[track_caller]
fn assert_401(r: &CgiResponse, status: &str) {
    assert_error(r, 401, status, "body", "", "Unauthorized");
}

#[track_caller]
fn assert_client_state_401(r: &CgiResponse, tail: &str) {
    let desc = format!("Unacceptable client-state value {tail}");
    assert_error(
        r,
        401,
        "invalid-client-state",
        "header",
        "X-Client-State",
        &desc,
    );
}

/// The storage credentials of a successful token response.
fn user_of(r: &CgiResponse) -> User {
    assert_eq!(r.status, 200, "{}", r.text());
    let v = json(r);
    User {
        uid: v["uid"].as_u64().expect("uid"),
        token: v["id"].as_str().expect("id").to_string(),
        key: v["key"].as_str().expect("key").to_string(),
    }
}

#[test]
fn first_sign_in_then_storage_round_trip() {
    let key = key1();
    let fxa = FakeFxa::start(&[&key]);
    let server = Server::start_spec(spec(&fxa, ""));
    let acct = Account::new(&key);

    let r = acct.sign_in(&server, 1000, 1000, 1);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    let v = json(&r);
    let uid = v["uid"].as_u64().expect("uid");
    assert_eq!(v["api_endpoint"], format!("{PUBLIC_URL}/storage/1.5/{uid}"));
    assert_eq!(v["duration"], 3600);
    assert_eq!(v["hashalg"], "sha256");
    assert_eq!(v["node_type"], serde_json::Value::Null);
    assert!(v["id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(v["key"].as_str().is_some_and(|s| !s.is_empty()));
    let hashed = v["hashed_fxa_uid"]
        .as_str()
        .expect("hashed_fxa_uid")
        .to_string();
    assert!(
        hashed.len() == 32 && hashed.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hashed}"
    );
    let ts: i64 = hdr(&r, "X-Timestamp").parse().expect("integer X-Timestamp");
    assert!((ts - fxa::epoch()).abs() < 5, "{ts}");
    assert!(r.header("X-Weave-Timestamp").is_some());
    assert_eq!(rows(&server, &acct.email(&fxa)).len(), 1);
    assert_eq!(fxa.count("/v1/jwks"), 1);

    // The returned credentials work against our own storage.
    let user = user_of(&r);
    let path = Server::storage_path(uid, "/storage/bookmarks/rec1");
    let ct = [("Content-Type", "application/json")];
    let w = server.signed(&user, "PUT", &path, &ct, br#"{"payload": "hello"}"#);
    assert_eq!(w.status, 200, "{}\n{}", w.text(), server.log());
    let g = server.signed(&user, "GET", &path, &[], b"");
    assert_eq!(g.status, 200, "{}", g.text());
    assert_eq!(json(&g)["payload"], "hello");

    // Same account again: same uid; ?duration below the default is honoured.
    let token = key.token(&fxa::claims(&acct.sub, 1000));
    let kid = fxa::key_id(1000, fxa::fingerprint(1));
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str()), ("X-KeyID", kid.as_str())];
    let r = server.request("GET", &format!("{TOKEN_PATH}?duration=60"), &headers, b"");
    assert_eq!((r.status, json(&r)["duration"].clone()), (200, json!(60)));
    assert_eq!(json(&r)["uid"], uid);
    // Mozilla's layout.
    let r = server.request("GET", "/1.0/sync/1.5", &headers, b"");
    assert_eq!((r.status, json(&r)["uid"].clone()), (200, json!(uid)));
    assert_eq!(json(&r)["hashed_fxa_uid"], hashed.as_str());
    assert_eq!(rows(&server, &acct.email(&fxa)).len(), 1);

    // Discovery.
    let r = server.request("GET", "/token/", &[], b"");
    assert_eq!(r.status, 200);
    let d = json(&r);
    assert_eq!(d["services"], json!({"sync": ["1.5"]}));
    assert_eq!(d["auth"], format!("{PUBLIC_URL}/token"));
    assert_eq!(d["oauth"]["scope"], fxa::OLDSYNC);
    assert_eq!(d["oauth"]["server_url"], format!("{}/v1", fxa.url));

    // Unknown application / version, wrong method.
    let r = server.request("GET", "/token/1.0/bookmarks/1.5", &headers, b"");
    assert_error(
        &r,
        404,
        "error",
        "url",
        "application",
        "Unsupported application",
    );
    let r = server.request("GET", "/token/1.0/sync/1.1", &headers, b"");
    assert_error(
        &r,
        404,
        "error",
        "url",
        "1.1",
        "Unsupported application version",
    );
    let r = server.request("POST", TOKEN_PATH, &headers, b"{}");
    assert_eq!(r.status, 405, "{}", r.text());

    // hashed_fxa_uid survives a restart on the same database.
    let dir = server.stop();
    let server = Server::start_in(dir, spec(&fxa, ""));
    let r = acct.sign_in(&server, 1000, 1000, 1);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(json(&r)["hashed_fxa_uid"], hashed.as_str());
    assert_eq!(json(&r)["uid"], uid);
    let g = server.signed(&user_of(&r), "GET", &path, &[], b"");
    assert_eq!(json(&g)["payload"], "hello");
}

#[test]
fn key_changes_and_consistency_rules() {
    let key = key1();
    let fxa = FakeFxa::start(&[&key]);
    let server = Server::start_spec(spec(&fxa, ""));
    let acct = Account::new(&key);
    let email = acct.email(&fxa);

    let first = user_of(&acct.sign_in(&server, 1000, 1000, 0xA));
    let path = |uid| Server::storage_path(uid, "/storage/tabs/t1");
    let ct = [("Content-Type", "application/json")];
    let w = server.signed(
        &first,
        "PUT",
        &path(first.uid),
        &ct,
        br#"{"payload": "old"}"#,
    );
    assert_eq!(w.status, 200, "{}", w.text());

    // New keys (higher kca and generation): a new uid with empty storage.
    let second = user_of(&acct.sign_in(&server, 2000, 2000, 0xB));
    assert_ne!(second.uid, first.uid);
    let g = server.signed(&second, "GET", &path(second.uid), &[], b"");
    assert_eq!(g.status, 404, "{}", g.text());
    let info = server.signed(
        &second,
        "GET",
        &Server::storage_path(second.uid, "/info/collections"),
        &[],
        b"",
    );
    assert_eq!(info.text(), "{}");
    let cs = |n| fxa::client_state(fxa::fingerprint(n));
    let expected: Vec<Row> = vec![
        (first.uid as i64, 1000, cs(0xA), Some(1000), true),
        (second.uid as i64, 2000, cs(0xB), Some(2000), false),
    ];
    assert_eq!(rows(&server, &email), expected);

    // Refusals, none of which touches the rows.
    let r = acct.sign_in(&server, 3000, 3000, 0xA);
    assert_client_state_401(&r, "stale value");
    let r = acct.sign_in(&server, 2000, 2000, 0xC);
    assert_client_state_401(&r, "new value with no generation change");
    let r = acct.sign_in(&server, 1500, 2000, 0xB);
    assert_401(&r, "invalid-generation");
    let r = acct.sign_in(&server, 2500, 1500, 0xB);
    assert_401(&r, "invalid-keysChangedAt");
    // kca increasing beyond the generation.
    let r = acct.sign_in(&server, 2100, 2200, 0xB);
    assert_401(&r, "invalid-keysChangedAt");
    assert_eq!(rows(&server, &email), expected);

    // X-KeyID and X-Client-State problems.
    let token = key.token(&fxa::claims(&acct.sub, 2000));
    let r = get_token(&server, &token, &[]);
    assert_401(&r, "invalid-key-id");
    for bad in [
        "nodash",
        "abc-qqqqqqqqqqqqqqqqqqqqqq",
        "2000-!!!",
        "-qqo",
        "2000-",
    ] {
        let r = get_token(&server, &token, &[("X-KeyID", bad)]);
        assert_401(&r, "invalid-credentials");
    }
    let kid = fxa::key_id(2000, fxa::fingerprint(0xB));
    let r = get_token(
        &server,
        &token,
        &[("X-KeyID", &kid), ("X-Client-State", &cs(0xC))],
    );
    assert_401(&r, "invalid-client-state");
    // Matching X-Client-State (any case) is fine.
    let upper = cs(0xB).to_ascii_uppercase();
    let r = get_token(
        &server,
        &token,
        &[("X-KeyID", &kid), ("X-Client-State", &upper)],
    );
    assert_eq!(
        (r.status, json(&r)["uid"].clone()),
        (200, json!(second.uid))
    );
    assert_eq!(rows(&server, &email), expected);
}

#[test]
fn bad_client_state_header_creates_no_user() {
    let key = key1();
    let fxa = FakeFxa::start(&[&key]);
    let server = Server::start_spec(spec(&fxa, ""));
    let acct = Account::new(&key);
    let token = key.token(&fxa::claims(&acct.sub, 1000));
    let kid = fxa::key_id(1000, fxa::fingerprint(1));
    let too_long = "a".repeat(34);
    for bad in ["zz", "abc", "a.b", "a b", too_long.as_str(), "é"] {
        let r = get_token(
            &server,
            &token,
            &[("X-KeyID", &kid), ("X-Client-State", bad)],
        );
        assert_error(
            &r,
            400,
            "error",
            "header",
            "X-Client-State",
            "Invalid client state value",
        );
    }
    assert_eq!(all_users(&server), 0);
}

#[test]
fn who_may_use_the_server() {
    let key = key1();
    let fxa = FakeFxa::start(&[&key]);
    let (a, b, c) = (Account::new(&key), Account::new(&key), Account::new(&key));

    // allow_new_users = false: existing accounts keep working, new ones are refused.
    let server = Server::start_spec(spec(&fxa, ""));
    assert_eq!(a.sign_in(&server, 1, 1, 1).status, 200);
    let dir = server.stop();
    let server = Server::start_in(dir, spec(&fxa, "allow_new_users = false\n"));
    assert_401(&b.sign_in(&server, 1, 1, 1), "new-users-disabled");
    assert_eq!(a.sign_in(&server, 1, 1, 1).status, 200);
    // ... including its key change.
    assert_eq!(a.sign_in(&server, 2, 2, 2).status, 200);
    assert_eq!(all_users(&server), 2);
    drop(server);

    // allowed_users, one value and the multi-line list form.
    let one = format!("[tokenserver]\nallowed_users = {}\n", a.sub);
    let server = Server::start_spec(spec(&fxa, &one));
    assert_eq!(a.sign_in(&server, 1, 1, 1).status, 200);
    assert_401(&b.sign_in(&server, 1, 1, 1), "new-users-disabled");
    assert_eq!(all_users(&server), 1);
    drop(server);
    let many = format!(
        "[tokenserver]\nallowed_users =\n    {}\n    {}\n",
        a.sub,
        c.email(&fxa)
    );
    let server = Server::start_spec(spec(&fxa, &many));
    assert_eq!(a.sign_in(&server, 1, 1, 1).status, 200);
    assert_eq!(c.sign_in(&server, 1, 1, 1).status, 200);
    assert_401(&b.sign_in(&server, 1, 1, 1), "new-users-disabled");
    drop(server);

    // max_users = 1.
    let server = Server::start_spec(spec(&fxa, "[tokenserver]\nmax_users = 1\n"));
    assert_eq!(a.sign_in(&server, 1, 1, 1).status, 200);
    assert_401(&b.sign_in(&server, 1, 1, 1), "new-users-disabled");
    assert_eq!(a.sign_in(&server, 1, 1, 1).status, 200);
    assert_eq!(
        a.sign_in(&server, 2, 2, 2).status,
        200,
        "a key change is no new account"
    );
    assert_401(&c.sign_in(&server, 1, 1, 1), "new-users-disabled");
    assert_eq!(all_users(&server), 2);
}

#[test]
fn browserid_without_verifier_is_unsupported() {
    let fxa = FakeFxa::start(&[]);
    let server = Server::start_spec(spec(&fxa, ""));
    let r = server.request(
        "GET",
        TOKEN_PATH,
        &[("Authorization", "BrowserID x"), ("X-Client-State", "aaaa")],
        b"",
    );
    assert_error(&r, 401, "error", "body", "", "Unsupported");
    assert_eq!(r.header("WWW-Authenticate"), Some("BrowserID"));
    let r = server.request("GET", TOKEN_PATH, &[], b"");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(fxa.total(), 0);
}

#[test]
fn concurrent_first_sign_ins_make_one_row() {
    let key = key1();
    let fxa = FakeFxa::start(&[&key]);
    let server = Server::start_spec(ServerSpec {
        workers: 4,
        ..spec(&fxa, "")
    });
    // Keys fetched first: while a fetch is in flight, only a few requests may
    // wait for it (the others get 503), and this test is about the user rows.
    let warm = Account::new(&key).sign_in(&server, 1000, 1000, 7);
    assert_eq!(warm.status, 200, "{}", warm.text());
    let acct = Account::new(&key);
    let uids: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| s.spawn(|| acct.sign_in(&server, 1000, 1000, 7)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let r = h.join().expect("thread");
                assert_eq!(r.status, 200, "{}", r.text());
                json(&r)["uid"].clone()
            })
            .collect()
    });
    assert!(uids.iter().all(|u| *u == uids[0]), "{uids:?}");
    assert_eq!(rows(&server, &acct.email(&fxa)).len(), 1);
}
