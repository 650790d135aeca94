//! A real Firefox syncing through a real web server to the real binary: two fresh profiles
//! signed in to one account (the fake account server of tests/common/fxa.rs signs their
//! OAuth access tokens; both hold the same sync key), each creating data through Firefox's
//! own APIs and finding the other's after a sync.
//!
//! The combinations, chosen to stay within a few minutes on two cores (each Firefox start
//! and each sync costs seconds; about 20 s a test, one at a time):
//! - `nginx_sqlite_full`: everything. Bookmarks (with folders and a separator), history,
//!   passwords, form history, addresses, credit cards, open tabs and a pref (and B's own
//!   data the other way); deletions; a conflicting
//!   edit of one bookmark; history too large for one download (Firefox fetches the newest
//!   first, in pages that follow `X-Weave-Next-Offset`, and backfills by `older`, so a
//!   server that sorts or pages wrongly loses records); the server killed (SIGKILL) in the
//!   middle of a batch upload and started again after Firefox's next POST failed (the
//!   next sync uploads everything); a reset of the sync keys (new kSync and
//!   keys_changed_at: a new uid, and both profiles upload again).
//! - `apache_fcgid_sqlite`, `nginx_mysql`, `nginx_postgresql`: the short check, bookmarks
//!   and passwords both ways, a deleted login, the paged history and a key reset, through
//!   mod_fcgid and on each server engine (whose SQL sorts and pages on its own).
//! - `nginx_sqlite_node_move`: a site of a tokenserver and two storage nodes
//!   (tests/common/site.rs, as in tests/nodes.rs); `nodes drain` of A moves the account
//!   and Firefox follows it to B, uploading everything again.
//!
//! Seen failing against a server broken on purpose: `sort=newest` answered oldest first,
//! no `X-Weave-Next-Offset`, no `X-Last-Modified` on POST, a key change that kept the uid.
//!
//! Every sync prints one line with Firefox's status and what each engine did (Firefox's own
//! syncs too); a failure prints the warnings and errors of Firefox's sync logs and the
//! server's log.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SecureRandom;
use serde_json::{json, Value};

use common::engines::{Engine, TestDatabase};
use common::firefox::{self, Firefox};
use common::fxa::{self, FakeFxa};
use common::site::Site;
use common::webservers::{flow, Front, Stack, StackSpec};

/// One browser test at a time: two Firefox processes already fill two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The sync key of the account, as FxA hands it to Firefox: the oldsync scoped key.
#[derive(Clone)]
struct SyncKey {
    /// `<keys_changed_at ms>-<base64url of the 16-byte fingerprint>` (the X-KeyID).
    kid: String,
    /// base64url of the 64 bytes of kSync (encryption and HMAC keys).
    k: String,
    keys_changed_at: i64,
}

impl SyncKey {
    fn new() -> SyncKey {
        let mut bytes = [0u8; 80];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .expect("random key");
        let keys_changed_at = (common::now() * 1000.0) as i64;
        SyncKey {
            kid: format!("{keys_changed_at}-{}", URL_SAFE_NO_PAD.encode(&bytes[64..])),
            k: URL_SAFE_NO_PAD.encode(&bytes[..64]),
            keys_changed_at,
        }
    }
}

/// The pieces of one run: the web server and our server, the account server, two browsers.
struct Rig {
    a: Firefox,
    b: Firefox,
    fxa: FakeFxa,
    signer: Arc<fxa::TestKey>,
    /// The prefs that point Firefox at the account server and our token server.
    account_prefs: Value,
    uid: String,
    email: String,
    key: SyncKey,
    label: String,
    began: Instant,
    // Dropped after the browsers: the server outlives its clients.
    server: Server,
    _db: Option<TestDatabase>,
}

impl Rig {
    /// Starts everything, or returns `None` after [`common::skip`] when the browser, the
    /// web server or the database server is missing.
    fn start(front: Front, engine: Engine, extra_ini: &str) -> Option<Rig> {
        if firefox::skip() || flow::skip(front) {
            return None;
        }
        let began = Instant::now();
        let db = match engine {
            Engine::Sqlite => None,
            _ => Some(TestDatabase::create(engine, "firefox")?),
        };
        let sqluri = db
            .as_ref()
            .map(|db| format!("sqluri = {}\n", db.uri))
            .unwrap_or_default();
        let stack = Stack::start(StackSpec {
            front,
            prefixed: false,
            public_url: None,
            extra_ini: format!("{sqluri}{extra_ini}{}", flow::oauth_ini()),
        });
        let token_uri = format!("http://127.0.0.1:{}/token/1.0/sync/1.5", stack.port);
        let label = format!("{front:?}+{}", engine.name());
        Some(Rig::launch(
            Server::Stack(stack),
            &token_uri,
            label,
            db,
            began,
        ))
    }

    /// Starts the account server and both browsers, signed in, syncing through the token
    /// server at `token_uri` of `server`.
    fn launch(
        server: Server,
        token_uri: &str,
        label: String,
        db: Option<TestDatabase>,
        began: Instant,
    ) -> Rig {
        let signer = Arc::new(flow::signing_key());
        let fxa = FakeFxa::start(&[&signer]);
        let uid = fxa::fxa_uid();
        let email = format!("{uid}@example.com");
        let key = SyncKey::new();
        fxa.sign_in(&uid, &email, key.keys_changed_at, signer.clone());
        let account_prefs = json!({
            "identity.sync.tokenserver.uri": token_uri,
            "identity.fxaccounts.auth.uri": format!("{}/v1", fxa.url),
            "identity.fxaccounts.remote.oauth.uri": format!("{}/v1", fxa.url),
            "identity.fxaccounts.remote.profile.uri": format!("{}/v1", fxa.url),
            "identity.fxaccounts.remote.root": format!("{}/", fxa.url),
        });
        let prefs = |name: &str| -> Vec<(&'static str, Value)> {
            let mut prefs: Vec<(&'static str, Value)> = [
                "identity.sync.tokenserver.uri",
                "identity.fxaccounts.auth.uri",
                "identity.fxaccounts.remote.oauth.uri",
                "identity.fxaccounts.remote.profile.uri",
                "identity.fxaccounts.remote.root",
            ]
            .into_iter()
            .map(|k| (k, account_prefs[k].clone()))
            .collect();
            prefs.push(("identity.fxaccounts.autoconfig.uri", json!("")));
            prefs.push((
                "identity.fxaccounts.account.device.name",
                json!(format!("Firefox {name}")),
            ));
            prefs
        };
        let t0 = Instant::now();
        // Side by side: most of a start is Firefox waiting on itself, not on the CPU.
        let (prefs_a, prefs_b) = (prefs("A"), prefs("B"));
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| Firefox::start("A", &prefs_a));
            let b = Firefox::start("B", &prefs_b);
            (a.join().expect("start Firefox A"), b)
        });
        let browsers_up = t0.elapsed();
        let mut rig = Rig {
            a,
            b,
            fxa,
            signer,
            account_prefs,
            uid,
            email,
            key,
            label,
            began,
            server,
            _db: db,
        };
        rig.say(&format!("stack and browsers up (browsers {browsers_up:?})"));
        for which in [Who::A, Who::B] {
            rig.sign_in(which);
            rig.say(&format!("{which:?} signed in"));
        }
        rig
    }

    /// The single server behind its web server (not for a site of nodes).
    fn stack(&mut self) -> &mut Stack {
        match &mut self.server {
            Server::Stack(stack) => stack,
            Server::Site(_) => panic!("{}: not a single-server rig", self.label),
        }
    }

    /// The site of a tokenserver and two nodes (not for a single server).
    fn site(&self) -> &Site {
        match &self.server {
            Server::Site(site) => site,
            Server::Stack(_) => panic!("{}: not a site of nodes", self.label),
        }
    }

    fn ff(&mut self, who: Who) -> &mut Firefox {
        match who {
            Who::A => &mut self.a,
            Who::B => &mut self.b,
        }
    }

    fn say(&self, what: &str) {
        common::announce(&format!(
            "firefox {} [{:>5.1}s] {what}\n",
            self.label,
            self.began.elapsed().as_secs_f64()
        ));
    }

    /// Signs `who` in with the account's current key; waits for Firefox's first sync.
    fn sign_in(&mut self, who: Who) {
        let args = json!({
            "uid": self.uid, "email": self.email, "kid": self.key.kid, "k": self.key.k,
            "prefs": self.account_prefs,
        });
        let syncs = self.call(who, "signIn", args);
        self.report(who, "sign-in", &syncs);
        let other = match who {
            Who::A => Who::B,
            Who::B => Who::A,
        };
        self.call(other, "deviceConnected", json!({}));
    }

    /// Runs a helper that must succeed; on failure, the browser's sync log and the stack's.
    #[track_caller]
    fn call(&mut self, who: Who, name: &str, args: Value) -> Value {
        match self.ff(who).try_call(name, args) {
            Ok(v) => v,
            Err(e) => {
                let log = self.ff(who).sync_log();
                panic!(
                    "{}: Firefox {who:?}: {name}: {e}\n{log}\n{}",
                    self.label,
                    self.server.logs()
                )
            }
        }
    }

    /// Prints one line per sync the browser ran (Firefox's own ones too) and returns them.
    fn report(&self, who: Who, why: &str, syncs: &Value) -> Vec<Value> {
        let syncs = syncs.as_array().cloned().unwrap_or_default();
        for s in &syncs {
            let whose = if s["why"] == "test" {
                why.to_string()
            } else {
                format!("Firefox's own, why={}", s["why"].as_str().unwrap_or("?"))
            };
            self.say(&format!("sync {who:?} ({whose}): {}", summary(s)));
        }
        syncs
    }

    /// One sync, started by the test: its record (see tests/firefox/sync.js `sync`), after
    /// a line for it and for any sync Firefox ran by itself since the last call.
    fn try_sync(&mut self, who: Who, why: &str) -> Value {
        let syncs = self.call(who, "sync", json!({}));
        let syncs = self.report(who, why, &syncs);
        syncs
            .iter()
            .rev()
            .find(|s| s["why"] == "test")
            .cloned()
            .unwrap_or_else(|| panic!("{}: Firefox {who:?} did not sync: {syncs:?}", self.label))
    }

    /// One sync, which must succeed in every engine.
    #[track_caller]
    fn sync(&mut self, who: Who, why: &str) -> Value {
        let r = self.try_sync(who, why);
        self.check(who, why, &r);
        r
    }

    /// Panics, with Firefox's sync log and the server's, unless the sync `r` succeeded in
    /// every engine.
    #[track_caller]
    fn check(&mut self, who: Who, why: &str, r: &Value) {
        let failed_engines: Vec<String> = r["engines"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, e)| {
                e.get("error").is_some()
                    || e["failed"].as_u64().unwrap_or(0) > 0
                    || e["uploadFailed"].as_u64().unwrap_or(0) > 0
            })
            .map(|(n, e)| format!("{n}: {e}"))
            .collect();
        if r["sync"] != "success.sync"
            || r["service"] != "success.status_ok"
            || r["outcome"] != "finish"
            || !failed_engines.is_empty()
        {
            let log = self.ff(who).sync_log();
            panic!(
                "{}: sync of Firefox {who:?} ({why}) failed: {r}\nengines: {failed_engines:?}\n{log}\n{}",
                self.label,
                self.server.logs()
            );
        }
    }

    /// Syncs `from`, then `to`: what `from` changed is on `to` afterwards.
    fn sync_over(&mut self, from: Who, to: Who, why: &str) {
        self.sync(from, why);
        self.sync(to, why);
    }

    /// A new sync key for the account, as after a password reset: both browsers are signed
    /// out and in again with it; the token server must hand out a new uid, and everything
    /// each browser holds reaches the other again through the new, empty storage.
    fn reset_keys(&mut self, check: &dyn Fn(&mut Rig)) {
        let before = self.sync(Who::A, "before the key reset");
        let old_uid = before["uid"].clone();
        self.key = SyncKey::new();
        self.fxa.sign_in(
            &self.uid,
            &self.email,
            self.key.keys_changed_at,
            self.signer.clone(),
        );
        for who in [Who::A, Who::B] {
            self.call(who, "signOut", json!({}));
            self.sign_in(who);
        }
        // The uid first: with the old uid, the sync fails (crypto/keys from the old key)
        // and that failure would hide the cause.
        let a = self.try_sync(Who::A, "first with the new keys");
        assert!(
            a["uid"].is_u64() && a["uid"] != old_uid,
            "{}: the key reset kept uid {old_uid} (now {}): the token server must assign a \
             new uid when keys_changed_at and the key fingerprint change",
            self.label,
            a["uid"]
        );
        self.check(Who::A, "first with the new keys", &a);
        let b = self.sync(Who::B, "first with the new keys");
        assert_eq!(a["uid"], b["uid"], "{}", self.label);
        // Both re-uploaded; one more round and they agree.
        self.sync_over(Who::A, Who::B, "after the key reset");
        check(self);
    }
}

/// Where the browsers sync: one server behind its web server, or a site of a tokenserver
/// and two storage nodes (tests/common/site.rs).
enum Server {
    Stack(Stack),
    Site(Box<Site>),
}

impl Server {
    fn logs(&self) -> String {
        match self {
            Server::Stack(stack) => stack.logs(),
            Server::Site(site) => site.logs(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    A,
    B,
}

/// One line per sync: Firefox's status, the uid, what each engine did.
fn summary(r: &Value) -> String {
    let mut out = format!(
        "{:.1}s {} / {} uid {}",
        r["seconds"].as_f64().unwrap_or(0.0),
        r["sync"].as_str().unwrap_or("?"),
        r["outcome"].as_str().unwrap_or("?"),
        r["uid"]
    );
    for (name, e) in r["engines"].as_object().into_iter().flatten() {
        let n = |k: &str| e[k].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "; {name} in {} out {}",
            n("applied") + n("reconciled"),
            n("sent")
        ));
        if n("failed") + n("uploadFailed") > 0 {
            out.push_str(&format!(" FAILED {} up {}", n("failed"), n("uploadFailed")));
        }
        if let Some(err) = e.get("error") {
            out.push_str(&format!(" ERROR {err}"));
        }
    }
    out
}

/// Bookmarks uploaded while the server restarts: with `max_post_records = 10`, forty
/// POSTs of one batch.
const BULK: usize = 400;

/// The folder each test's bookmarks live in (a GUID of its own: Sync keeps GUIDs).
const FOLDER: &str = "synctestfold";

fn first_bookmarks(page: &dyn Fn(&str) -> String) -> Value {
    json!([{
        "guid": FOLDER, "title": "Sync test",
        "children": [
            {"guid": "bmAAAAAAAAA1", "title": "First", "url": page("first")},
            {"guid": "foldAAAAAAA1", "title": "Inner folder", "children": [
                {"guid": "bmAAAAAAAAA2", "title": "Inner one", "url": page("inner1")},
                {"guid": "bmAAAAAAAAA3", "title": "Inner two ✓", "url": page("inner2")},
            ]},
            {"guid": "sepAAAAAAAA1", "separator": true},
            {"guid": "bmAAAAAAAAA4", "title": "Last", "url": page("last")},
        ],
    }])
}

fn login(origin: &str, user: &str, password: &str) -> Value {
    json!({
        "origin": origin, "formActionOrigin": origin, "username": user, "password": password,
        "usernameField": "user", "passwordField": "pass",
    })
}

/// Both browsers' view of the synced data is the same, and `expect` holds on it.
#[track_caller]
fn same_view(rig: &mut Rig, what: &str, name: &str, args: Value) -> Value {
    let a = rig.call(Who::A, name, args.clone());
    let b = rig.call(Who::B, name, args);
    assert_eq!(
        a,
        b,
        "{}: {what}: A and B differ\nA: {a:#}\nB: {b:#}\n{}\n{}",
        rig.label,
        rig.a.sync_log(),
        rig.b.sync_log()
    );
    a
}

fn titles(node: &Value, out: &mut Vec<String>) {
    if let Some(t) = node["title"].as_str() {
        out.push(t.to_string());
    }
    for c in node["children"].as_array().into_iter().flatten() {
        titles(c, out);
    }
}

/// History larger than one download: Firefox fetches the newest records first
/// (`sort=newest&limit=`, in pages that follow `X-Weave-Next-Offset`) and backfills the
/// older ones by `older=`. B's limits are lowered so that a few records stand for the
/// thousands of a real history.
fn paged_history(rig: &mut Rig, page: &dyn Fn(&str) -> String) {
    let ten_hours_ago = (common::now() * 1000.0) as i64 - 36_000_000;
    for i in 0..3 {
        let url = page(&format!("paged{i}"));
        rig.call(
            Who::A,
            "addVisits",
            json!({"pages": [{"url": url, "title": format!("Paged {i}"), "visits": [ten_hours_ago + i * 60_000]}]}),
        );
        // One sync each: records of one upload share their modified time.
        rig.sync(Who::A, "history in steps");
    }
    rig.call(
        Who::B,
        "setEngineLimits",
        json!({"engine": "history", "downloadLimit": 2, "downloadBatchSize": 1}),
    );
    let urls: Vec<String> = (0..3).map(|i| page(&format!("paged{i}"))).collect();
    for round in 0..3 {
        rig.sync(Who::B, "history backfill");
        let h = rig.call(Who::B, "history", json!({"urls": urls}));
        if urls.iter().all(|u| !h[u].is_null()) {
            break;
        }
        assert!(
            round < 2,
            "{}: B never got all of A's history (the server's sort=newest order, \
             X-Weave-Next-Offset paging, or older=): {h:#}",
            rig.label
        );
    }
    same_view(rig, "paged history", "history", json!({"urls": urls}));
}

/// The short check: bookmarks and passwords both ways, a deletion, paged history, a key
/// reset.
fn short_check(front: Front, engine: Engine) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut rig) = Rig::start(front, engine, "") else {
        return;
    };
    let base = rig.fxa.url.clone();
    let page = |n: &str| format!("{base}/page/{n}");
    rig.call(
        Who::A,
        "insertBookmarks",
        json!({"children": first_bookmarks(&page)}),
    );
    let login_a = rig.call(
        Who::A,
        "addLogin",
        login("https://a.example", "alice", "pässword A"),
    );
    rig.sync_over(Who::A, Who::B, "A's data");
    let want = rig.call(Who::A, "bookmarkTree", json!({"guid": FOLDER}));
    assert_eq!(want["children"].as_array().map(Vec::len), Some(4), "{want}");
    same_view(
        &mut rig,
        "bookmarks A→B",
        "bookmarkTree",
        json!({"guid": FOLDER}),
    );
    same_view(&mut rig, "logins A→B", "logins", json!({}));

    rig.call(
        Who::B,
        "insertBookmarks",
        json!({"parent": FOLDER, "children": [{"guid": "bmBBBBBBBBB1", "title": "From B", "url": page("b1")}]}),
    );
    rig.call(Who::B, "addLogin", login("https://b.example", "bob", "B's"));
    rig.call(Who::B, "removeLogin", json!({"guid": login_a}));
    rig.sync_over(Who::B, Who::A, "B's data");
    let t = same_view(
        &mut rig,
        "bookmarks B→A",
        "bookmarkTree",
        json!({"guid": FOLDER}),
    );
    assert_eq!(t["children"].as_array().map(Vec::len), Some(5), "{t}");
    let logins = same_view(&mut rig, "logins B→A", "logins", json!({}));
    assert_eq!(logins.as_array().map(Vec::len), Some(1), "{logins}");
    assert_eq!(logins[0]["username"], "bob");
    paged_history(&mut rig, &page);

    rig.reset_keys(&|rig| {
        let t = same_view(
            rig,
            "bookmarks after the key reset",
            "bookmarkTree",
            json!({"guid": FOLDER}),
        );
        assert_eq!(t["children"].as_array().map(Vec::len), Some(5), "{t}");
        same_view(rig, "logins after the key reset", "logins", json!({}));
    });
    rig.say(&format!("short check passed in {:?}", rig.began.elapsed()));
}

#[test]
fn nginx_sqlite_full() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Small POSTs: the bulk upload below spans many requests, so the restart lands in the
    // middle of a batch.
    let ini = "[storage]\nmax_post_records = 10\n";
    let Some(mut rig) = Rig::start(Front::Nginx, Engine::Sqlite, ini) else {
        return;
    };
    let base = rig.fxa.url.clone();
    let page = |n: &str| format!("{base}/page/{n}");
    let now_ms = (common::now() * 1000.0) as i64;
    let hour = 3_600_000;

    // ---- A → B: every engine.
    rig.call(
        Who::A,
        "insertBookmarks",
        json!({"children": first_bookmarks(&page)}),
    );
    let history_a = json!([
        {"url": page("visited1"), "title": "Visited one", "visits": [now_ms - 3 * hour, now_ms - hour]},
        {"url": page("visited2"), "title": "Visited two", "visits": [now_ms - 2 * hour]},
    ]);
    rig.call(Who::A, "addVisits", json!({"pages": history_a}));
    let login_a1 = rig.call(
        Who::A,
        "addLogin",
        login("https://a.example", "alice", "pässword A"),
    );
    rig.call(
        Who::A,
        "addLogin",
        json!({"origin": "https://realm.example", "httpRealm": "The realm", "username": "carol", "password": "c@rol"}),
    );
    rig.call(
        Who::A,
        "addFormEntries",
        json!({"entries": [{"fieldname": "synctest", "value": "from A"}]}),
    );
    let home_a = page("homeA");
    rig.call(
        Who::A,
        "setPref",
        json!({"name": "browser.startup.homepage", "value": home_a}),
    );
    let address = json!({
        "given-name": "Ada", "family-name": "Lovelace", "street-address": "12 St James's Square",
        "address-level2": "London", "postal-code": "SW1Y 4JH", "country": "GB",
        "email": "ada@example.com", "tel": "+442071234567",
    });
    rig.call(
        Who::A,
        "addAutofill",
        json!({"kind": "addresses", "record": address}),
    );
    let card = json!({
        "cc-name": "Ada Lovelace", "cc-number": "4111111111111111", "cc-exp-month": 12,
        "cc-exp-year": 2035,
    });
    rig.call(
        Who::A,
        "addAutofill",
        json!({"kind": "creditCards", "record": card}),
    );
    rig.call(
        Who::A,
        "openTabs",
        json!({"urls": [page("tabA1"), page("tabA2")]}),
    );
    rig.sync_over(Who::A, Who::B, "A's data");

    let t = same_view(
        &mut rig,
        "bookmarks A→B",
        "bookmarkTree",
        json!({"guid": FOLDER}),
    );
    assert_eq!(
        t["children"][1]["children"].as_array().map(Vec::len),
        Some(2),
        "{t}"
    );
    let urls: Vec<String> = ["visited1", "visited2"].iter().map(|n| page(n)).collect();
    let h = same_view(&mut rig, "history A→B", "history", json!({"urls": urls}));
    assert_eq!(
        h[&urls[0]]["visits"].as_array().map(Vec::len),
        Some(2),
        "{h}"
    );
    assert_eq!(h[&urls[1]]["title"], "Visited two", "{h}");
    let l = same_view(&mut rig, "logins A→B", "logins", json!({}));
    assert_eq!(l.as_array().map(Vec::len), Some(2), "{l}");
    let f = same_view(
        &mut rig,
        "form history A→B",
        "formEntries",
        json!({"fieldname": "synctest"}),
    );
    assert_eq!(f, json!(["from A"]));
    let p = same_view(
        &mut rig,
        "pref A→B",
        "getPref",
        json!({"name": "browser.startup.homepage"}),
    );
    assert_eq!(p, json!(home_a));
    let a = same_view(
        &mut rig,
        "addresses A→B",
        "autofill",
        json!({"kind": "addresses", "fields": ["guid", "given-name", "family-name",
            "street-address", "address-level2", "postal-code", "country", "email", "tel"]}),
    );
    assert_eq!(a[0]["street-address"], address["street-address"], "{a}");
    let c = same_view(
        &mut rig,
        "credit cards A→B",
        "autofill",
        json!({"kind": "creditCards", "fields": ["guid", "cc-name", "cc-number",
            "cc-exp-month", "cc-exp-year"]}),
    );
    // Shown masked: the stored number is encrypted with each profile's own OS key.
    assert!(
        c[0]["cc-number"]
            .as_str()
            .is_some_and(|n| n.ends_with("1111") && n.chars().count() == 16),
        "{c}"
    );
    assert_eq!(c[0]["cc-name"], "Ada Lovelace", "{c}");
    let device_a = rig.call(Who::A, "localClient", json!({}))["fxaDeviceId"].clone();
    let device_b = rig.call(Who::B, "localClient", json!({}))["fxaDeviceId"].clone();
    let tabs = rig.call(Who::B, "remoteTabs", json!({}));
    let tab_urls = tab_urls_of(&tabs, &device_a);
    assert!(
        tab_urls.contains(&page("tabA1")) && tab_urls.contains(&page("tabA2")),
        "B does not see A's tabs: {tabs:#}"
    );

    // ---- B → A: B adds to everything, changes the pref, deletes one of A's logins.
    rig.call(
        Who::B,
        "insertBookmarks",
        json!({"parent": FOLDER, "children": [
            {"guid": "foldBBBBBBB1", "title": "B's folder", "children": [
                {"guid": "bmBBBBBBBBB1", "title": "From B", "url": page("b1")},
            ]},
        ]}),
    );
    rig.call(
        Who::B,
        "addVisits",
        json!({"pages": [{"url": page("visitedB"), "title": "Visited by B", "visits": [now_ms - hour / 2]}]}),
    );
    rig.call(Who::B, "addLogin", login("https://b.example", "bob", "B's"));
    rig.call(Who::B, "removeLogin", json!({"guid": login_a1}));
    rig.call(
        Who::B,
        "addFormEntries",
        json!({"entries": [{"fieldname": "synctest", "value": "from B"}]}),
    );
    let home_b = page("homeB");
    rig.call(
        Who::B,
        "setPref",
        json!({"name": "browser.startup.homepage", "value": home_b}),
    );
    rig.call(Who::B, "openTabs", json!({"urls": [page("tabB1")]}));
    rig.sync_over(Who::B, Who::A, "B's data");

    let t = same_view(
        &mut rig,
        "bookmarks B→A",
        "bookmarkTree",
        json!({"guid": FOLDER}),
    );
    assert_eq!(t["children"].as_array().map(Vec::len), Some(5), "{t}");
    let urls: Vec<String> = ["visited1", "visited2", "visitedB"]
        .iter()
        .map(|n| page(n))
        .collect();
    let h = same_view(&mut rig, "history B→A", "history", json!({"urls": urls}));
    assert_eq!(h[&urls[2]]["title"], "Visited by B", "{h}");
    let l = same_view(&mut rig, "logins B→A", "logins", json!({}));
    let users: Vec<&str> = l
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["username"].as_str())
        .collect();
    let mut users = users;
    users.sort();
    assert_eq!(users, ["bob", "carol"], "{l}");
    let f = same_view(
        &mut rig,
        "form history B→A",
        "formEntries",
        json!({"fieldname": "synctest"}),
    );
    assert_eq!(f, json!(["from A", "from B"]));
    let p = same_view(
        &mut rig,
        "pref B→A",
        "getPref",
        json!({"name": "browser.startup.homepage"}),
    );
    assert_eq!(p, json!(home_b));
    let tabs = rig.call(Who::A, "remoteTabs", json!({}));
    assert!(
        tab_urls_of(&tabs, &device_b).contains(&page("tabB1")),
        "A does not see B's tab: {tabs:#}"
    );

    // ---- Deletions in A disappear in B.
    rig.call(Who::A, "removeBookmark", json!({"guid": "foldAAAAAAA1"}));
    rig.call(Who::A, "removeBookmark", json!({"guid": "bmAAAAAAAAA4"}));
    rig.call(Who::A, "removeHistory", json!({"url": page("visited2")}));
    rig.sync_over(Who::A, Who::B, "deletions");
    let t = same_view(
        &mut rig,
        "bookmarks after deletions",
        "bookmarkTree",
        json!({"guid": FOLDER}),
    );
    let mut names = Vec::new();
    titles(&t, &mut names);
    assert!(
        !names
            .iter()
            .any(|n| n == "Inner folder" || n == "Inner one" || n == "Last"),
        "deleted bookmarks are back: {t:#}"
    );
    let h = rig.call(Who::B, "history", json!({"urls": [page("visited2")]}));
    assert_eq!(
        h[page("visited2")],
        Value::Null,
        "deleted history is back: {h}"
    );

    // ---- Both edit one bookmark: after a round, both have the same tree.
    rig.call(
        Who::A,
        "updateBookmark",
        json!({"guid": "bmAAAAAAAAA1", "title": "Edited in A"}),
    );
    rig.call(
        Who::B,
        "updateBookmark",
        json!({"guid": "bmAAAAAAAAA1", "title": "Edited in B", "url": page("firstB")}),
    );
    rig.sync(Who::A, "conflict: A first");
    rig.sync(Who::B, "conflict: B merges");
    rig.sync(Who::A, "conflict: A takes the merge");
    let one = same_view(
        &mut rig,
        "the conflicting bookmark",
        "bookmark",
        json!({"guid": "bmAAAAAAAAA1"}),
    );
    assert!(
        one["title"] == "Edited in A" || one["title"] == "Edited in B",
        "{one}"
    );
    same_view(
        &mut rig,
        "bookmarks after the conflict",
        "bookmarkTree",
        json!({"guid": FOLDER}),
    );

    paged_history(&mut rig, &page);

    // ---- The server killed in the middle of A's upload, started again once A has seen it
    // gone: A's sync fails, the next one must bring every bookmark over.
    rig.call(
        Who::A,
        "manyBookmarks",
        json!({"folder": "bulkfolder01", "count": BULK}),
    );
    let uid = rig.sync(Who::B, "before the restart")["uid"].clone();
    let marker = format!("POST /storage/1.5/{uid}/storage/bookmarks?batch=");
    let seen_before = rig.stack().access_log().matches(&marker).count();
    rig.call(Who::A, "startSync", json!({}));
    common::wait_until(
        "A's first bookmark batch POST",
        std::time::Duration::from_secs(60),
        || rig.stack().access_log().matches(&marker).count() > seen_before,
    );
    rig.stack().kill_backend();
    let log = rig.stack().access_log();
    let since: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&marker))
        .skip(seen_before)
        .collect();
    assert!(
        !since.iter().any(|l| l.contains("commit=true")),
        "the server died after A's upload was committed; it must die in the middle: {since:#?}"
    );
    let posts_before = since.len();
    // Down until A's next POST of the batch has failed, then up again.
    common::wait_until(
        "nginx to answer A's next batch POST with 502",
        std::time::Duration::from_secs(60),
        || {
            rig.stack()
                .access_log()
                .lines()
                .filter(|l| l.contains(&marker))
                .skip(seen_before)
                .any(|l| l.contains("\" 502 "))
        },
    );
    rig.stack().restart_backend();
    let interrupted = rig.call(Who::A, "waitSyncIdle", json!({}));
    rig.report(Who::A, "interrupted by the crash", &interrupted);
    assert!(
        interrupted
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["why"] == "test"
                && (s["service"] != "success.status_ok"
                    || s["engines"]["bookmarks"].get("error").is_some()))),
        "A's sync did not notice the server going away: {interrupted}"
    );
    rig.say(&format!(
        "server killed after {posts_before} of A's bookmark batch POSTs, started again \
         after a 502"
    ));
    rig.sync_over(Who::A, Who::B, "after the restart");
    let bulk = same_view(
        &mut rig,
        "bulk bookmarks after the restart",
        "bookmarkTree",
        json!({"guid": "bulkfolder01"}),
    );
    assert_eq!(
        bulk["children"].as_array().map(Vec::len),
        Some(BULK),
        "{bulk:#}"
    );
    same_view(
        &mut rig,
        "bookmarks after the restart",
        "bookmarkTree",
        json!({"guid": FOLDER}),
    );

    let tree_before = same_view(
        &mut rig,
        "bookmarks before the key reset",
        "bookmarkTree",
        json!({"guid": FOLDER}),
    );
    // ---- A new sync key: new uid, everything uploaded again and still the same.
    let urls: Vec<String> = ["visited1", "visitedB", "paged0"]
        .iter()
        .map(|n| page(n))
        .collect();
    rig.reset_keys(&|rig| {
        let t = same_view(
            rig,
            "bookmarks after the key reset",
            "bookmarkTree",
            json!({"guid": FOLDER}),
        );
        assert_eq!(t, tree_before, "the bookmarks changed in the key reset");
        let bulk = same_view(
            rig,
            "bulk after the key reset",
            "bookmarkTree",
            json!({"guid": "bulkfolder01"}),
        );
        assert_eq!(bulk["children"].as_array().map(Vec::len), Some(BULK));
        let h = same_view(
            rig,
            "history after the key reset",
            "history",
            json!({"urls": urls}),
        );
        assert!(urls.iter().all(|u| !h[u].is_null()), "{h:#}");
        same_view(rig, "logins after the key reset", "logins", json!({}));
        for kind in ["addresses", "creditCards"] {
            let got = same_view(
                rig,
                "autofill after the key reset",
                "autofill",
                json!({"kind": kind, "fields": ["guid", "cc-name", "given-name"]}),
            );
            assert_eq!(got.as_array().map(Vec::len), Some(1), "{kind}: {got}");
        }
        same_view(
            rig,
            "form history after the key reset",
            "formEntries",
            json!({"fieldname": "synctest"}),
        );
    });
    rig.say(&format!(
        "full round trip passed in {:?}",
        rig.began.elapsed()
    ));
}

/// How long the site's tokenserver makes tokens last, in seconds: short, so that Firefox
/// asks again soon after the drain.
const NODE_MOVE_TOKEN_SECONDS: u64 = 5;

/// The bookmark records (`bso` ids) of `uid` in a node's database.
fn bookmark_ids(db: &common::site::Db, uid: &Value) -> Vec<String> {
    db.rows(&format!(
        "SELECT b.id FROM bso b JOIN collections c ON c.collectionid = b.collection \
         WHERE c.name = 'bookmarks' AND b.userid = {uid} ORDER BY b.id"
    ))
    .into_iter()
    .map(|r| r[0].clone())
    .collect()
}

/// A node move as Mozilla's operators make one: a site of a tokenserver and two storage
/// nodes on SQLite, each behind its own nginx (tests/common/site.rs, as tests/nodes.rs);
/// Firefox syncs bookmarks to node A, `nodes drain A` moves the account, and once its
/// token has expired (5 s) Firefox's next token names a new uid on node B: it must follow
/// the new `api_endpoint`, find B empty and upload everything again; the other profile
/// then reads the bookmarks from B.
///
/// Fails if Firefox kept syncing to A (B's database holds no bookmarks of the new uid), if
/// the tokenserver kept the uid, or if B's profile does not get A's tree from node B.
#[test]
fn nginx_sqlite_node_move() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    if firefox::skip() || flow::skip(Front::Nginx) {
        return;
    }
    let began = Instant::now();
    let site = Site::start(Engine::Sqlite, NODE_MOVE_TOKEN_SECONDS, 10, 10);
    let (node_a, node_b) = (site.a.url(), site.b.url());
    let token_uri = format!("{}/token/1.0/sync/1.5", site.ts.url());
    let label = "Nginx+sqlite nodes".to_string();
    let mut rig = Rig::launch(Server::Site(Box::new(site)), &token_uri, label, None, began);
    let base = rig.fxa.url.clone();
    let page = |n: &str| format!("{base}/page/{n}");
    rig.call(
        Who::A,
        "insertBookmarks",
        json!({"children": first_bookmarks(&page)}),
    );
    let before = rig.sync(Who::A, "bookmarks to node A");
    let old_uid = before["uid"].clone();
    let want = rig.call(Who::A, "bookmarkTree", json!({"guid": FOLDER}));
    assert_eq!(want["children"].as_array().map(Vec::len), Some(4), "{want}");
    let on_a = bookmark_ids(&rig.site().a_db, &old_uid);
    assert!(
        on_a.iter().any(|id| id == FOLDER) && on_a.iter().any(|id| id == "bmAAAAAAAAA4"),
        "node A's database does not hold A's bookmarks under uid {old_uid}: {on_a:?}"
    );
    assert!(
        bookmark_ids(&rig.site().b_db, &old_uid).is_empty(),
        "node B got bookmarks before the move"
    );

    let out = rig.site().nodes(&["drain", &node_a, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["drained"], json!(node_a), "{out}");
    rig.say(&format!(
        "node A drained: {out}; waiting for the tokens ({NODE_MOVE_TOKEN_SECONDS} s) to expire"
    ));
    std::thread::sleep(std::time::Duration::from_secs(NODE_MOVE_TOKEN_SECONDS + 1));

    // Firefox still holds its expired token: node A refuses it (401), the sync fails, and
    // Firefox drops the token; the next token names the new uid on B, where Firefox finds
    // no meta/global, wipes, and uploads everything (Firefox's own follow-up sync, then
    // ours).
    rig.try_sync(Who::A, "first after the drain");
    // The uid first: a sync that stayed on A would hide the cause behind its status.
    let moved = rig.try_sync(Who::A, "after the node move");
    let new_uid = moved["uid"].clone();
    assert!(
        new_uid.is_u64() && new_uid != old_uid,
        "{}: Firefox still syncs as uid {old_uid} after node A was drained (now {new_uid})",
        rig.label
    );
    rig.check(Who::A, "after the node move", &moved);
    let on_b = bookmark_ids(&rig.site().b_db, &new_uid);
    let mut ids_a = on_a.clone();
    ids_a.retain(|id| on_b.contains(id));
    assert_eq!(
        ids_a, on_a,
        "node B ({node_b}) does not hold every bookmark record of A under the new uid \
         {new_uid}: {on_b:?}"
    );
    assert!(
        bookmark_ids(&rig.site().a_db, &new_uid).is_empty(),
        "the new uid {new_uid} wrote to node A"
    );
    rig.say(&format!(
        "uid {old_uid} on node A became {new_uid} on node B; B holds {} bookmark records",
        on_b.len()
    ));

    // The other profile (which never saw them: it signed in before they were made)
    // follows too (refused by A, then on to B) and reads them from B.
    rig.try_sync(Who::B, "first after the drain");
    let b = rig.sync(Who::B, "after the node move");
    assert_eq!(b["uid"], new_uid, "{}", rig.label);
    let t = same_view(
        &mut rig,
        "bookmarks after the move",
        "bookmarkTree",
        json!({"guid": FOLDER}),
    );
    assert_eq!(t, want, "the bookmarks changed in the move");
    rig.say(&format!("node move passed in {:?}", rig.began.elapsed()));
}

/// The URLs of the tabs that the record of the device with FxA id `device` lists.
fn tab_urls_of(clients: &Value, device: &Value) -> Vec<String> {
    clients
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["fxaDeviceId"] == *device)
        .flat_map(|c| c["tabs"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["url"].as_str().map(String::from))
        .collect()
}

#[test]
fn apache_fcgid_sqlite() {
    short_check(Front::ApacheFcgid, Engine::Sqlite);
}

#[test]
fn nginx_mysql() {
    short_check(Front::Nginx, Engine::Mysql);
}

#[test]
fn nginx_postgresql() {
    short_check(Front::Nginx, Engine::Postgresql);
}
