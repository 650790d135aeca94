//! A real Firefox (Debian's `firefox-esr`), headless, on a throwaway profile, driven over
//! Marionette from chrome-privileged script (tests/firefox/sync.js): signed in to an account
//! of the fake account server ([`super::fxa::FakeFxa`]), syncing through a real web server
//! to the real binary.
//!
//! Marionette's wire protocol is small (length-prefixed JSON), so the client is here rather
//! than a Python driver: the test keeps one process tree and one language.
//!
//! Firefox runs in a process group of its own (its content processes included), which
//! [`Firefox`]'s drop kills whole.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::TempDir;

/// The chrome-privileged helpers every script call runs with (`api.<name>(args)`).
const HELPERS: &str = include_str!("../firefox/sync.js");

/// Where Debian's package puts the browser, when it is not on `PATH`.
const DEBIAN_BINARY: &str = "/usr/lib/firefox-esr/firefox-esr";

/// The browser binary: `$SYNCSERVER_TEST_FIREFOX` when set (a path that does not exist hides
/// an installed one), else `firefox-esr` on `PATH`, else Debian's.
pub fn binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SYNCSERVER_TEST_FIREFOX") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("firefox-esr"))
        .chain([PathBuf::from(DEBIAN_BINARY)])
        .find(|p| p.is_file())
}

/// Whether the browser is missing: then [`super::skip`] has failed the test, or reported it
/// skipped when `SYNCSERVER_TEST_ALLOW_SKIP` names `firefox`.
pub fn skip() -> bool {
    if binary().is_some() {
        return false;
    }
    super::skip(
        super::Prereq::Firefox,
        "firefox-esr is not installed (or SYNCSERVER_TEST_FIREFOX names no file)",
    );
    true
}

/// Whether to show the browser windows (`SYNCSERVER_TEST_FIREFOX_VISIBLE=1`, for debugging;
/// needs a display: `xvfb-run -a` or a desktop).
fn visible() -> bool {
    std::env::var("SYNCSERVER_TEST_FIREFOX_VISIBLE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A running Firefox on its own profile, with a Marionette session in chrome context.
pub struct Firefox {
    /// A short name for messages ("A", "B").
    pub name: String,
    child: Option<Child>,
    conn: Option<Marionette>,
    profile: TempDir,
}

impl Firefox {
    /// Starts Firefox on a fresh profile whose user.js holds `prefs` (after the test
    /// defaults that keep it off the network and quiet) and opens a chrome session.
    pub fn start(name: &str, prefs: &[(&str, Value)]) -> Firefox {
        let profile = TempDir::new();
        let mut user_js = String::new();
        for (k, v) in quiet_prefs()
            .into_iter()
            .chain(prefs.iter().map(|(k, v)| (*k, v.clone())))
        {
            user_js.push_str(&format!("user_pref({}, {v});\n", json!(k)));
        }
        std::fs::write(profile.join("user.js"), user_js).expect("write user.js");
        let bin = binary().expect("firefox-esr");
        let log = std::fs::File::create(profile.join("firefox.log")).expect("firefox log");
        let mut cmd = Command::new(&bin);
        cmd.args(["--marionette", "--no-remote", "-remote-allow-system-access"])
            .arg("--profile")
            .arg(&profile.0)
            // Its content processes go with it: one group, killed whole on drop.
            .process_group(0)
            .env("MOZ_CRASHREPORTER_DISABLE", "1")
            .env_remove("MOZ_HEADLESS")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup log")))
            .stderr(Stdio::from(log));
        if !visible() {
            cmd.arg("--headless");
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut ff = Firefox {
            name: name.to_string(),
            child: Some(child),
            conn: None,
            profile,
        };
        let t0 = Instant::now();
        let port = ff.wait_port();
        eprintln!("Firefox {name}: Marionette port after {:?}", t0.elapsed());
        let mut conn = Marionette::connect(port)
            .unwrap_or_else(|e| panic!("Firefox {name}: Marionette: {e}\n{}", ff.log_tail()));
        for (cmd, params) in [
            ("WebDriver:NewSession", json!({})),
            ("Marionette:SetContext", json!({"value": "chrome"})),
            // A sync of the whole profile may take a while on a loaded machine.
            ("WebDriver:SetTimeouts", json!({"script": 240_000})),
        ] {
            if let Err(e) = conn.command(cmd, params) {
                panic!("Firefox {name}: {cmd}: {e}\n{}", ff.log_tail());
            }
        }
        eprintln!("Firefox {name}: session after {:?}", t0.elapsed());
        ff.conn = Some(conn);
        ff
    }

    /// Waits for Marionette's port file in the profile (`marionette.port` 0: a free one).
    fn wait_port(&mut self) -> u16 {
        let file = self.profile.join("MarionetteActivePort");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(port) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return port;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "Firefox {} exited ({status}) before Marionette listened:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "Firefox {}: no Marionette port after 90 s:\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The profile directory.
    pub fn profile(&self) -> &Path {
        &self.profile.0
    }

    /// Runs `api.<name>(args)` from tests/firefox/sync.js in chrome context and returns what
    /// it resolved to; an exception comes back as `Err` with its message and stack.
    pub fn try_call(&mut self, name: &str, args: Value) -> Result<Value, String> {
        // The helpers run in a system sandbox of their own without Xray wrappers:
        // through Marionette's, the plain objects of Firefox's modules (Places' results,
        // Sync's notifications) show none of their properties.
        let script = "const [src, name, args, done] = arguments;\n\
             const sb = Cu.Sandbox(Services.scriptSecurityManager.getSystemPrincipal(), {\n\
               wantXrays: false, sandboxPrototype: window, wantComponents: true,\n\
               wantGlobalProperties: [\"ChromeUtils\"],\n\
             });\n\
             Cu.evalInSandbox(src, sb, \"latest\", \"resource://syncserver-test/sync.js\", 1);\n\
             sb.callJson(name, args).then(\n\
               v => done({ok: v}),\n\
               e => done({err: String(e) + \"\\n\" + (e && e.stack || \"\")}));\n";
        let conn = self.conn.as_mut().expect("Marionette session");
        let reply = conn
            .command(
                "WebDriver:ExecuteAsyncScript",
                json!({"script": script, "args": [HELPERS, name, args.to_string()]}),
            )
            .map_err(|e| format!("Marionette: {e}"))?;
        let value = &reply["value"];
        match (value.get("ok"), value.get("err")) {
            // JSON text: Marionette's own serializer drops what it cannot see through
            // the wrappers of objects from other compartments (Places' arrays).
            (Some(ok), _) => serde_json::from_str(ok.as_str().unwrap_or("null"))
                .map_err(|e| format!("bad JSON from the browser: {e}: {ok}")),
            (_, Some(err)) => Err(err.as_str().unwrap_or_default().to_string()),
            _ => Err(format!("unexpected reply {reply}")),
        }
    }

    /// [`Firefox::try_call`] that must succeed.
    #[track_caller]
    pub fn call(&mut self, name: &str, args: Value) -> Value {
        match self.try_call(name, args) {
            Ok(v) => v,
            Err(e) => panic!("Firefox {}: {name}: {e}\n{}", self.name, self.sync_log()),
        }
    }

    /// The last lines of Firefox's own stdout/stderr.
    pub fn log_tail(&self) -> String {
        tail(&self.profile.join("firefox.log"), 30)
    }

    /// The sync log lines that matter for a failure: every warning and error of the sync
    /// logs Firefox wrote (`<profile>/weave/logs`, one file per sync), and the last lines
    /// of the newest.
    pub fn sync_log(&self) -> String {
        let dir = self.profile.join("weave/logs");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort_by_key(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH)
        });
        let mut out = format!(
            "---- Firefox {}: sync logs in {}\n",
            self.name,
            dir.display()
        );
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let bad: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("\tWARN\t") || l.contains("\tERROR\t"))
                .collect();
            if !bad.is_empty() {
                out.push_str(&format!("-- {}\n", f.display()));
                for l in bad.iter().rev().take(40).rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        if let Some(last) = files.last() {
            out.push_str(&format!("-- last 60 lines of {}\n", last.display()));
            out.push_str(&tail(last, 60));
        }
        out
    }
}

impl Drop for Firefox {
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            // A clean quit flushes nothing we need; it only saves time before the kill.
            let _ = conn.stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = conn.command("Marionette:Quit", json!({"flags": ["eForceQuit"]}));
        }
        if let Some(mut child) = self.child.take() {
            let pgid = child.id() as i32;
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            // The whole group: content and utility processes outlive a killed parent.
            // SAFETY: kill(2) on the process group we created for this child.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let _ = child.wait();
        }
        if std::env::var_os("SYNCSERVER_TEST_LOGS").is_some() {
            eprintln!("{}", self.sync_log());
        }
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    out.push('\n');
    out
}

/// Prefs that keep a test browser off the closed network and out of the way (on top of
/// what Marionette itself sets for automation). The account and tokenserver URLs come
/// from the test.
fn quiet_prefs() -> Vec<(&'static str, Value)> {
    vec![
        ("marionette.port", json!(0)),
        ("browser.shell.checkDefaultBrowser", json!(false)),
        ("browser.startup.page", json!(0)),
        ("browser.aboutwelcome.enabled", json!(false)),
        ("datareporting.policy.dataSubmissionEnabled", json!(false)),
        ("datareporting.healthreport.uploadEnabled", json!(false)),
        ("toolkit.telemetry.enabled", json!(false)),
        ("toolkit.telemetry.server", json!("http://127.0.0.1:1/")),
        ("app.update.disabledForTesting", json!(true)),
        ("app.normandy.enabled", json!(false)),
        ("browser.safebrowsing.malware.enabled", json!(false)),
        ("browser.safebrowsing.phishing.enabled", json!(false)),
        ("browser.safebrowsing.downloads.enabled", json!(false)),
        ("browser.safebrowsing.provider.mozilla.updateURL", json!("")),
        ("network.captive-portal-service.enabled", json!(false)),
        ("network.connectivity-service.enabled", json!(false)),
        ("network.dns.disablePrefetch", json!(true)),
        ("network.prefetch-next", json!(false)),
        ("network.http.speculative-parallel-limit", json!(0)),
        ("services.settings.server", json!("http://127.0.0.1:1/v1")),
        ("extensions.update.enabled", json!(false)),
        ("extensions.getAddons.cache.enabled", json!(false)),
        ("extensions.systemAddon.update.enabled", json!(false)),
        ("browser.newtabpage.enabled", json!(false)),
        (
            "browser.newtabpage.activity-stream.feeds.system.topstories",
            json!(false),
        ),
        (
            "browser.newtabpage.activity-stream.feeds.section.topstories",
            json!(false),
        ),
        ("browser.topsites.contile.enabled", json!(false)),
        ("browser.ping-centre.telemetry", json!(false)),
        ("dom.push.connection.enabled", json!(false)),
        ("dom.push.serverURL", json!("ws://127.0.0.1:1/")),
        ("browser.region.network.url", json!("")),
        ("geo.provider.network.url", json!("")),
        ("media.gmp-manager.url", json!("http://127.0.0.1:1/")),
        (
            "identity.fxaccounts.remote.pairing.uri",
            json!("ws://127.0.0.1:1/"),
        ),
        (
            "identity.fxaccounts.telemetry.clientAssociationPing.enabled",
            json!(false),
        ),
        // A log file for every sync, not only the failed ones: the test prints them on failure.
        ("services.sync.log.appender.file.logOnSuccess", json!(true)),
        ("services.sync.log.appender.file.level", json!("Debug")),
        // The test decides when to sync: no scheduled syncs in between.
        ("services.sync.scheduler.immediateInterval", json!(86400)),
        ("services.sync.scheduler.activeInterval", json!(86400)),
        ("services.sync.scheduler.idleInterval", json!(86400)),
        (
            "services.sync.scheduler.fxa.singleDeviceInterval",
            json!(86400),
        ),
        ("services.sync.syncedTabs.syncDelayAfterTabChange", json!(0)),
        // Every engine Firefox syncs but add-ons (they would come from addons.mozilla.org).
        ("services.sync.engine.bookmarks", json!(true)),
        ("services.sync.engine.history", json!(true)),
        ("services.sync.engine.passwords", json!(true)),
        ("services.sync.engine.tabs", json!(true)),
        ("services.sync.engine.prefs", json!(true)),
        ("services.sync.engine.forms", json!(true)),
        ("services.sync.engine.addons", json!(false)),
        // Addresses and credit cards are synced only where Firefox offers them (by region):
        // offered here.
        ("extensions.formautofill.addresses.supported", json!("on")),
        ("extensions.formautofill.creditCards.supported", json!("on")),
        ("services.sync.engine.addresses.available", json!(true)),
        ("services.sync.engine.creditcards.available", json!(true)),
        ("services.sync.engine.addresses", json!(true)),
        ("services.sync.engine.creditcards", json!(true)),
        // No random validation passes that would make run times vary.
        (
            "services.sync.engine.bookmarks.validation.enabled",
            json!(false),
        ),
        (
            "services.sync.engine.passwords.validation.enabled",
            json!(false),
        ),
        ("signon.rememberSignons", json!(true)),
        ("places.history.enabled", json!(true)),
    ]
}

/// A Marionette connection: `<length>:<json>` frames; commands `[0, id, name, params]`,
/// replies `[1, id, error, result]`.
struct Marionette {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    next_id: u64,
}

impl Marionette {
    fn connect(port: u16) -> std::io::Result<Marionette> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        let mut m = Marionette {
            reader: BufReader::new(stream.try_clone()?),
            stream,
            next_id: 1,
        };
        // The greeting: {"applicationType": "gecko", "marionetteProtocol": 3}.
        let hello = m.read_frame()?;
        if hello["marionetteProtocol"].as_u64() != Some(3) {
            return Err(std::io::Error::other(format!(
                "unexpected greeting {hello}"
            )));
        }
        Ok(m)
    }

    fn read_frame(&mut self) -> std::io::Result<Value> {
        let mut len = Vec::new();
        self.reader.read_until(b':', &mut len)?;
        let text = String::from_utf8_lossy(&len);
        let n: usize = text
            .trim_end_matches(':')
            .parse()
            .map_err(|_| std::io::Error::other(format!("bad frame length {text:?}")))?;
        let mut body = vec![0u8; n];
        self.reader.read_exact(&mut body)?;
        serde_json::from_slice(&body).map_err(std::io::Error::other)
    }

    /// Sends a command and waits for its reply: the result, or the error's message.
    fn command(&mut self, name: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!([0, id, name, params]).to_string();
        self.stream
            .write_all(format!("{}:{body}", body.len()).as_bytes())
            .map_err(|e| format!("{name}: send: {e}"))?;
        loop {
            let reply = self
                .read_frame()
                .map_err(|e| format!("{name}: read: {e}"))?;
            if reply[1].as_u64() != Some(id) {
                continue;
            }
            if !reply[2].is_null() {
                return Err(format!(
                    "{}: {}\n{}",
                    reply[2]["error"].as_str().unwrap_or("error"),
                    reply[2]["message"].as_str().unwrap_or_default(),
                    reply[2]["stacktrace"].as_str().unwrap_or_default()
                ));
            }
            return Ok(reply[3].clone());
        }
    }
}
