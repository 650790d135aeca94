//! The workloads: what one step of one simulated client sends, and the seeding that makes the
//! read workloads meaningful.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::{Client, ClientError, Creds, Prepared, Reply, Req};
use crate::stats::Sample;

/// Records per POST, the limit every Sync 1.5 server advertises.
pub const PAGE: usize = 100;
/// The collection the read workloads page through (`--seed` fills it).
pub const READ_COLLECTION: &str = "history";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Unauthenticated GET of the base URL (the hello-world ceiling).
    Plain,
    /// GET info/collections.
    Info,
    /// GET one 100-record page (full=1) of the seeded collection, varying sort and offset.
    ReadPage,
    /// Read the seeded collection page by page, following X-Weave-Next-Offset.
    FullRead,
    /// POST 100 × ~1 KB records with batch=true&commit=true.
    Batch,
    /// PUT one ~1 KB record.
    Put,
    /// A Firefox sync session: info, configuration, meta/global, collection GETs with newer=,
    /// a tabs upload, sometimes a meta/global PUT with X-If-Unmodified-Since.
    Session,
    /// A token server request with a locally signed OAuth JWT.
    Token,
}

/// Every workload, in the order runs are reported.
pub const ALL: [Workload; 8] = [
    Workload::Plain,
    Workload::Info,
    Workload::ReadPage,
    Workload::FullRead,
    Workload::Batch,
    Workload::Put,
    Workload::Session,
    Workload::Token,
];

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Plain => "plain",
            Workload::Info => "info",
            Workload::ReadPage => "read-page",
            Workload::FullRead => "full-read",
            Workload::Batch => "batch",
            Workload::Put => "put",
            Workload::Session => "session",
            Workload::Token => "token",
        }
    }

    /// The workload called `name`.
    pub fn parse(name: &str) -> Option<Workload> {
        ALL.into_iter().find(|w| w.name() == name)
    }

    /// Whether each step is one request independent of the replies before it (so an event
    /// loop can drive it).
    pub fn single(self) -> bool {
        !matches!(self, Workload::FullRead | Workload::Session)
    }

    /// Whether it talks to storage (and so needs storage credentials).
    pub fn needs_storage(self) -> bool {
        !matches!(self, Workload::Plain | Workload::Token)
    }
}

/// A page of the read collection: its sort order and the offset token that starts it.
#[derive(Debug, Clone)]
pub struct PageRef {
    sort: &'static str,
    offset: Option<String>,
}

/// One simulated account as the workers see it.
#[derive(Debug, Clone)]
pub struct Account {
    /// Storage credentials (absent when only token requests are made).
    pub creds: Option<Creds>,
    /// Pre-signed OAuth access token and X-KeyID (token workload).
    pub bearer: Option<(String, String)>,
    /// Known pages of the read collection (filled by [`discover_pages`]).
    pub pages: Vec<PageRef>,
    meta_modified: Option<String>,
    last_sync: Option<String>,
    sessions: u64,
}

impl Account {
    /// An account with these credentials.
    pub fn new(creds: Option<Creds>, bearer: Option<(String, String)>) -> Account {
        Account {
            creds,
            bearer,
            pages: Vec::new(),
            meta_modified: None,
            last_sync: None,
            sessions: 0,
        }
    }
}

/// Settings every worker shares.
#[derive(Debug, Clone)]
pub struct Shared {
    /// URL of the plain workload.
    pub plain_url: String,
    /// Token server root (`…/token`) of the token workload.
    pub token_server: String,
}

/// One connection's simulated client: its accounts, its bodies and what it builds next.
pub struct Worker {
    client: Client,
    accounts: Vec<Account>,
    next: usize,
    rng: u64,
    batch_body: Vec<u8>,
    put_body: Vec<u8>,
    tabs_body: Vec<u8>,
    steps: u64,
    /// The plain workload's request, built once.
    plain: Option<Prepared>,
}

/// Sends one request built ahead of time, timing it from the first byte written to the last
/// byte read; `good` decides whether the reply counts as a success.
fn timed(
    s: &mut Sample,
    good: impl Fn(&Reply) -> Result<(), String>,
    c: &Client,
    req: Result<Prepared, ClientError>,
) -> Option<Reply> {
    match req {
        Ok(r) => timed_send(s, good, c, &r),
        Err(e) => {
            s.transport(e.to_string());
            None
        }
    }
}

/// [`timed`] for a request that is sent again and again as is.
fn timed_send(
    s: &mut Sample,
    good: impl Fn(&Reply) -> Result<(), String>,
    c: &Client,
    req: &Prepared,
) -> Option<Reply> {
    let t0 = Instant::now();
    match c.execute(req) {
        Ok(r) => match good(&r) {
            Ok(()) => {
                s.ok(t0.elapsed());
                Some(r)
            }
            Err(what) => {
                s.error(what);
                None
            }
        },
        Err(e) => {
            s.transport(e.to_string());
            None
        }
    }
}

pub fn ok200(r: &Reply) -> Result<(), String> {
    if r.status == 200 {
        Ok(())
    } else {
        Err(r.status.to_string())
    }
}

/// A 200 whose `failed` map is empty (every record of a POST was stored).
fn all_stored(r: &Reply) -> Result<(), String> {
    ok200(r)?;
    let v: Value = serde_json::from_slice(&r.body).map_err(|_| "200-not-json".to_string())?;
    match v.get("failed").and_then(Value::as_object) {
        Some(f) if f.is_empty() => Ok(()),
        _ => Err("200-failed-records".into()),
    }
}

/// A ~`len`-byte encrypted-looking payload, as a JSON string value.
fn payload(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut x = seed | 1;
    let text: String = (0..len.saturating_sub(80))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(ALPHABET[(x % 64) as usize])
        })
        .collect();
    // A non-zero IV: servers refuse the all-zero one of an old Firefox bug in crypto/keys.
    let iv = format!("{:016x}{:06x}==", seed, x & 0xff_ffff);
    json!({"ciphertext": text, "IV": iv, "hmac": format!("{:064x}", seed)}).to_string()
}

/// A POST body of `n` ~1 KB records with ids `{prefix}{start + i}`.
fn records(prefix: &str, start: usize, n: usize, seed: u64) -> Vec<u8> {
    records_ttl(prefix, start, n, seed, None)
}

/// [`records`], each with this `ttl` (seconds) when one is given.
fn records_ttl(prefix: &str, start: usize, n: usize, seed: u64, ttl: Option<u64>) -> Vec<u8> {
    let v: Vec<Value> = (start..start + n)
        .map(|i| {
            let mut r = json!({"id": format!("{prefix}{i:05}"), "sortindex": i,
                               "payload": payload(1000, seed.wrapping_add(i as u64))});
            if let Some(t) = ttl {
                r["ttl"] = json!(t);
            }
            r
        })
        .collect();
    Value::Array(v).to_string().into_bytes()
}

/// The collection `--expiring` fills with records that expire a second after they are written.
pub const EXPIRING_COLLECTION: &str = "bench-expiring";

/// Extra seeding beyond the history collection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedExtra {
    /// Records per user written with `ttl` 1 into [`EXPIRING_COLLECTION`] (for `purge`).
    pub expiring: usize,
    /// Collections `bench-c0000`… per user, one ~1 KB record each.
    pub collections: usize,
}

/// The name of extra collection `i`.
pub fn extra_collection(i: usize) -> String {
    format!("bench-c{i:04}")
}

impl Worker {
    /// A worker for these accounts (at least one).
    pub fn new(accounts: Vec<Account>, seed: u64) -> Worker {
        Worker {
            client: Client::new(),
            accounts,
            next: 0,
            rng: seed | 1,
            batch_body: records("b", 0, PAGE, seed),
            put_body: json!({"payload": payload(1000, seed), "sortindex": 1})
                .to_string()
                .into_bytes(),
            tabs_body: json!([{"id": format!("tabs{seed}"), "payload": payload(2000, seed), "ttl": 1_814_400}])
                .to_string()
                .into_bytes(),
            steps: 0,
            plain: None,
        }
    }

    fn rand(&mut self, n: usize) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % n.max(1) as u64) as usize
    }

    /// The next request of a workload whose step is one request ([`Workload::single`]), built
    /// and signed ahead of sending, with the check its reply must pass.
    pub fn next_single(&mut self, w: Workload, shared: &Shared) -> Result<(Prepared, Check), Fail> {
        self.steps += 1;
        let roll = self.rand(usize::MAX);
        let i = self.next % self.accounts.len().max(1);
        self.next = self.next.wrapping_add(1);
        let Worker {
            client: c,
            accounts,
            batch_body,
            put_body,
            steps,
            plain,
            ..
        } = self;
        let acct = accounts
            .get_mut(i)
            .ok_or_else(|| Fail::Status("no-account".into()))?;
        if w == Workload::Plain {
            // Unauthenticated, so the same bytes every time.
            if plain.is_none() {
                let req = Req {
                    method: "GET",
                    url: &shared.plain_url,
                    headers: &[],
                    body: b"",
                };
                *plain = Some(
                    c.prepare(&req)
                        .map_err(|e| Fail::Transport(e.to_string()))?,
                );
            }
            let p = plain
                .clone()
                .ok_or_else(|| Fail::Status("no-request".into()))?;
            return Ok((p, ok200));
        }
        if w == Workload::Token {
            let (bearer, kid) = acct
                .bearer
                .as_ref()
                .ok_or_else(|| Fail::Status("no-jwt-key".into()))?;
            let p = c
                .token_request(&shared.token_server, bearer, kid)
                .map_err(|e| Fail::Transport(e.to_string()))?;
            return Ok((p, ok200));
        }
        let cr = acct
            .creds
            .as_ref()
            .ok_or_else(|| Fail::Status("no-credentials".into()))?;
        Ok(match w {
            Workload::Info => (c.sign(cr, "GET", "/info/collections", &[], b""), ok200),
            Workload::ReadPage => {
                let rest = match acct.pages.get(roll % acct.pages.len().max(1)) {
                    Some(p) => page_query(p.sort, p.offset.as_deref()),
                    None => page_query("index", None),
                };
                (c.sign(cr, "GET", &rest, &[], b""), ok200)
            }
            Workload::Batch => {
                let rest = "/storage/bench-batch?batch=true&commit=true";
                (c.sign(cr, "POST", rest, &[], batch_body), all_stored)
            }
            Workload::Put => {
                let rest = format!("/storage/bench-put/p{:03}", *steps % 100);
                (c.sign(cr, "PUT", &rest, &[], put_body), ok200)
            }
            _ => return Err(Fail::Status("not-a-single-request-workload".into())),
        })
    }

    /// Runs one step of `w` (one request, or several for full-read and session).
    pub fn step(&mut self, w: Workload, shared: &Shared, s: &mut Sample) {
        if w.single() {
            match self.next_single(w, shared) {
                Ok((req, check)) => {
                    timed_send(s, check, &self.client, &req);
                }
                Err(f) => f.record(s),
            }
            return;
        }
        self.steps += 1;
        let i = self.next % self.accounts.len().max(1);
        self.next = self.next.wrapping_add(1);
        let Worker {
            client: c,
            accounts,
            tabs_body,
            ..
        } = self;
        let Some(acct) = accounts.get_mut(i) else {
            return;
        };
        let Some(cr) = acct.creds.as_ref() else {
            s.error("no-credentials".into());
            return;
        };
        match w {
            Workload::FullRead => {
                let mut offset: Option<String> = None;
                for _ in 0..10_000 {
                    let rest = page_query("index", offset.as_deref());
                    let Some(r) = timed(s, ok200, c, Ok(c.sign(cr, "GET", &rest, &[], b""))) else {
                        break;
                    };
                    offset = r.next_offset;
                    if offset.is_none() {
                        break;
                    }
                }
            }
            Workload::Session => {
                let cr = cr.clone();
                session(c, &cr, tabs_body, acct, s);
            }
            _ => {}
        }
    }
}

/// What a reply must pass to count as a success (else the label it is counted under).
pub type Check = fn(&Reply) -> Result<(), String>;

/// Why no request could be made.
#[derive(Debug)]
pub enum Fail {
    /// Counted as an error with this label.
    Status(String),
    /// Counted as a transport error.
    Transport(String),
}

impl Fail {
    /// Counts it in `s`.
    pub fn record(self, s: &mut Sample) {
        match self {
            Fail::Status(m) => s.error(m),
            Fail::Transport(m) => s.transport(m),
        }
    }
}

/// One Firefox sync session for `acct`, each request timed on its own.
fn session(c: &Client, cr: &Creds, tabs_body: &[u8], acct: &mut Account, s: &mut Sample) {
    let info = timed(
        s,
        ok200,
        c,
        Ok(c.sign(cr, "GET", "/info/collections", &[], b"")),
    );
    timed(
        s,
        ok200,
        c,
        Ok(c.sign(cr, "GET", "/info/configuration", &[], b"")),
    );
    // Before any upload meta/global may legitimately be missing.
    let found = |r: &Reply| if r.status == 404 { Ok(()) } else { ok200(r) };
    if let Some(r) = timed(
        s,
        found,
        c,
        Ok(c.sign(cr, "GET", "/storage/meta/global", &[], b"")),
    ) {
        acct.meta_modified = r.last_modified;
    }
    let newer = acct.last_sync.clone().unwrap_or_else(|| "0".into());
    for rest in [
        format!("/storage/clients?full=1&limit=1000&newer={newer}"),
        format!("/storage/bookmarks?full=1&newer={newer}"),
        format!("/storage/history?full=1&limit=100&sort=index&newer={newer}"),
    ] {
        timed(s, ok200, c, Ok(c.sign(cr, "GET", &rest, &[], b"")));
    }
    let tabs = "/storage/tabs?batch=true&commit=true";
    timed(
        s,
        all_stored,
        c,
        Ok(c.sign(cr, "POST", tabs, &[], tabs_body)),
    );
    acct.sessions += 1;
    // Now and then another device changed the engine list: a conditional meta/global write.
    if acct.sessions.is_multiple_of(10) {
        let since = acct.meta_modified.clone().unwrap_or_else(|| "0".into());
        let body = meta_global_body();
        let h = [("X-If-Unmodified-Since", since.as_str())];
        if let Some(r) = timed(
            s,
            ok200,
            c,
            Ok(c.sign(cr, "PUT", "/storage/meta/global", &h, &body)),
        ) {
            acct.meta_modified = r.last_modified;
        }
    }
    acct.last_sync = info.and_then(|r| r.last_modified);
}

fn meta_global_body() -> Vec<u8> {
    let inner = json!({"syncID": "syncloadSyncID", "storageVersion": 5,
                       "engines": {"bookmarks": {"version": 2, "syncID": "bookmarksID01"}}});
    json!({"payload": inner.to_string()})
        .to_string()
        .into_bytes()
}

/// `/storage/history?full=1&limit=100&sort=S[&offset=O]`.
fn page_query(sort: &str, offset: Option<&str>) -> String {
    let mut q = format!("/storage/{READ_COLLECTION}?full=1&limit={PAGE}&sort={sort}");
    if let Some(o) = offset {
        q.push_str("&offset=");
        q.push_str(&percent_encode(o));
    }
    q
}

/// Percent-encodes everything but unreserved characters (offset tokens are opaque).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `sort` orders of the storage API.
pub const SORTS: [&str; 3] = ["index", "newest", "oldest"];

/// Walks the read collection once per sort order and returns every page's start, so
/// read-page can jump to any page with whatever offset tokens the server uses.
pub fn discover_pages(
    client: &Client,
    cr: &Creds,
    sorts: &[&'static str],
) -> Result<Vec<PageRef>, String> {
    let mut pages = Vec::new();
    for &sort in sorts {
        let mut offset: Option<String> = None;
        for _ in 0..10_000 {
            let r = client
                .signed(cr, "GET", &page_query(sort, offset.as_deref()), &[], b"")
                .map_err(|e| e.to_string())?;
            if r.status != 200 {
                return Err(format!(
                    "uid {}: GET {READ_COLLECTION}: {}",
                    cr.uid, r.status
                ));
            }
            pages.push(PageRef {
                sort,
                offset: offset.clone(),
            });
            offset = r.next_offset;
            if offset.is_none() {
                break;
            }
        }
    }
    Ok(pages)
}

/// Retries a write while the server answers 503 (Python's and syncstorage-rs's 10 ms rule).
fn write_retrying(
    client: &Client,
    cr: &Creds,
    method: &str,
    rest: &str,
    body: &[u8],
) -> Result<(), String> {
    for _ in 0..50 {
        let r = client
            .signed(cr, method, rest, &[], body)
            .map_err(|e| e.to_string())?;
        match r.status {
            200 => return Ok(()),
            503 => std::thread::sleep(Duration::from_millis(20)),
            st => {
                let text = String::from_utf8_lossy(&r.body);
                return Err(format!("uid {}: {method} {rest}: {st} {text}", cr.uid));
            }
        }
    }
    Err(format!("uid {}: {method} {rest}: still 503", cr.uid))
}

/// Fills one account: `n_records` ~1 KB history records, meta/global, crypto/keys, a client
/// record, 20 bookmarks and a tabs record.
pub fn seed_account(
    client: &Client,
    cr: &Creds,
    n_records: usize,
    extra: SeedExtra,
    seed: u64,
) -> Result<(), String> {
    let post = "?batch=true&commit=true";
    let mut start = 0;
    while start < extra.expiring {
        let n = PAGE.min(extra.expiring - start);
        let body = records_ttl("e", start, n, seed, Some(1));
        write_retrying(
            client,
            cr,
            "POST",
            &format!("/storage/{EXPIRING_COLLECTION}{post}"),
            &body,
        )?;
        start += n;
    }
    for i in 0..extra.collections {
        let rest = format!("/storage/{}{post}", extra_collection(i));
        write_retrying(client, cr, "POST", &rest, &records("x", 0, 1, seed))?;
    }
    let mut start = 0;
    while start < n_records {
        let n = PAGE.min(n_records - start);
        let body = records("h", start, n, seed);
        write_retrying(
            client,
            cr,
            "POST",
            &format!("/storage/{READ_COLLECTION}{post}"),
            &body,
        )?;
        start += n;
    }
    write_retrying(
        client,
        cr,
        "PUT",
        "/storage/meta/global",
        &meta_global_body(),
    )?;
    let keys = json!({"payload": payload(400, seed)})
        .to_string()
        .into_bytes();
    write_retrying(client, cr, "PUT", "/storage/crypto/keys", &keys)?;
    write_retrying(
        client,
        cr,
        "POST",
        &format!("/storage/clients{post}"),
        &records("c", 0, 1, seed),
    )?;
    write_retrying(
        client,
        cr,
        "POST",
        &format!("/storage/bookmarks{post}"),
        &records("k", 0, 20, seed),
    )?;
    write_retrying(
        client,
        cr,
        "POST",
        &format!("/storage/tabs{post}"),
        &records("t", 0, 1, seed),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for w in ALL {
            assert_eq!(Workload::parse(w.name()), Some(w));
        }
        assert_eq!(Workload::parse("nope"), None);
    }

    #[test]
    fn record_bodies_are_about_one_kilobyte_each() {
        let body = records("b", 0, PAGE, 7);
        let v: Vec<Value> = serde_json::from_slice(&body).unwrap();
        assert_eq!(v.len(), PAGE);
        let per = body.len() / PAGE;
        assert!((950..1200).contains(&per), "{per}");
        assert_eq!(v[3]["id"], "b00003");
        assert!(v[3].get("ttl").is_none());
    }

    #[test]
    fn expiring_records_carry_their_ttl() {
        let v: Vec<Value> = serde_json::from_slice(&records_ttl("e", 5, 2, 7, Some(1))).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["id"], "e00005");
        assert_eq!(v[1]["ttl"], 1);
        assert_eq!(extra_collection(7), "bench-c0007");
    }

    #[test]
    fn offsets_are_encoded() {
        assert_eq!(
            page_query("newest", Some("12:3+x")),
            "/storage/history?full=1&limit=100&sort=newest&offset=12%3A3%2Bx"
        );
    }
}
