//! Node assignment end to end: a site of three processes, as Mozilla runs Sync at scale.
//! One tokenserver (`role = tokenserver`, `sqlnode`, its own database) assigns each
//! account to one of two storage nodes (`role = storage`, each with its own database); the
//! client then talks to its node directly. Every process sits behind its own nginx running
//! the committed contrib file (the tokenserver and node A at the root, node B under
//! `/sync/`), and the nodes are seeded with the real `syncserver-fcgi nodes add`.
//!
//! Each scenario runs on SQLite, then with every database (the tokenserver's and the
//! nodes') on MariaDB and on PostgreSQL when `scripts/engines` started them; an engine
//! without a server is reported skipped through `common::skip`, never passed.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use serde_json::{json, Value};

use common::engines::{self, Engine};
use common::site::{http, mkdir, sqlnode_ini, storage_ini, Db, Proc, Site, TOKEN_PATH};
use common::webservers::{flow, Front, HttpResponse};
use common::{client_auth, commands, fxa, now, TempDir, SECRET};

/// Runs `scenario` on SQLite, then on MariaDB and PostgreSQL where their servers are up.
fn on_every_engine(name: &str, scenario: impl Fn(Engine)) {
    if flow::skip(Front::Nginx) {
        return;
    }
    for engine in [Engine::Sqlite, Engine::Mysql, Engine::Postgresql] {
        if let (Some(prereq), None) = (engine.prereq(), engines::server_uri(engine)) {
            common::skip(
                prereq,
                &format!(
                    "no {} server ({} is not set): not run on {}",
                    engine.name(),
                    engine.env_var().unwrap_or_default(),
                    engine.name()
                ),
            );
            continue;
        }
        let t0 = Instant::now();
        scenario(engine);
        eprintln!("nodes::{name} on {}: {:.1?}", engine.name(), t0.elapsed());
    }
}

/// What a token server answered: Hawk credentials for one node.
#[derive(Debug, Clone)]
struct Creds {
    uid: u64,
    id: String,
    key: String,
    endpoint: String,
    /// The token's `expires` (seconds since the epoch), read from its payload.
    expires: f64,
}

impl Creds {
    fn parse(body: &Value) -> Creds {
        let id = body["id"].as_str().expect("id").to_string();
        // A tokenlib token: base64url of the JSON payload and a 32-byte HMAC.
        let raw = URL_SAFE.decode(&id).expect("token is base64url");
        let payload: Value =
            serde_json::from_slice(&raw[..raw.len() - 32]).expect("token payload is JSON");
        Creds {
            uid: body["uid"].as_u64().expect("uid"),
            id,
            key: body["key"].as_str().expect("key").to_string(),
            endpoint: body["api_endpoint"]
                .as_str()
                .expect("api_endpoint")
                .to_string(),
            expires: payload["expires"].as_f64().expect("expires"),
        }
    }

    /// The node the endpoint names (the seeded pattern is `{node}/1.5/{uid}`).
    #[track_caller]
    fn node(&self) -> String {
        let tail = format!("/1.5/{}", self.uid);
        self.endpoint
            .strip_suffix(&tail)
            .unwrap_or_else(|| panic!("api_endpoint {} is not {{node}}{tail}", self.endpoint))
            .to_string()
    }

    /// The port and path of the endpoint.
    fn port_and_path(&self) -> (u16, String) {
        let rest = self
            .endpoint
            .strip_prefix("http://127.0.0.1:")
            .expect("endpoint");
        let (port, path) = rest.split_at(rest.find('/').expect("endpoint path"));
        (port.parse().expect("port"), path.to_string())
    }

    /// A signed request to `rest` below the endpoint.
    fn send(&self, method: &str, rest: &str, body: Option<&Value>) -> HttpResponse {
        let (port, path) = self.port_and_path();
        signed(
            &self.id,
            &self.key,
            port,
            method,
            &format!("{path}{rest}"),
            body,
        )
    }

    #[track_caller]
    fn expect(&self, status: u16, method: &str, rest: &str, body: Option<&Value>) -> Value {
        let r = self.send(method, rest, body);
        assert_eq!(
            r.status,
            status,
            "{method} {}{rest}: {}",
            self.endpoint,
            r.text()
        );
        if r.body.is_empty() {
            Value::Null
        } else {
            r.json()
        }
    }

    #[track_caller]
    fn put(&self, collection: &str, id: &str) {
        let record = json!({"payload": format!("payload of {id}")});
        self.expect(
            200,
            "PUT",
            &format!("/storage/{collection}/{id}"),
            Some(&record),
        );
    }
}

/// A Hawk-signed request to 127.0.0.1:`port` (signed for that host and port, as a client
/// that took the URL from `api_endpoint` signs it).
fn signed(
    id: &str,
    key: &str,
    port: u16,
    method: &str,
    target: &str,
    body: Option<&Value>,
) -> HttpResponse {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NONCE: AtomicU32 = AtomicU32::new(0);
    let body = body.map(Value::to_string).unwrap_or_default();
    let ct = (!body.is_empty()).then_some("application/json");
    let nonce = format!(
        "n{}-{}",
        std::process::id(),
        NONCE.fetch_add(1, Ordering::SeqCst)
    );
    let auth = client_auth::hawk_header(&client_auth::Signed {
        id,
        key,
        ts: now() as i64,
        nonce: &nonce,
        method,
        path: target,
        host: "127.0.0.1",
        port,
        payload: ct.map(|ct| (ct.as_bytes(), body.as_bytes())),
    });
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(ct) = ct {
        headers.push(("Content-Type", ct));
    }
    http(port, method, target, &headers, body.as_bytes()).expect("HTTP exchange")
}

/// A Firefox account (an FxA uid), signing in with a bearer token the tokenserver trusts
/// through `[oauth] jwks`.
fn bearer(fxa_uid: &str, generation: i64) -> String {
    flow::signing_key().token(&fxa::claims(fxa_uid, generation))
}

/// The X-KeyID of keys changed at `generation` with this fingerprint.
fn key_id(generation: i64, fingerprint: u8) -> String {
    fxa::key_id(generation, fxa::fingerprint(fingerprint))
}

/// What only these tests ask of a site.
impl Site {
    /// A token request for `fxa_uid` through the tokenserver's nginx.
    fn token_request(&self, fxa_uid: &str) -> HttpResponse {
        token_request(&self.ts, fxa_uid, "")
    }

    /// A token for `fxa_uid`, which must be granted.
    #[track_caller]
    fn login(&self, fxa_uid: &str) -> Creds {
        login(&self.ts, fxa_uid, &self.logs())
    }

    /// `nodes list --json`: `(url, users, current_load, capacity, downed)` by node id.
    #[track_caller]
    fn list(&self) -> Vec<(String, i64, i64, i64, bool)> {
        node_list(&self.nodes(&["list", "--json"]))
    }
}

/// A token request for `fxa_uid` through `ts`'s nginx; `query`: "" or `?duration=N`.
fn token_request(ts: &Proc, fxa_uid: &str, query: &str) -> HttpResponse {
    token_request_keyed(ts, fxa_uid, query, 1000, 7)
}

/// [`token_request`] for keys changed at `generation`, with this key fingerprint.
fn token_request_keyed(
    ts: &Proc,
    fxa_uid: &str,
    query: &str,
    generation: i64,
    fingerprint: u8,
) -> HttpResponse {
    let auth = format!("Bearer {}", bearer(fxa_uid, generation));
    let kid = key_id(generation, fingerprint);
    let target = format!("{}{TOKEN_PATH}{query}", ts.prefix);
    ts.http(
        "GET",
        &target,
        &[("Authorization", &auth), ("X-KeyID", &kid)],
    )
}

#[track_caller]
fn login(ts: &Proc, fxa_uid: &str, logs: &str) -> Creds {
    login_as(ts, fxa_uid, "", logs)
}

/// A token for `fxa_uid`, which must be granted; `query` as for [`token_request`].
#[track_caller]
fn login_as(ts: &Proc, fxa_uid: &str, query: &str, logs: &str) -> Creds {
    let r = token_request(ts, fxa_uid, query);
    assert_eq!(r.status, 200, "token: {}\n{logs}", r.text());
    Creds::parse(&r.json())
}

/// A token for `fxa_uid` with keys changed at `generation` (fingerprint `fingerprint`).
#[track_caller]
fn login_keyed(ts: &Proc, fxa_uid: &str, generation: i64, fingerprint: u8) -> Creds {
    let r = token_request_keyed(ts, fxa_uid, "", generation, fingerprint);
    assert_eq!(r.status, 200, "token with new keys: {}", r.text());
    Creds::parse(&r.json())
}

/// `nodes list --json` as `(url, users, current_load, capacity, downed)`, by node id.
#[track_caller]
fn node_list(out: &str) -> Vec<(String, i64, i64, i64, bool)> {
    let v: Value = serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {out}"))
        .iter()
        .map(|n| {
            (
                n["url"].as_str().expect("url").to_string(),
                n["users"].as_i64().expect("users"),
                n["current_load"].as_i64().expect("current_load"),
                n["capacity"].as_i64().expect("capacity"),
                n["downed"].as_bool().expect("downed"),
            )
        })
        .collect()
}

/// How many accounts `nodes list` counts on each node, by URL.
fn users_by_node(list: &[(String, i64, i64, i64, bool)]) -> Vec<(String, i64)> {
    list.iter().map(|n| (n.0.clone(), n.1)).collect()
}

// ---------------------------------------------------------------------------------------
// 1. New accounts spread by capacity.

/// Capacities 4 (A) and 2 (B): the reference servers rank nodes by
/// log(current_load) / log(capacity), an empty node first, ties to the older node. Six
/// new accounts then go A, B, A (0 = 0: the tie), B (log 1/log 2 = 0 < log 2/log 4 = 0.5),
/// A, A (B is full) — a plain load/capacity ranking would send the fourth to A (1/2 = 2/4)
/// and the fifth to B. A seventh account gets 503 with Retry-After; room made on B by
/// `nodes set --capacity` lets it in there.
#[test]
fn accounts_spread_by_capacity() {
    on_every_engine("accounts_spread_by_capacity", |engine| {
        let site = Site::start(engine, 3600, 4, 2);
        let (a, b) = (site.a.url(), site.b.url());
        let accounts: Vec<String> = (0..6).map(|_| fxa::fxa_uid()).collect();
        let placed: Vec<Creds> = accounts.iter().map(|u| site.login(u)).collect();
        let nodes: Vec<String> = placed.iter().map(Creds::node).collect();
        assert_eq!(
            nodes,
            [&a, &b, &a, &b, &a, &a].map(String::clone),
            "where new accounts went"
        );
        // A returning account keeps its node and uid.
        let again = site.login(&accounts[1]);
        assert_eq!((again.uid, again.node()), (placed[1].uid, b.clone()));

        let seventh = fxa::fxa_uid();
        let r = site.token_request(&seventh);
        common::assert_503(&r, "token when every node is full");
        assert_eq!(
            site.list(),
            [(a.clone(), 4, 4, 4, false), (b.clone(), 2, 2, 2, false)],
            "nodes list after filling both"
        );

        site.nodes(&["set", &b, "--capacity", "3"]);
        let late = site.login(&seventh);
        assert_eq!(late.node(), b, "the room made on B");
        assert_eq!(
            users_by_node(&site.list()),
            [(a.clone(), 4), (b.clone(), 3)]
        );
    });
}

/// New accounts signing in at once take each free place once: with one place left on
/// each node, of eight first sign-ins at the same moment two get a token and six a 503
/// (on MariaDB and PostgreSQL, two transactions could read the same last place free and
/// both take it). A few rounds, each freeing one more place per node, give the race its
/// chances.
#[test]
fn concurrent_sign_ins_never_overfill_a_node() {
    on_every_engine("concurrent_sign_ins", |engine| {
        let site = Site::start(engine, 3600, 1, 1);
        let (a, b) = (site.a.url(), site.b.url());
        for round in 1..=4 {
            let accounts: Vec<String> = (0..8).map(|_| fxa::fxa_uid()).collect();
            let statuses: Vec<u16> = std::thread::scope(|s| {
                let asked: Vec<_> = accounts
                    .iter()
                    .map(|f| s.spawn(|| site.token_request(f).status))
                    .collect();
                asked
                    .into_iter()
                    .map(|h| h.join().expect("token request thread"))
                    .collect()
            });
            let granted = statuses.iter().filter(|s| **s == 200).count();
            let refused = statuses.iter().filter(|s| **s == 503).count();
            let list = site.list();
            assert_eq!(
                (granted, refused),
                (2, 6),
                "round {round}: {statuses:?}; nodes: {list:?}"
            );
            assert_eq!(
                list,
                [
                    (a.clone(), round, round, round, false),
                    (b.clone(), round, round, round, false)
                ],
                "round {round}: each node holds its capacity, no more"
            );
            let more = (round + 1).to_string();
            site.nodes(&["set", &a, "--capacity", &more]);
            site.nodes(&["set", &b, "--capacity", &more]);
        }
    });
}

// ---------------------------------------------------------------------------------------
// 2. Every account's data stays on its node; a node takes only its own tokens.

#[test]
fn data_stays_on_its_node() {
    on_every_engine("data_stays_on_its_node", |engine| {
        let site = Site::start(engine, 3600, 10, 10);
        let (a, b) = (site.a.url(), site.b.url());
        let f2 = fxa::fxa_uid();
        let u1 = site.login(&fxa::fxa_uid());
        let u2 = site.login(&f2);
        assert_eq!((u1.node(), u2.node()), (a.clone(), b.clone()));
        assert_eq!(u1.endpoint, format!("{a}/1.5/{}", u1.uid));
        assert_eq!(u2.endpoint, format!("{b}/1.5/{}", u2.uid));

        // Writes through api_endpoint: a PUT, a POST, a batch.
        u1.put("bookmarks", "a1");
        u1.expect(
            200,
            "POST",
            "/storage/history",
            Some(&json!([{"id": "h1", "payload": "x"}, {"id": "h2", "payload": "y"}])),
        );
        u2.put("bookmarks", "b1");
        let batch = u2.expect(
            202,
            "POST",
            "/storage/tabs?batch=true",
            Some(&json!([{"id": "t1", "payload": "x"}])),
        );
        let batch = batch["batch"].as_str().expect("batch id").to_string();
        u2.expect(
            200,
            "POST",
            &format!("/storage/tabs?batch={batch}&commit=true"),
            Some(&json!([{"id": "t2", "payload": "y"}])),
        );
        // Read back, through the endpoint and through the /storage/1.5 layout of the
        // same node.
        let got = u1.expect(200, "GET", "/storage/bookmarks/a1", None);
        assert_eq!(got["payload"], json!("payload of a1"));
        let (port, _) = u1.port_and_path();
        let other_layout = format!("/storage/1.5/{}/storage/bookmarks/a1", u1.uid);
        let r = signed(&u1.id, &u1.key, port, "GET", &other_layout, None);
        assert_eq!(r.status, 200, "{other_layout}: {}", r.text());
        assert_eq!(r.json()["payload"], json!("payload of a1"));
        assert_eq!(
            u2.expect(200, "GET", "/info/collection_counts", None),
            json!({"bookmarks": 1, "tabs": 2})
        );

        // A token for A sent to B (the same path layout, B's prefix) is refused, and
        // writes nothing.
        let b_port = site.b.port;
        let wrong = format!("/sync/1.5/{}/storage/bookmarks/x", u1.uid);
        let r = signed(
            &u1.id,
            &u1.key,
            b_port,
            "PUT",
            &wrong,
            Some(&json!({"payload": "x"})),
        );
        assert_eq!(r.status, 401, "A's token on B: {}", r.text());
        let (b_uid, b_id) = (u2.uid, u2.id.clone());
        let wrong = format!("/1.5/{b_uid}/info/collections");
        let r = signed(&b_id, &u2.key, site.a.port, "GET", &wrong, None);
        assert_eq!(r.status, 401, "B's token on A: {}", r.text());

        let (a_rows, b_rows) = (site.a_db.records(), site.b_db.records());
        let row = |uid: u64, c: &str, id: &str| (uid, c.to_string(), id.to_string());
        assert_eq!(
            a_rows,
            [
                row(u1.uid, "bookmarks", "a1"),
                row(u1.uid, "history", "h1"),
                row(u1.uid, "history", "h2")
            ],
            "node A's database"
        );
        assert_eq!(
            b_rows,
            [
                row(u2.uid, "bookmarks", "b1"),
                row(u2.uid, "tabs", "t1"),
                row(u2.uid, "tabs", "t2")
            ],
            "node B's database"
        );

        // Each node checks its own secret (`nodes secret` prints it) and its own name: a
        // token made with B's secret for B passes; for A's name, or with A's secret, or
        // with the master secret itself, it does not.
        let (secret_a, secret_b) = (site.node_secret(&a), site.node_secret(&b));
        assert_ne!(secret_a, secret_b);
        let master = SECRET.to_string();
        for (secret, node, uid, on, want) in [
            (&secret_a, &a, u1.uid, &site.a, 200),
            (&master, &a, u1.uid, &site.a, 401),
            (&secret_b, &a, u1.uid, &site.a, 401),
            (&secret_b, &b, b_uid, &site.b, 200),
            (&secret_b, &a, b_uid, &site.b, 401),
            (&secret_a, &b, b_uid, &site.b, 401),
            (&master, &b, b_uid, &site.b, 401),
        ] {
            let (id, key) = client_auth::mint(secret, uid, node, now() as i64 + 600, "abc");
            let target = format!("{}/1.5/{uid}/info/collections", on.prefix);
            let r = signed(&id, &key, on.port, "GET", &target, None);
            assert_eq!(
                (r.status, on.name),
                (want, on.name),
                "token for {node} signed with {secret}: {}",
                r.text()
            );
        }

        // A change of keys (X-KeyID) is a new uid on the same node.
        let rekeyed = login_keyed(&site.ts, &f2, 2000, 8);
        assert_ne!(rekeyed.uid, u2.uid);
        assert_eq!(rekeyed.node(), b, "after a change of keys");

        // Roles: the tokenserver serves no storage, the nodes no tokens.
        let r = signed(
            &u1.id,
            &u1.key,
            site.ts.port,
            "GET",
            "/1.5/1/info/collections",
            None,
        );
        assert_eq!(r.status, 404, "storage on the tokenserver: {}", r.text());
        let r = signed(
            &u1.id,
            &u1.key,
            site.ts.port,
            "GET",
            "/storage/1.5/1/info/collections",
            None,
        );
        assert_eq!(r.status, 404, "storage on the tokenserver: {}", r.text());
        for node in [&site.a, &site.b] {
            let r = token_request(node, &fxa::fxa_uid(), "");
            assert_eq!(
                r.status,
                404,
                "a token from node {}: {}",
                node.name,
                r.text()
            );
        }
        // Each answers its heartbeat from the database it has: the tokenserver's own, or
        // the node's.
        for p in [&site.ts, &site.a, &site.b] {
            let r = p.http("GET", &format!("{}/__heartbeat__", p.prefix), &[]);
            assert_eq!(r.status, 200, "{} heartbeat: {}", p.name, r.text());
        }
    });
}

// ---------------------------------------------------------------------------------------
// 3. Draining a node.

/// Polls `creds`' node with the token until it is refused: it must work until the
/// token's `expires` (the node knows nothing of the drain) and be refused (401) right
/// after (`expired_token_timeout = 0`). How often it was served depends on how soon the
/// machine got here: a loaded one may arrive after the token expired.
#[track_caller]
fn works_until_expiry(creds: &Creds, rest: &str) {
    loop {
        let sent = now();
        let r = creds.send("GET", rest, None);
        match r.status {
            200 => {
                assert!(
                    sent < creds.expires + 1.0,
                    "the old token still works {:.1} s after it expired",
                    sent - creds.expires
                );
            }
            401 => {
                assert!(
                    now() > creds.expires - 1.0,
                    "the old token was refused {:.1} s before it expired: {}",
                    creds.expires - now(),
                    r.text()
                );
                break;
            }
            other => panic!("old token: {other} {}", r.text()),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn drain_moves_accounts_at_their_next_token() {
    on_every_engine("drain_moves_accounts_at_their_next_token", |engine| {
        let site = Site::start(engine, 3600, 10, 10);
        let (a, b) = (site.a.url(), site.b.url());
        let (f1, f2, f3) = (fxa::fxa_uid(), fxa::fxa_uid(), fxa::fxa_uid());
        let u1 = site.login(&f1);
        let u2 = site.login(&f2);
        let u3 = site.login(&f3);
        assert_eq!(
            [u1.node(), u2.node(), u3.node()],
            [&a, &b, &a].map(String::clone),
            "where the accounts went"
        );
        u1.put("bookmarks", "r1");
        u3.put("bookmarks", "r3");
        // Another token for u1 (same uid) just before the drain, asked for 3 s
        // (`?duration=3`), to see A refuse it once it expires.
        let short = login_as(&site.ts, &f1, "?duration=3", &site.logs());
        assert_eq!(short.uid, u1.uid);
        assert!(short.expires <= now() + 3.5, "{short:?}");

        let out = site.nodes(&["drain", &a]);
        assert!(
            out.contains(&format!("node {a} takes no new users; 2 user(s) move")),
            "nodes drain printed: {out}"
        );
        assert_eq!(
            site.list(),
            [(a.clone(), 0, 2, 0, false), (b.clone(), 1, 1, 10, false)],
            "nodes list right after the drain"
        );

        // The old token keeps working on A: the node knows nothing of the drain.
        let r = u1.send("GET", "/storage/bookmarks/r1", None);
        assert_eq!(
            r.status,
            200,
            "old token on A right after the drain: {}",
            r.text()
        );

        // The next token: a new uid on B; nothing of the old data shows there.
        let moved = site.login(&f1);
        assert_eq!(moved.node(), b, "u1's next token");
        assert_ne!(moved.uid, u1.uid);
        assert!(
            moved.uid > u3.uid,
            "a new uid: {} after {}",
            moved.uid,
            u3.uid
        );
        assert_eq!(
            moved.expect(200, "GET", "/info/collections", None),
            json!({})
        );
        moved.expect(404, "GET", "/storage/bookmarks/r1", None);

        // Until it expires, then 401: the client then asks for a token again and is
        // sent to the same new place, where it uploads its data again.
        works_until_expiry(&short, "/storage/bookmarks/r1");
        let again = site.login(&f1);
        assert_eq!(
            (again.uid, again.endpoint.clone()),
            (moved.uid, moved.endpoint.clone())
        );
        again.put("bookmarks", "r1");

        // New accounts go to B; u3 moves at its next token; u2 stays.
        let u4 = site.login(&fxa::fxa_uid());
        assert_eq!(u4.node(), b);
        let moved3 = site.login(&f3);
        assert_eq!(moved3.node(), b);
        assert_ne!(moved3.uid, u3.uid);
        let stay = site.login(&f2);
        assert_eq!((stay.uid, stay.node()), (u2.uid, b.clone()));
        assert_eq!(
            users_by_node(&site.list()),
            [(a.clone(), 0), (b.clone(), 4)],
            "nodes list once they moved"
        );

        let row = |uid: u64, id: &str| (uid, "bookmarks".to_string(), id.to_string());
        assert_eq!(
            site.b_db.records(),
            [row(moved.uid, "r1")],
            "node B's database"
        );
        // The old rows stay on A (until purged); nothing new was written there.
        assert_eq!(
            site.a_db.records(),
            [row(u1.uid, "r1"), row(u3.uid, "r3")],
            "node A's database"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 4. A downed node.

#[test]
fn downed_node_gets_no_new_accounts_and_its_accounts_move() {
    on_every_engine("downed_node", |engine| {
        let site = Site::start(engine, 3600, 10, 10);
        let (a, b) = (site.a.url(), site.b.url());
        let (f1, f2) = (fxa::fxa_uid(), fxa::fxa_uid());
        let u1 = site.login(&f1);
        let u2 = site.login(&f2);
        assert_eq!([u1.node(), u2.node()], [a.clone(), b.clone()]);
        u1.put("bookmarks", "r1");

        let out = site.nodes(&["set", &a, "--downed", "1", "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(
            (v["url"].as_str(), v["downed"].as_bool()),
            (Some(a.as_str()), Some(true))
        );
        // u1 is still counted on A until their next token.
        assert_eq!(
            site.list(),
            [(a.clone(), 1, 1, 10, true), (b.clone(), 1, 1, 10, false)]
        );

        // New accounts: B, though A is the emptier.
        for _ in 0..2 {
            assert_eq!(site.login(&fxa::fxa_uid()).node(), b);
        }
        // u1's next token: a new uid on B, empty; u2 stays.
        let moved = site.login(&f1);
        assert_eq!(moved.node(), b);
        assert_ne!(moved.uid, u1.uid);
        assert_eq!(
            moved.expect(200, "GET", "/info/collections", None),
            json!({})
        );
        let stay = site.login(&f2);
        assert_eq!((stay.uid, stay.node()), (u2.uid, b.clone()));
        assert_eq!(
            users_by_node(&site.list()),
            [(a.clone(), 0), (b.clone(), 4)]
        );

        // Back up: A (load 1 of 10) takes the next new account again (B has 4 of 10);
        // u1 stays where it went.
        site.nodes(&["set", &a, "--downed", "0"]);
        assert_eq!(site.login(&fxa::fxa_uid()).node(), a);
        let back = site.login(&f1);
        assert_eq!((back.uid, back.node()), (moved.uid, b.clone()));

        // `nodes remove B`: its four accounts move to A at their next token, and B is
        // no longer listed.
        let out = site.nodes(&["remove", &b, "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v, json!({"removed": b, "users_moving": 4}));
        let gone = site.login(&f2);
        assert_eq!(gone.node(), a, "u2 after B was removed");
        assert_ne!(gone.uid, u2.uid);
        gone.put("bookmarks", "r2");
        // On A: the account made while it was back up, and u2.
        assert_eq!(users_by_node(&site.list()), [(a.clone(), 2)]);
    });
}

// ---------------------------------------------------------------------------------------
// 5. A real sync client follows its account to another node.

/// PyPI syncclient 0.8.0 uploads through node A; A is drained; it then syncs with the
/// token it holds until A answers 401, gets a new token naming B, finds B empty and
/// uploads again (tests/python/syncclient_move.py: syncclient has no token renewal, so the
/// few lines Firefox runs around a 401 are the script's).
#[test]
fn syncclient_follows_its_account_to_another_node() {
    let Some(python) = common::venv_python(&["syncclient", "requests_hawk"]) else {
        return;
    };
    on_every_engine("syncclient_follows", |engine| {
        let site = Site::start(engine, 5, 10, 10);
        let (a, b) = (site.a.url(), site.b.url());
        let sub = fxa::fxa_uid();
        let state = site.dir.join("client-state.json");
        let run = |phase: &str| -> String {
            let script =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/syncclient_move.py");
            let out = Command::new(&python)
                .arg(&script)
                .arg(phase)
                .env("SC_TOKEN_URL", format!("{}/token", site.ts.url()))
                .env("SC_BEARER", bearer(&sub, 1000))
                .env("SC_KEYID", key_id(1000, 7))
                .env("SC_STATE", &state)
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .env_remove("HTTP_PROXY")
                .env_remove("http_proxy")
                .env("NO_PROXY", "127.0.0.1")
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "syncclient_move.py {phase}:\n{stdout}\n--- stderr\n{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                site.logs()
            );
            stdout
        };
        let said = |out: &str, word: &str| -> (u64, String) {
            let line = out
                .lines()
                .find(|l| l.starts_with(word))
                .unwrap_or_else(|| panic!("no {word:?} line in:\n{out}"));
            let uid = line
                .split("uid=")
                .nth(1)
                .and_then(|s| s.split(' ').next())
                .and_then(|s| s.parse().ok())
                .expect("uid=");
            let endpoint = line.split("endpoint=").nth(1).expect("endpoint=");
            (uid, endpoint.to_string())
        };

        let (old_uid, old_endpoint) = said(&run("upload"), "uploaded");
        assert_eq!(old_endpoint, format!("{a}/1.5/{old_uid}"));
        let out = site.nodes(&["drain", &a, "--json"]);
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v, json!({"drained": a, "users_moving": 1}));

        let followed = run("follow");
        assert!(followed.contains("syncclient move: all good"), "{followed}");
        let (new_uid, new_endpoint) = said(&followed, "moved");
        assert_eq!(new_endpoint, format!("{b}/1.5/{new_uid}"));
        // It moved because A refused the token it held.
        let renewal = format!("401 from {old_endpoint}: new token for {new_endpoint}");
        assert!(followed.contains(&renewal), "{followed}");

        let ids = |uid: u64| {
            [
                ("bookmarks", "bm1"),
                ("bookmarks", "bm2"),
                ("history", "h1"),
            ]
            .map(|(c, id)| (uid, c.to_string(), id.to_string()))
        };
        assert_eq!(site.b_db.records(), ids(new_uid), "node B's database");
        assert_eq!(site.a_db.records(), ids(old_uid), "node A's database");
        assert_eq!(
            users_by_node(&site.list()),
            [(a.clone(), 0), (b.clone(), 1)]
        );
    });
}

// ---------------------------------------------------------------------------------------
// 6. migrate-to-nodes: an all-in-one box becomes node 1 of a site.

#[test]
fn migrate_to_nodes_keeps_uids_and_data() {
    on_every_engine("migrate_to_nodes", |engine| {
        // Declared before the processes, so that they outlive them (drops run in reverse).
        let dir = TempDir::new();
        mkdir(&dir.0);
        let box_db = Db::new(engine, &dir.0, "box");
        let b_db = Db::new(engine, &dir.0, "nodes_b");
        let ts_db = Db::new(engine, &dir.0, "nodes_ts");
        let mut boxed = Proc::new(&dir.0, "box", "");
        let mut b = Proc::new(&dir.0, "b", "/sync");
        let box_url = boxed.url();

        // The all-in-one box, with two accounts and their records.
        let plain = format!("sqluri = {}\n{}", box_db.uri(), flow::oauth_ini());
        boxed.start(&plain);
        let (f1, f2) = (fxa::fxa_uid(), fxa::fxa_uid());
        let before: Vec<Creds> = [&f1, &f2]
            .iter()
            .map(|f| login(&boxed, f, &boxed.logs()))
            .collect();
        for (c, id) in before.iter().zip(["one", "two"]) {
            assert_eq!(c.endpoint, format!("{box_url}/storage/1.5/{}", c.uid));
            c.put("bookmarks", id);
        }

        // Stopped, copied into the tokenserver tables (a second run copies nothing more),
        // restarted with sqlnode.
        boxed.stop_backend();
        for copied in [2, 0] {
            let out = commands::ok(&commands::run(
                &boxed.ini(),
                &["migrate-to-nodes", "--to", &ts_db.uri(), "--json"],
            ));
            let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
            assert_eq!(
                (
                    v["node"].as_str(),
                    v["copied"].as_u64(),
                    v["accounts_on_node"].as_u64()
                ),
                (Some(box_url.as_str()), Some(copied), Some(2)),
                "{out}"
            );
        }
        boxed.start(&format!("{plain}{}", sqlnode_ini(&ts_db)));

        // Same uids, on this box (now `{node}/1.5/{uid}`), data still there; the tokens
        // handed out before (signed with the master secret) still work too.
        for (c, (f, id)) in before.iter().zip([(&f1, "one"), (&f2, "two")]) {
            let now_c = login(&boxed, f, &boxed.logs());
            assert_eq!(now_c.uid, c.uid, "uid after the migration");
            assert_eq!(now_c.endpoint, format!("{box_url}/1.5/{}", c.uid));
            let got = now_c.expect(200, "GET", &format!("/storage/bookmarks/{id}"), None);
            assert_eq!(got["payload"], json!(format!("payload of {id}")));
            c.expect(200, "GET", &format!("/storage/bookmarks/{id}"), None);
        }

        // A new account: on the box, the only node, with a uid no account of the box
        // had (its records would show otherwise).
        let top = before.iter().map(|c| c.uid).max().unwrap_or(0);
        let local = login(&boxed, &fxa::fxa_uid(), &boxed.logs());
        assert_eq!(local.node(), box_url);
        assert!(local.uid > top, "new uid {} after {top}", local.uid);
        assert_eq!(
            local.expect(200, "GET", "/info/collections", None),
            json!({})
        );

        // A second node added later gets the new accounts.
        b.start(&storage_ini(&b_db));
        let b_url = b.url();
        commands::ok(&commands::run(
            &boxed.ini(),
            &["nodes", "add", &b_url, "--capacity", "10"],
        ));
        let fresh = login(
            &boxed,
            &fxa::fxa_uid(),
            &format!("{}{}", boxed.logs(), b.logs()),
        );
        assert_eq!(fresh.node(), b_url, "a new account after node B was added");
        assert!(
            fresh.uid > local.uid,
            "new uid {} after {}",
            fresh.uid,
            local.uid
        );
        fresh.put("bookmarks", "three");
        let row = |uid: u64, id: &str| (uid, "bookmarks".to_string(), id.to_string());
        assert_eq!(
            b_db.records(),
            [row(fresh.uid, "three")],
            "node B's database"
        );
        assert_eq!(
            box_db.records(),
            [row(before[0].uid, "one"), row(before[1].uid, "two")],
            "the box's database"
        );
        let list = node_list(&commands::ok(&commands::run(
            &boxed.ini(),
            &["nodes", "list", "--json"],
        )));
        assert_eq!(users_by_node(&list), [(box_url.clone(), 3), (b_url, 1)]);
    });
}
