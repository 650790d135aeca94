//! Replay protection never lapses: nonces are not forgotten because memory ran out (a flooding
//! account is refused instead), and a token's requests must stay within a window of the clock
//! the token was first used with, so clients with wrong clocks keep working while old captured
//! requests do not.

mod common;

use common::client_auth::{hawk_header, Signed};
use common::engines::{test_engine, Engine, TestDatabase};
use common::fcgi_client::CgiResponse;
use common::{hdr, now, Server, User};

/// A request signed with a chosen client timestamp and nonce, sent as is; returns the response
/// and the Authorization header, so the very same request can be sent again.
fn send_at(
    server: &Server,
    user: &User,
    method: &str,
    rest: &str,
    body: &[u8],
    ts: i64,
    nonce: &str,
) -> (CgiResponse, String) {
    let path = Server::storage_path(user.uid, rest);
    let full = format!("{}{}", server.prefix(), path);
    let (host, port) = server.host_port();
    let auth = hawk_header(&Signed {
        id: &user.token,
        key: &user.key,
        ts,
        nonce,
        method,
        path: &full,
        host: &host,
        port,
        payload: None,
    });
    (replay(server, method, &path, body, &auth), auth)
}

fn replay(server: &Server, method: &str, path: &str, body: &[u8], auth: &str) -> CgiResponse {
    let mut headers = vec![("Authorization", auth)];
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    server.request(method, path, &headers, body)
}

#[test]
fn flooding_account_is_refused_and_cannot_make_others_requests_replayable() {
    // 1,600 nonces per process: one account may hold 100 at once.
    let server = Server::start("[hawkauth]\nmax_nonces = 1600\n");
    let victim = server.user(1);
    let flooder = server.user(2);
    let t = now() as i64;

    let record = br#"{"payload": "old password record"}"#;
    let (put, captured) = send_at(
        &server,
        &victim,
        "PUT",
        "/storage/passwords/rec1",
        record,
        t,
        "victim-1",
    );
    assert_eq!(put.status, 200, "{}", put.text());

    let (mut ok, mut refused) = (0, 0);
    for i in 0..400 {
        let (r, _) = send_at(
            &server,
            &flooder,
            "GET",
            "/info/collections",
            b"",
            t,
            &format!("flood-{i}"),
        );
        match r.status {
            200 => ok += 1,
            503 => {
                refused += 1;
                let retry: u64 = hdr(&r, "Retry-After").parse().expect("Retry-After seconds");
                assert!((1..=600).contains(&retry), "Retry-After {retry}");
            }
            s => panic!("flood request {i}: unexpected status {s}"),
        }
    }
    assert_eq!(ok, 100, "the flooding account gets its share, then 503");
    assert_eq!(refused, 300);

    // The victim's captured PUT is still a replay after the flood...
    let path = Server::storage_path(victim.uid, "/storage/passwords/rec1");
    let again = replay(&server, "PUT", &path, record, &captured);
    assert_eq!(again.status, 401, "captured request replayed after a flood");
    // ...and the victim itself is not affected by the other account's flood.
    let (get, _) = send_at(
        &server,
        &victim,
        "GET",
        "/storage/passwords/rec1",
        b"",
        now() as i64,
        "victim-2",
    );
    assert_eq!(get.status, 200);
}

#[test]
fn skewed_client_clocks_work_but_requests_outside_the_tokens_window_do_not() {
    let server = Server::start("");
    let t = now() as i64;

    // A client whose clock is a day behind: its token learns that offset on first use.
    let behind = server.user(7);
    let (first, _) = send_at(
        &server,
        &behind,
        "GET",
        "/info/collections",
        b"",
        t - 86_400,
        "a",
    );
    assert_eq!(first.status, 200);
    let (second, _) = send_at(
        &server,
        &behind,
        "GET",
        "/info/collections",
        b"",
        t - 86_400 + 2,
        "b",
    );
    assert_eq!(second.status, 200);
    // A request of the same token signed two minutes earlier on that clock (what a captured
    // request replayed two minutes later looks like) is refused: its nonce is no longer
    // remembered, so its timestamp must not be accepted either.
    let (stale, _) = send_at(
        &server,
        &behind,
        "GET",
        "/info/collections",
        b"",
        t - 86_400 - 120,
        "c",
    );
    assert_eq!(stale.status, 401);

    // A client a day ahead works too, with its own token.
    let ahead = server.user(8);
    let (r, _) = send_at(
        &server,
        &ahead,
        "GET",
        "/info/collections",
        b"",
        t + 86_400,
        "a",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn a_request_accepted_by_one_process_is_a_replay_for_every_other() {
    // Two processes on one database, each with its socket on stdin, as mod_fcgid runs them.
    // On a server engine (SYNCSERVER_TEST_ENGINE) there is no database file to keep the
    // nonces beside: they share a file of their own (dropped after the servers).
    let server_db = match test_engine() {
        Engine::Sqlite => None,
        engine => match TestDatabase::create(engine, "replay") {
            Some(d) => Some(d),
            None => return,
        },
    };
    let sqluri = server_db
        .as_ref()
        .map(|d| format!("sqluri = {}\n", d.uri))
        .unwrap_or_default();
    let dir = common::TempDir::new();
    std::fs::write(
        dir.join("syncserver.ini"),
        format!(
            "[syncserver]\npublic_url = {}\nsecret = {}\n{sqluri}",
            common::PUBLIC_URL,
            common::SECRET
        ),
    )
    .expect("write ini");
    let first = Server::start_inherited(&dir.0, "first.sock", 1);
    let second = Server::start_inherited(&dir.0, "second.sock", 1);
    let user = first.user(3);
    let t = now() as i64;

    let record = br#"{"payload": "a password"}"#;
    let (put, captured) = send_at(
        &first,
        &user,
        "PUT",
        "/storage/passwords/p1",
        record,
        t,
        "once",
    );
    assert_eq!(put.status, 200, "{}", put.text());
    let path = Server::storage_path(user.uid, "/storage/passwords/p1");
    let replayed = replay(&second, "PUT", &path, record, &captured);
    assert_eq!(replayed.status, 401, "replay accepted by another process");

    // The second process also knows the token's clock from the first: a request signed two
    // minutes before it is stale there too, while a fresh one goes through.
    let (stale, _) = send_at(
        &second,
        &user,
        "GET",
        "/info/collections",
        b"",
        t - 120,
        "old",
    );
    assert_eq!(stale.status, 401);
    let (fresh, _) = send_at(&second, &user, "GET", "/info/collections", b"", t, "new");
    assert_eq!(fresh.status, 200);
    // Where the nonces are shared: beside a SQLite database, else in a file of the serving
    // user's own (the test database is dropped, so its file must say which database).
    let log = std::fs::read_to_string(dir.join("first.sock.log")).expect("log");
    let shared = log
        .lines()
        .find_map(|l| l.split_once("Hawk nonces are shared by every process through "))
        .map(|(_, place)| place.trim().to_string())
        .unwrap_or_else(|| panic!("no shared replay state in the log:\n{log}"));
    match test_engine() {
        Engine::Sqlite => assert_eq!(
            shared,
            dir.join("syncserver.db-replay").display().to_string()
        ),
        _ => assert!(std::path::Path::new(&shared).is_file(), "{shared}"),
    }
}
