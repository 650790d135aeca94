//! A small local stand-in for the Firefox Accounts servers: `GET /v1/jwks`,
//! `POST /v1/verify` and `GET /.well-known/fxa-client-configuration` over
//! plain HTTP/1.1 on 127.0.0.1, with switchable failure modes and per-path
//! request counters, plus JWT minting with the fixture RSA keys.
//!
//! Once given an account ([`FakeFxa::sign_in`]) it also answers what a real Firefox
//! asks its account server for while it syncs (tests/firefox_sync.rs): an OAuth access
//! token for the session (`POST /v1/oauth/token`, an RS256 JWT with the oldsync scope
//! and `fxa-generation`), device registration and the device list (the clients and tabs
//! engines only show devices the account server lists), and small HTML pages to open
//! as tabs.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents, RSA_PKCS1_SHA256};
use serde_json::{json, Value};

/// The scope a Sync access token carries.
pub const OLDSYNC: &str = "https://identity.mozilla.com/apps/oldsync";
/// The `client_id` of tokens we mint (Firefox desktop's).
pub const CLIENT_ID: &str = "5882386c6d801776";

/// How the stand-in answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Real answers.
    Normal,
    /// HTTP 500 with a JSON error body on every path.
    Error500,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// Sleeps this long before answering normally.
    Slow(Duration),
    /// Accepts and closes every connection without a word.
    Down,
}

/// One of the fixture RSA keys.
pub struct TestKey {
    pair: RsaKeyPair,
    /// The `kid` it is published and signs under.
    pub kid: String,
}

impl TestKey {
    /// Loads `tests/fixtures/<file>` under `kid` (PKCS#8 DER, or PKCS#1 DER as
    /// the committed fixtures actually are, despite their `.pk8` name).
    pub fn load(file: &str, kid: &str) -> TestKey {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(file);
        let der = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let pair = RsaKeyPair::from_pkcs8(&der)
            .or_else(|_| RsaKeyPair::from_der(&der))
            .expect("fixture is an RSA private key in DER");
        TestKey {
            pair,
            kid: kid.to_string(),
        }
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        let c = RsaPublicKeyComponents::<Vec<u8>>::from(self.pair.public());
        json!({
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e),
        })
    }

    /// The DER of the public key (for the HS256 confusion attack).
    pub fn public_der(&self) -> Vec<u8> {
        self.pair.public().as_ref().to_vec()
    }

    /// Signs `header.claims` with RS256.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let signing_input = format!("{}.{}", b64json(header), b64json(claims));
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .expect("RSA signing");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// An FxA-style access token for `sub` with the usual header.
    pub fn token(&self, claims: &Value) -> String {
        self.sign(
            &json!({"alg": "RS256", "typ": "at+jwt", "kid": self.kid}),
            claims,
        )
    }
}

/// Base64url (no padding) of a JSON value.
pub fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// Seconds since the epoch, as an integer.
pub fn epoch() -> i64 {
    super::now() as i64
}

/// The issuer (`iss`) of tokens from Mozilla's production accounts server.
pub const PRODUCTION_ISSUER: &str = "https://accounts.firefox.com";

/// The claims FxA puts in a Sync access token, as Mozilla's production
/// accounts server issues it (`FakeFxa::claims` for the stand-in's own).
pub fn claims(sub: &str, generation: i64) -> Value {
    claims_from(PRODUCTION_ISSUER, sub, generation)
}

/// The claims of a Sync access token issued by `iss` (FxA's issuer is the
/// public URL of its content server, the `identity_provider`).
pub fn claims_from(iss: &str, sub: &str, generation: i64) -> Value {
    let now = epoch();
    json!({
        "sub": sub, "scope": format!("profile {OLDSYNC}"), "fxa-generation": generation,
        "exp": now + 3600, "iat": now, "client_id": CLIENT_ID,
        "aud": "https://token.services.mozilla.com/1.0/sync/1.5",
        "iss": iss, "jti": format!("jti-{sub}-{now}"),
    })
}

/// `X-KeyID`: `<kca>-<base64url no pad of 16 bytes>`.
pub fn key_id(kca: i64, fingerprint: [u8; 16]) -> String {
    format!("{kca}-{}", URL_SAFE_NO_PAD.encode(fingerprint))
}

/// The client state (lower-case hex) an `X-KeyID` fingerprint stands for.
pub fn client_state(fingerprint: [u8; 16]) -> String {
    fingerprint.iter().map(|b| format!("{b:02x}")).collect()
}

/// Tokens no verifier may accept.
pub mod bad {
    use super::*;
    use ring::hmac;

    /// `alg: none`, no signature.
    pub fn alg_none(claims: &Value, kid: &str) -> String {
        let header = json!({"alg": "none", "typ": "at+jwt", "kid": kid});
        format!("{}.{}.", b64json(&header), b64json(claims))
    }

    /// HS256, keyed with the RSA public key's bytes (algorithm confusion).
    pub fn hs256_with_public_key(key: &TestKey, claims: &Value) -> String {
        let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": key.kid});
        let input = format!("{}.{}", b64json(&header), b64json(claims));
        let k = hmac::Key::new(hmac::HMAC_SHA256, &key.public_der());
        let tag = hmac::sign(&k, input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// A correctly signed token with `typ: JWT`.
    pub fn wrong_typ(key: &TestKey, claims: &Value) -> String {
        key.sign(
            &json!({"alg": "RS256", "typ": "JWT", "kid": key.kid}),
            claims,
        )
    }

    /// A signed token that expired a minute ago.
    pub fn expired(key: &TestKey, sub: &str) -> String {
        let mut c = super::claims(sub, 1);
        c["exp"] = json!(epoch() - 60);
        c["iat"] = json!(epoch() - 3660);
        key.token(&c)
    }

    /// A signed token without the oldsync scope.
    pub fn wrong_scope(key: &TestKey, sub: &str) -> String {
        let mut c = super::claims(sub, 1);
        c["scope"] = json!("profile https://identity.mozilla.com/apps/send");
        key.token(&c)
    }

    /// A signed token whose claims were edited afterwards.
    pub fn tampered(key: &TestKey, sub: &str, other_sub: &str) -> String {
        let token = key.token(&super::claims(sub, 1));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64json(&super::claims(other_sub, 1));
        format!("{}.{forged}.{}", parts[0], parts[2])
    }

    /// Three dot-separated parts that are not base64 JSON, and other junk.
    pub fn garbage() -> Vec<String> {
        vec![
            "a.b.c".into(),
            "eyJhbGciOiJSUzI1NiJ9.%%%.@@@".into(),
            format!("{}.e30.", b64json(&json!(["not", "an", "object"]))),
        ]
    }
}

struct State {
    mode: Mutex<Mode>,
    stop: AtomicBool,
    counts: Mutex<HashMap<String, u32>>,
    jwks: Mutex<Value>,
    opaque: Mutex<HashMap<String, Value>>,
    base_url: String,
    account: Mutex<Option<Account>>,
    devices: Mutex<Vec<Value>>,
}

/// The one account the stand-in signs access tokens for.
struct Account {
    uid: String,
    email: String,
    generation: i64,
    key: Arc<TestKey>,
}

/// The running stand-in; stops (joining its threads) on drop.
pub struct FakeFxa {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// Its port.
    pub port: u16,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl FakeFxa {
    /// Starts serving `jwks` (a list of keys) on a free port.
    pub fn start(published: &[&TestKey]) -> FakeFxa {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr: SocketAddr = listener.local_addr().expect("local addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://127.0.0.1:{}", addr.port());
        let state = Arc::new(State {
            mode: Mutex::new(Mode::Normal),
            stop: AtomicBool::new(false),
            counts: Mutex::new(HashMap::new()),
            jwks: Mutex::new(
                json!({ "keys": published.iter().map(|k| k.jwk()).collect::<Vec<_>>() }),
            ),
            opaque: Mutex::new(HashMap::new()),
            base_url: url.clone(),
            account: Mutex::new(None),
            devices: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let thread = std::thread::spawn(move || accept_loop(listener, st));
        FakeFxa {
            url,
            port: addr.port(),
            state,
            thread: Some(thread),
        }
    }

    /// Switches how it answers.
    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Replaces the published JWKS document.
    pub fn set_jwks(&self, doc: Value) {
        *self.state.jwks.lock().unwrap() = doc;
    }

    /// Publishes these keys.
    pub fn publish(&self, keys: &[&TestKey]) {
        self.set_jwks(json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }));
    }

    /// Issues an opaque (non-JWT) token that `/v1/verify` resolves to `reply`.
    pub fn opaque_token(&self, reply: Value) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let token = format!(
            "{:064x}",
            (std::process::id() as u128) << 64 | N.fetch_add(1, Ordering::SeqCst) as u128
        );
        self.state
            .opaque
            .lock()
            .unwrap()
            .insert(token.clone(), reply);
        token
    }

    /// The claims of a Sync access token this stand-in issued: `iss` is its
    /// own URL, as a self-hosted FxA's is its content server's public URL.
    pub fn claims(&self, sub: &str, generation: i64) -> Value {
        claims_from(&self.url, sub, generation)
    }

    /// From now on, access tokens (`POST /v1/oauth/token`) are for `uid` (32 hex digits)
    /// at `generation` (milliseconds, as FxA's `fxa-generation`), signed with `key`,
    /// whoever asks: every browser of a test is signed in to this one account.
    pub fn sign_in(&self, uid: &str, email: &str, generation: i64, key: Arc<TestKey>) {
        *self.state.account.lock().unwrap() = Some(Account {
            uid: uid.to_string(),
            email: email.to_string(),
            generation,
            key,
        });
    }

    /// The devices registered so far (`POST /v1/account/device`).
    pub fn devices(&self) -> Vec<Value> {
        self.state.devices.lock().unwrap().clone()
    }

    /// How many requests arrived for `path` (e.g. `/v1/jwks`).
    pub fn count(&self, path: &str) -> u32 {
        *self.state.counts.lock().unwrap().get(path).unwrap_or(&0)
    }

    /// How many requests arrived in all.
    pub fn total(&self) -> u32 {
        self.state.counts.lock().unwrap().values().sum()
    }
}

impl Drop for FakeFxa {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    while !state.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let st = state.clone();
                handlers.push(std::thread::spawn(move || {
                    let _ = handle(stream, &st);
                }));
                handlers.retain(|h| !h.is_finished());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    for h in handlers {
        let _ = h.join();
    }
}

struct HttpRequest {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<HttpRequest>> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    Ok(Some(HttpRequest { method, path, body }))
}

fn handle(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    let mode = *state.mode.lock().unwrap();
    if mode == Mode::Down {
        // Count it, so a test can tell the server never called out.
        *state
            .counts
            .lock()
            .unwrap()
            .entry("<down>".into())
            .or_default() += 1;
        return Ok(());
    }
    let Some(req) = read_request(&mut stream)? else {
        return Ok(());
    };
    *state
        .counts
        .lock()
        .unwrap()
        .entry(req.path.clone())
        .or_default() += 1;
    if let Mode::Slow(d) = mode {
        let until = Instant::now() + d;
        while Instant::now() < until && !state.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let (status, body) = match mode {
        Mode::Error500 => (
            500,
            r#"{"code":500,"errno":999,"error":"Internal Server Error"}"#.into(),
        ),
        Mode::Garbage => (200, "<html>this is not json".to_string()),
        _ => answer(&req, state),
    };
    // Pages for browser tabs: the network is closed, so tabs open pages from here.
    let content_type = if req.path.starts_with("/page/") {
        "text/html; charset=utf-8"
    } else {
        "application/json"
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nDate: {}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        http_date(epoch()),
        body.len()
    );
    stream.write_all(resp.as_bytes())?;
    stream.flush()
}

/// An HTTP `Date` value: Firefox's Hawk client takes its clock offset from it (a missing
/// one makes the offset NaN).
fn http_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[month as usize - 1],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What a signed-in Firefox asks for, once the stand-in has an account.
fn answer_browser(req: &HttpRequest, state: &State) -> Option<(u16, String)> {
    let account = state.account.lock().unwrap();
    let account = account.as_ref()?;
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let reply = match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/v1/oauth/token") => {
            let scope = body["scope"].as_str().unwrap_or(OLDSYNC).to_string();
            let mut claims = claims_from(&state.base_url, &account.uid, account.generation);
            claims["scope"] = json!(scope);
            claims["jti"] = json!(format!("{:032x}", rand_u128()));
            json!({
                "access_token": account.key.token(&claims),
                "token_type": "bearer",
                "scope": scope,
                "expires_in": 3600,
                "auth_at": epoch(),
            })
        }
        ("POST", "/v1/account/device") => {
            let mut devices = state.devices.lock().unwrap();
            let id = body["id"].as_str().map(String::from);
            let known = id
                .as_deref()
                .and_then(|id| devices.iter().position(|d| d["id"] == id));
            let mut device = match known {
                Some(i) => devices.remove(i),
                None => json!({"id": format!("{:032x}", rand_u128()), "isCurrentDevice": false}),
            };
            for (k, v) in body.as_object().into_iter().flatten() {
                if k != "id" {
                    device[k] = v.clone();
                }
            }
            device["lastAccessTime"] = json!(epoch() * 1000);
            devices.push(device.clone());
            device
        }
        ("GET", "/v1/account/devices") => json!(*state.devices.lock().unwrap()),
        ("GET", "/v1/account/device/commands") => json!({"index": 0, "last": true, "messages": []}),
        ("GET", "/v1/account/attached_clients") => json!([]),
        ("GET", "/v1/session/status") => json!({"state": "verified", "uid": account.uid}),
        ("GET", "/v1/recovery_email/status") => json!({
            "email": account.email, "verified": true, "sessionVerified": true,
            "emailVerified": true,
        }),
        ("GET", "/v1/profile") => json!({
            "uid": account.uid, "email": account.email, "locale": "en-US",
            "displayName": "Sync Test", "avatar": null, "avatarDefault": true,
        }),
        (
            "POST",
            "/v1/account/devices/notify"
            | "/v1/oauth/destroy"
            | "/v1/session/destroy"
            | "/v1/account/device/destroy",
        ) => json!({}),
        _ => return None,
    };
    Some((200, reply.to_string()))
}

/// A random 128-bit number, for ids.
fn rand_u128() -> u128 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    SystemRandom::new().fill(&mut b).expect("random bytes");
    u128::from_le_bytes(b)
}

fn answer(req: &HttpRequest, state: &State) -> (u16, String) {
    if let Some(name) = req.path.strip_prefix("/page/") {
        let name: String = name.chars().filter(char::is_ascii_alphanumeric).collect();
        return (
            200,
            format!("<!DOCTYPE html><html><head><title>Page {name}</title></head><body>{name}</body></html>"),
        );
    }
    if let Some(reply) = answer_browser(req, state) {
        return reply;
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/v1/jwks") => (200, state.jwks.lock().unwrap().to_string()),
        ("POST", "/v1/verify") => {
            let token = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|v| v.get("token").and_then(Value::as_str).map(String::from));
            match token.and_then(|t| state.opaque.lock().unwrap().get(&t).cloned()) {
                Some(reply) => (200, reply.to_string()),
                None => (
                    400,
                    r#"{"code":400,"errno":108,"error":"Bad Request","message":"Invalid token"}"#
                        .into(),
                ),
            }
        }
        ("GET", "/.well-known/fxa-client-configuration") => (
            200,
            json!({
                "auth_server_base_url": state.base_url,
                "oauth_server_base_url": state.base_url,
                "profile_server_base_url": state.base_url,
                "sync_tokenserver_base_url": "http://127.0.0.1:1/token",
            })
            .to_string(),
        ),
        (_, "/v1/jwks" | "/v1/verify" | "/.well-known/fxa-client-configuration") => {
            (405, "{}".into())
        }
        _ => (404, r#"{"code":404,"errno":999}"#.into()),
    }
}

/// A `/v1/verify` reply for `user`.
pub fn verify_reply(user: &str, generation: i64) -> Value {
    json!({"user": user, "scope": ["profile", OLDSYNC], "generation": generation, "client_id": CLIENT_ID})
}

/// Distinct 16-byte fingerprints for tests.
pub fn fingerprint(n: u8) -> [u8; 16] {
    [n; 16]
}

/// A fresh 32-hex FxA uid per call (distinct across tests in one binary).
pub fn fxa_uid() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{:08x}{:08x}{:016x}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        epoch()
    )
}

/// Where the token endpoint is, below public_url.
pub const TOKEN_PATH: &str = "/token/1.0/sync/1.5";

/// `GET` the token endpoint with `bearer` and the X-KeyID of fingerprint 1.
pub fn get_token(server: &super::Server, bearer: &str) -> super::fcgi_client::CgiResponse {
    let auth = format!("Bearer {bearer}");
    let kid = key_id(1000, fingerprint(1));
    server.request(
        "GET",
        TOKEN_PATH,
        &[("Authorization", &auth), ("X-KeyID", &kid)],
        b"",
    )
}

/// Sends `n` token requests with `bearer` at once; their answers, and how long all took.
pub fn token_requests_at_once(
    server: &super::Server,
    bearer: &str,
    n: usize,
) -> (Vec<super::fcgi_client::CgiResponse>, Duration) {
    let t0 = Instant::now();
    let answers = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| s.spawn(|| get_token(server, bearer)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("token request thread"))
            .collect()
    });
    (answers, t0.elapsed())
}
