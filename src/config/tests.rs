use super::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The `syncserver.ini` shipped with the Python server (HEAD).
const SHIPPED_INI: &str = r#"[server:main]
use = egg:gunicorn
host = 0.0.0.0
port = 5000
workers = 1
timeout = 30

[app:main]
use = egg:syncserver

[syncserver]
# This must be edited to point to the public URL of your server,
# i.e. the URL as seen by Firefox.
public_url = http://localhost:5000/

# By default, syncserver will accept identity assertions issued by
# any BrowserID issuer.  The below restricts it to accept assertions
# from just the production Firefox Account servers.  If you are hosting
# your own account server, put its public URL here instead.
identity_provider = https://accounts.firefox.com/

# This defines the database in which to store all server data.
#sqluri = sqlite:////tmp/syncserver.db
#sqluri = pymysql://sample_user:sample_password@127.0.0.1/syncstorage

# This is a secret key used for signing authentication tokens.
# It should be long and randomly-generated.
# The following command will give a suitable value on *nix systems:
#
#    head -c 20 /dev/urandom | sha1sum
#
# If not specified then the server will generate a temporary one at startup.
#secret = INSERT_SECRET_KEY_HERE

# Set this to "false" to disable new-user signups on the server.
# Only requests by existing accounts will be honoured.
# allow_new_users = false

# Set this to "true" to work around a mismatch between public_url and
# the application URL as seen by python, which can happen in certain reverse-
# proxy hosting setups.  It will overwrite the WSGI environ dict with the
# details from public_url.  This could have security implications if e.g.
# you tell the app that it's on HTTPS but it's really on HTTP, so it should
# only be used as a last resort and after careful checking of server config.
force_wsgi_environ = false

[tokenserver]
# Use a custom MySQL based syncstorage node hosted at http://localhost:8000
# node_url = http://localhost:8000
# sqluri = pymysql://sample_user:sample_password@127.0.0.1/syncstorage_rs

[endpoints]
# Replace syncserver endpoints with alternate server implementation, ie:
# MySQL based syncstorage-rs 1.0 server hosted at http://localhost:8000/1.0/sync/1.5
# "{node}/1.0/sync/1.5/{uid}"
# sync-1.5 = "http://localhost:8000/1.0/sync/1.5/{uid}"
"#;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

fn temp_dir() -> TempDir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("syncconf-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    TempDir(dir)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Err(e) = std::fs::write(&p, text) {
        panic!("cannot write {}: {e}", p.display());
    }
    p
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

/// Loads `text` as `<tmp>/syncserver.ini`, with the working directory `<tmp>/cwd`.
fn load_text(text: &str, pairs: &[(&str, &str)]) -> (Result<Settings, ConfigError>, TempDir) {
    let dir = temp_dir();
    let ini = write(&dir, "syncserver.ini", text);
    let cwd = dir.join("cwd");
    (load_in(Some(&ini), &env(pairs), &cwd), dir)
}

fn ok(text: &str, pairs: &[(&str, &str)]) -> (Settings, TempDir) {
    match load_text(text, pairs) {
        (Ok(s), dir) => (s, dir),
        (Err(e), _) => panic!("load failed: {e}"),
    }
}

fn err(text: &str, pairs: &[(&str, &str)]) -> ConfigError {
    match load_text(text, pairs).0 {
        Ok(s) => panic!("expected an error, got {s:?}"),
        Err(e) => e,
    }
}

fn has_note(s: &Settings, level: NoteLevel, needle: &str) -> bool {
    s.notes
        .iter()
        .any(|n| n.level == level && n.message.contains(needle))
}

const MIN: &str = "[syncserver]\npublic_url = https://sync.example.com/\n";

#[test]
fn shipped_python_ini_loads_with_defaults() {
    let (s, dir) = ok(SHIPPED_INI, &[]);
    assert_eq!(s.public_url.url, "http://localhost:5000");
    assert_eq!(s.public_url.port, 5000);
    assert_eq!(
        s.identity_provider.as_deref(),
        Some("https://accounts.firefox.com/")
    );
    assert_eq!(s.database, DatabaseUri::Sqlite(dir.join("syncserver.db")));
    assert!(s.secrets.is_empty());
    assert!(s.allow_new_users && !s.force_wsgi_environ && s.batch_upload_enabled);
    assert_eq!(s.storage, StorageLimits::default());
    assert_eq!(
        (s.token_duration, s.expired_token_timeout, s.oauth_timeout),
        (3600, 7200, 30)
    );
    assert_eq!(s.node_url, "http://localhost:5000");
    assert!(has_note(&s, NoteLevel::Info, "[server:main]"));
    let warnings: Vec<_> = s
        .notes
        .iter()
        .filter(|n| n.level == NoteLevel::Warning)
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn env_only_configuration() {
    let cwd = temp_dir();
    let e = env(&[
        ("SYNCSERVER_PUBLIC_URL", "https://h.example/sync/"),
        ("SYNCSERVER_SQLURI", "sqlite:///tmp/s.db"),
    ]);
    let s = load_in(None, &e, &cwd).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.config_path, None);
    assert_eq!(s.public_url.path, "/sync");
    assert_eq!(s.database, DatabaseUri::Sqlite(cwd.join("tmp/s.db")));
    let s = load_in(None, &env(&[("SYNCSERVER_PUBLIC_URL", "http://h")]), &cwd)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.database, DatabaseUri::Sqlite(cwd.join("syncserver.db")));
    let missing = load_in(None, &env(&[]), &cwd);
    assert!(matches!(missing, Err(ConfigError::Missing { ref key, .. }) if key == "public_url"));
}

#[test]
fn missing_config_file_is_an_io_error() {
    let dir = temp_dir();
    let e = load_in(Some(Path::new("nope.ini")), &env(&[]), &dir);
    match e {
        Err(ConfigError::Io { path, .. }) => assert_eq!(path, dir.join("nope.ini")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ini_errors_name_the_file_and_line() {
    let e = err("[syncserver]\npublic_url = http://h\nsecret = a$b\n", &[]);
    let msg = e.to_string();
    assert!(
        matches!(e, ConfigError::Ini(IniError { line: 3, .. })),
        "{msg}"
    );
    assert!(msg.contains("syncserver.ini:3:"), "{msg}");
}

#[test]
fn secrets_single_all_digit_and_list() {
    let (s, _) = ok(&format!("{MIN}secret = 0123456789\n"), &[]);
    assert_eq!(s.secrets, ["0123456789"]);
    assert!(has_note(&s, NoteLevel::Info, "all-digit"));
    let (s, _) = ok(
        &format!("{MIN}secret =\n    old-secret-0123456789\n\n    \"new-secret-9876543210\"\n"),
        &[],
    );
    assert_eq!(
        s.secrets,
        ["old-secret-0123456789", "new-secret-9876543210"]
    );
}

#[test]
fn empty_secret_is_refused() {
    let e = err(&format!("{MIN}secret =\n"), &[]);
    assert!(matches!(e, ConfigError::EmptySecret { .. }));
    assert!(e.to_string().contains("forge"), "{e}");
    let e = err(MIN, &[("SYNCSERVER_SECRET", "")]);
    assert!(
        matches!(e, ConfigError::EmptySecret { ref origin } if matches!(**origin, Origin::Env { .. }))
    );
    // An empty ini secret is fine when the environment replaces it.
    let (s, _) = ok(
        &format!("{MIN}secret =\n"),
        &[("SYNCSERVER_SECRET", "from-env-0123456789")],
    );
    assert_eq!(s.secrets, ["from-env-0123456789"]);
}

#[test]
fn secret_file_and_precedence() {
    let dir = temp_dir();
    let f = write(&dir, "secret.txt", "  file-secret-0123456789\n\n");
    let file = f.to_string_lossy().to_string();
    let text = format!("{MIN}secret = ini-secret-0123456789\n");
    let (s, _) = ok(&text, &[("SYNCSERVER_SECRET_FILE", &file)]);
    assert_eq!(s.secrets, ["file-secret-0123456789"]);
    let (s, _) = ok(
        &text,
        &[
            ("SYNCSERVER_SECRET_FILE", &file),
            ("SYNCSERVER_SECRET", "env-secret-0123456789"),
        ],
    );
    assert_eq!(s.secrets, ["env-secret-0123456789"]);
    let e = err(MIN, &[("SYNCSERVER_SECRET_FILE", "/nonexistent/secret")]);
    assert!(matches!(e, ConfigError::Io { .. }), "{e}");
    let blank = write(&dir, "blank.txt", " \n");
    let e = err(MIN, &[("SYNCSERVER_SECRET_FILE", &blank.to_string_lossy())]);
    assert!(matches!(e, ConfigError::EmptySecret { .. }), "{e}");
}

#[test]
fn env_overrides_every_setting() {
    let text = "[syncserver]\npublic_url = http://ini\nidentity_provider = https://ini.example/\nallow_new_users = true\n";
    let (s, dir) = ok(
        text,
        &[
            ("SYNCSERVER_PUBLIC_URL", "https://env.example"),
            ("SYNCSERVER_SQLURI", "sqlite:////var/lib/env.db"),
            ("SYNCSERVER_IDENTITY_PROVIDER", "https://idp.example/"),
            ("SYNCSERVER_OAUTH_VERIFIER", "https://oauth.example/v1"),
            (
                "SYNCSERVER_BROWSERID_VERIFIER",
                "https://verifier.example/v2",
            ),
            ("SYNCSERVER_ALLOW_NEW_USERS", "No"),
            ("SYNCSERVER_FORCE_WSGI_ENVIRON", "on"),
            ("SYNCSERVER_BATCH_UPLOAD_ENABLED", "0"),
            ("SYNCSERVER_DEBUG_ENABLED", "YES"),
        ],
    );
    let _ = dir;
    assert_eq!(s.public_url.url, "https://env.example");
    assert_eq!(s.database, DatabaseUri::Sqlite("/var/lib/env.db".into()));
    assert_eq!(s.identity_provider.as_deref(), Some("https://idp.example/"));
    assert_eq!(
        s.oauth_verifier.as_deref(),
        Some("https://oauth.example/v1")
    );
    assert_eq!(
        s.browserid_verifier.as_deref(),
        Some("https://verifier.example/v2")
    );
    assert!(
        !s.allow_new_users && s.force_wsgi_environ && !s.batch_upload_enabled && s.debug_enabled
    );
    // An empty environment value clears an optional URL.
    let (s, _) = ok(text, &[("SYNCSERVER_IDENTITY_PROVIDER", "")]);
    assert_eq!(s.identity_provider, None);
}

#[test]
fn bad_env_values_are_errors() {
    for var in [
        "SYNCSERVER_ALLOW_NEW_USERS",
        "SYNCSERVER_FORCE_WSGI_ENVIRON",
        "SYNCSERVER_BATCH_UPLOAD_ENABLED",
        "SYNCSERVER_DEBUG_ENABLED",
    ] {
        let e = err(MIN, &[(var, "maybe")]);
        match &e {
            ConfigError::Invalid { origin, .. } => {
                assert_eq!(
                    **origin,
                    Origin::Env {
                        var: var.to_string()
                    }
                )
            }
            other => panic!("{var}: {other:?}"),
        }
        assert!(e.to_string().contains(var), "{e}");
    }
    assert!(matches!(
        err(MIN, &[("SYNCSERVER_PUBLIC_URL", "")]),
        ConfigError::Invalid { .. }
    ));
    assert!(matches!(
        err(MIN, &[("SYNCSERVER_SQLURI", "nonsense")]),
        ConfigError::Invalid { .. }
    ));
}

#[test]
fn ini_booleans() {
    let get = |v: &str| {
        ok(&format!("{MIN}allow_new_users = {v}\n"), &[])
            .0
            .allow_new_users
    };
    assert!(!get("false") && !get("FALSE") && !get("0") && !get("no") && !get("Off"));
    assert!(get("true") && get("1") && get("yes") && get("on"));
    let (s, _) = ok(&format!("{MIN}allow_new_users = no\n"), &[]);
    assert!(has_note(&s, NoteLevel::Info, "read as false"));
    assert!(matches!(
        err(&format!("{MIN}allow_new_users = maybe\n"), &[]),
        ConfigError::Invalid { .. }
    ));
    assert!(matches!(
        err(&format!("{MIN}allow_new_users = 2\n"), &[]),
        ConfigError::Invalid { .. }
    ));
}

#[test]
fn allow_new_users_precedence() {
    let text = format!("{MIN}allow_new_users = true\n[tokenserver]\nallow_new_users = false\n");
    let (s, _) = ok(&text, &[]);
    assert!(!s.allow_new_users);
    let (s, _) = ok(&text, &[("SYNCSERVER_ALLOW_NEW_USERS", "true")]);
    assert!(s.allow_new_users);
    assert!(has_note(
        &s,
        NoteLevel::Info,
        "SYNCSERVER_ALLOW_NEW_USERS wins"
    ));
}

#[test]
fn sqluri_resolution_and_notes() {
    let (s, dir) = ok(&format!("{MIN}sqluri = sqlite:///data/sync.db\n"), &[]);
    assert_eq!(s.database, DatabaseUri::Sqlite(dir.join("data/sync.db")));
    assert!(has_note(&s, NoteLevel::Info, "working directory"));
    let (s, _) = ok(&format!("{MIN}sqluri = sqlite:////srv/sync.db\n"), &[]);
    assert_eq!(s.database, DatabaseUri::Sqlite("/srv/sync.db".into()));
    let (s, _) = ok(&format!("{MIN}sqluri = sqlite:///:memory:\n"), &[]);
    assert_eq!(s.database, DatabaseUri::Memory);
    assert!(has_note(&s, NoteLevel::Warning, "single worker"));
    let (s, dir) = ok(&format!("{MIN}sqluri = sqlite:///${{HERE}}/x.db\n"), &[]);
    assert_eq!(s.database, DatabaseUri::Sqlite(dir.join("x.db")));
}

#[test]
fn relative_sqluri_warns_when_python_database_is_elsewhere() {
    let dir = temp_dir();
    let ini = write(
        &dir,
        "syncserver.ini",
        &format!("{MIN}sqluri = sqlite:///old.db\n"),
    );
    let cwd = dir.join("run");
    let _ = std::fs::create_dir_all(&cwd);
    write(&cwd, "old.db", "");
    let s = load_in(Some(&ini), &env(&[]), &cwd).unwrap_or_else(|e| panic!("{e}"));
    assert!(has_note(&s, NoteLevel::Warning, "a database exists at"));
}

#[test]
fn unsupported_database_message() {
    let e = err(
        &format!("{MIN}sqluri = mysql+aiomysql://sync:pw123@127.0.0.1/syncstorage\n"),
        &[],
    );
    let msg = e.to_string();
    assert!(matches!(e, ConfigError::UnsupportedDatabase { .. }));
    assert!(
        msg.contains("SQLite") && msg.contains("pymysql://") && !msg.contains("pw123"),
        "{msg}"
    );
    assert!(msg.contains("syncserver.ini:3"), "{msg}");
}

#[test]
fn storage_and_tokenserver_sqluri_decisions() {
    let text = format!("{MIN}sqluri = sqlite:////a.db\n[storage]\nsqluri = sqlite:////b.db\n");
    let (s, _) = ok(&text, &[]);
    assert_eq!(s.database, DatabaseUri::Sqlite("/a.db".into()));
    assert!(has_note(&s, NoteLevel::Warning, "[storage] sqluri"));
    let (s, dir) = ok(
        "[syncserver]\npublic_url = http://h\n[storage]\nsqluri = sqlite:////b.db\n",
        &[],
    );
    assert_eq!(s.database, DatabaseUri::Sqlite(dir.join("syncserver.db")));
    let text = "[syncserver]\npublic_url = http://h\n[storage]\nbackend = syncstorage.storage.sql.SQLStorage\nsqluri = sqlite:////b.db\n";
    let (s, _) = ok(text, &[]);
    assert_eq!(s.database, DatabaseUri::Sqlite("/b.db".into()));
    let (s, _) = ok(
        &format!("{MIN}[tokenserver]\nsqluri = pymysql://u:secretpw@h/db\n"),
        &[],
    );
    assert!(has_note(&s, NoteLevel::Warning, "[tokenserver] sqluri"));
    assert!(s.notes.iter().all(|n| !n.message.contains("secretpw")));
}

#[test]
fn public_url_validation_and_default_port() {
    let (s, _) = ok(
        "[syncserver]\npublic_url = https://Sync.Example.com:443/sync/\n",
        &[],
    );
    assert_eq!(s.public_url.url, "https://sync.example.com/sync");
    assert!(has_note(&s, NoteLevel::Info, "default for https"));
    let e = err("[syncserver]\npublic_url = localhost:5000\n", &[]);
    assert!(e.to_string().contains("http://"), "{e}");
    let e = err("[syncserver]\npublic_url =\n", &[]);
    assert!(matches!(e, ConfigError::Invalid { .. }), "{e}");
}

#[test]
fn numbers_are_validated() {
    let text = "[syncserver]\npublic_url = http://h\n[storage]\nmax_post_records = 50\nquota_size = 1048576\n[hawkauth]\nexpired_token_timeout = 0\ntimestamp_skew = 60\n[tokenserver]\ntoken_duration = 300\nmax_users = 5\n[oauth]\ntimeout = 5\n";
    let (s, _) = ok(text, &[]);
    assert_eq!(s.storage.max_post_records, 50);
    assert_eq!(
        (s.quota_size, s.expired_token_timeout, s.timestamp_skew),
        (Some(1048576), 0, Some(60))
    );
    assert_eq!(
        (s.token_duration, s.max_users, s.oauth_timeout),
        (300, Some(5), 5)
    );
    for bad in [
        "[storage]\nmax_post_records = 0",
        "[storage]\nquota_size = -1",
        "[tokenserver]\ntoken_duration = 1.5",
        "[oauth]\ntimeout = soon",
    ] {
        let e = err(&format!("{MIN}{bad}\n"), &[]);
        assert!(matches!(e, ConfigError::Invalid { .. }), "{bad}: {e}");
        assert!(e.to_string().contains("whole number"), "{e}");
    }
}

#[test]
fn inconsistent_limits_warn() {
    let (s, _) = ok(
        &format!("{MIN}[storage]\nmax_record_payload_bytes = 9999999\n"),
        &[],
    );
    assert!(has_note(&s, NoteLevel::Warning, "max_record_payload_bytes"));
}

#[test]
fn tokenserver_and_oauth_extras() {
    let dir = temp_dir();
    write(&dir, "jwks.json", r#"{"keys": []}"#);
    let text = format!(
        "{MIN}[tokenserver]\nallowed_users = a@x.org, b@x.org\n    c@x.org d@x.org\nnode_url = https://sync.example.com/\n[fxa]\nmetrics_uid_secret_key = 0011\n[oauth]\njwks = {{\"keys\":\n    []}}\njwks_file = {}\n",
        dir.join("jwks.json").display()
    );
    let (s, _) = ok(&text, &[]);
    assert_eq!(
        s.allowed_users,
        ["a@x.org", "b@x.org", "c@x.org", "d@x.org"]
    );
    assert_eq!(s.node_url, "https://sync.example.com");
    assert_eq!(s.metrics_secret.as_deref(), Some("0011"));
    assert_eq!(s.oauth_jwks.as_deref(), Some("{\"keys\":\n[]}"));
    assert_eq!(s.oauth_jwks_file, Some(dir.join("jwks.json")));
    let e = err(&format!("{MIN}[oauth]\njwks = not json\n"), &[]);
    assert!(e.to_string().contains("JSON"), "{e}");
    let (s, _) = ok(
        &format!("{MIN}[tokenserver]\nnode_url = http://localhost:8000\n"),
        &[],
    );
    assert!(has_note(&s, NoteLevel::Warning, "node_url"));
}

#[test]
fn verifier_aliases() {
    let text = format!("{MIN}[oauth]\nserver_url = https://o.example/v1\n[browserid]\nverifier_url = https://b.example/v2\n");
    let (s, _) = ok(&text, &[]);
    assert_eq!(s.oauth_verifier.as_deref(), Some("https://o.example/v1"));
    assert_eq!(
        s.browserid_verifier.as_deref(),
        Some("https://b.example/v2")
    );
}

#[test]
fn unknown_and_python_only_keys_are_notes_not_errors() {
    let text = format!(
        "{MIN}publicurl = typo\n[storage]\npool_size = 5\n[hawkauth]\nnonce_cache = x\nweird = 1\n[loggers]\nkeys = root\n[logger_root]\nlevel = INFO\n[mystery]\na = b\n[endpoints]\nsync-1.5 = \"http://localhost:8000/1.0/sync/1.5/{{uid}}\"\n"
    );
    let (s, _) = ok(&text, &[]);
    assert!(has_note(&s, NoteLevel::Warning, "[syncserver] publicurl"));
    assert!(has_note(&s, NoteLevel::Warning, "did you mean public_url?"));
    assert!(has_note(
        &s,
        NoteLevel::Warning,
        "is not a setting we know: ignored (the Python server refused to start with it); check the spelling"
    ));
    assert!(has_note(&s, NoteLevel::Info, "[storage] pool_size"));
    assert!(has_note(&s, NoteLevel::Warning, "[hawkauth] nonce_cache"));
    assert!(has_note(&s, NoteLevel::Warning, "refused to start"));
    assert!(has_note(&s, NoteLevel::Warning, "[mystery]"));
    assert!(has_note(&s, NoteLevel::Warning, "[endpoints] sync-1.5"));
    assert!(
        !s.notes.iter().any(|n| n.message.contains("logger")),
        "{:?}",
        s.notes
    );
}

#[test]
fn loglevel_setting() {
    let (s, _) = ok(&format!("{MIN}loglevel = WARNING\n"), &[]);
    assert_eq!(s.loglevel.as_deref(), Some("warn"));
    assert!(matches!(
        err(&format!("{MIN}loglevel = loud\n"), &[]),
        ConfigError::Invalid { .. }
    ));
}

#[test]
fn report_masks_secrets() {
    let text = format!("{MIN}secret =\n    first-secret-AAAAAAAAAAAAAAAA\n    second-secret-BBBBBBBBBBBBBBB\n[fxa]\nmetrics_uid_secret_key = metrics-CCCCCCCCCCCC\n[storage]\nbogus = 1\n");
    let (s, _) = ok(&text, &[]);
    let r = report(&s);
    for secret in ["AAAA", "BBBB", "CCCC"] {
        assert!(!r.contains(secret), "{r}");
        assert!(!format!("{s:?}").contains(secret));
    }
    assert!(
        r.contains("****(29 chars), ****(29 chars) (the last one signs)"),
        "{r}"
    );
    assert!(r.contains("****(20 chars)"), "{r}");
    assert!(r.contains("https://sync.example.com"), "{r}");
    assert!(r.contains("[warning] [storage] bogus"), "{r}");
}

#[test]
fn invalid_secret_like_values_are_masked_in_errors() {
    let e = err(
        &format!("{MIN}[fxa]\nmetrics_uid_secret_key =\n    a-secret-value\n    another\n"),
        &[],
    );
    assert!(!e.to_string().contains("a-secret-value"), "{e}");
}

#[test]
fn default_config_path_lookup() {
    let p = default_config_path(&env(&[("SYNCSERVER_CONFIG", "/etc/sync/syncserver.ini")]));
    assert_eq!(p, Some(PathBuf::from("/etc/sync/syncserver.ini")));
    // Without the variable it is ./syncserver.ini when that exists (the crate
    // root ships one).
    assert_eq!(
        default_config_path(&env(&[])).is_some(),
        std::path::Path::new("syncserver.ini").is_file()
    );
}

#[test]
fn misspelt_keys_get_suggestions() {
    let text = "[syncserver]\npublic_url = https://h.example\nsecrets = x\ntoken_duration = 60\n[storage]\nmax_post_record = 5\n";
    let (s, _) = ok(text, &[]);
    assert!(
        has_note(
            &s,
            NoteLevel::Warning,
            "syncserver.ini:3) is not a setting we know: ignored; did you mean secret?"
        ),
        "{:?}",
        s.notes
    );
    assert!(has_note(
        &s,
        NoteLevel::Warning,
        "did you mean [tokenserver] token_duration?"
    ));
    assert!(has_note(
        &s,
        NoteLevel::Warning,
        "did you mean max_post_records?"
    ));
}

#[test]
fn missing_public_url_names_the_misspelt_key() {
    let e = err("[syncserver]\npublc_url = https://h.example\n", &[]).to_string();
    assert!(
        e.starts_with("`public_url` is not set ([syncserver] publc_url ("),
        "{e}"
    );
    assert!(e.contains(":2) is there: did you mean public_url?)"), "{e}");
    // In a misspelt section, or another section, too.
    let e = err("[syncsever]\npublic_url = https://h.example\n", &[]).to_string();
    assert!(e.contains("[syncsever] public_url ("), "{e}");
    // Nothing close: the plain message.
    let e = err("[syncserver]\nsecret = abc\n", &[]).to_string();
    assert!(!e.contains("did you mean"), "{e}");
}

#[test]
fn server_sqluri_in_settings_report_and_notes() {
    let text = format!(
        "{MIN}sqluri = pymysql://sync:s3cr3tpw@127.0.0.1/syncstorage?charset=utf8&use_unicode=0&frob=1\n[tokenserver]\nsqluri = pymysql://sync:s3cr3tpw@127.0.0.1:3306/syncstorage\n"
    );
    let (s, _) = ok(&text, &[]);
    let DatabaseUri::Mysql(u) = &s.database else {
        panic!("{:?}", s.database)
    };
    assert_eq!(u.database, "syncstorage");
    assert_eq!(u.password.as_ref().map(Password::expose), Some("s3cr3tpw"));
    assert!(has_note(&s, NoteLevel::Info, "`use_unicode=0`"));
    assert!(has_note(&s, NoteLevel::Info, "`frob`"));
    // The same database: no warning about [tokenserver] sqluri.
    assert!(
        !has_note(&s, NoteLevel::Warning, "[tokenserver] sqluri"),
        "{:?}",
        s.notes
    );
    let r = report(&s);
    assert!(
        r.contains("MySQL/MariaDB database `syncstorage` on 127.0.0.1 port 3306 (default), user sync (password set)"),
        "{r}"
    );
    assert!(
        r.contains("pymysql://sync:***@127.0.0.1/syncstorage?charset=utf8mb3&use_unicode=0"),
        "{r}"
    );
    let shown = format!(
        "{r}\n{s:?}\n{}\n{:?}\n{:?}",
        s.database, s.database, s.notes
    );
    assert!(!shown.contains("s3cr3tpw"), "{shown}");

    let text = format!(
        "{MIN}sqluri = postgresql://sync:s3cr3tpw@%2Frun%2Fpostgresql/sync\n[storage]\nsqluri = postgresql://sync:s3cr3tpw@db/other\n"
    );
    let (s, _) = ok(&text, &[]);
    assert!(matches!(s.database, DatabaseUri::Postgresql(_)));
    assert!(has_note(&s, NoteLevel::Warning, "[storage] sqluri"));
    let r = report(&s);
    assert!(
        r.contains("PostgreSQL database `sync` on Unix socket /run/postgresql"),
        "{r}"
    );
    let shown = format!("{r}\n{s:?}\n{:?}", s.notes);
    assert!(!shown.contains("s3cr3tpw"), "{shown}");

    let (s, _) = ok(
        MIN,
        &[(
            "SYNCSERVER_SQLURI",
            "mariadb://sync:s3cr3tpw@[::1]:3307/sync",
        )],
    );
    assert_eq!(s.database.to_string(), "mariadb://sync:***@[::1]:3307/sync");

    let e = err(&format!("{MIN}sqluri = mysql://sync:s3cr3tpw@db\n"), &[]);
    let msg = e.to_string();
    assert!(
        msg.contains("[syncserver] sqluri") && msg.contains("no database"),
        "{msg}"
    );
    assert!(!msg.contains("s3cr3tpw"), "{msg}");
}

#[test]
fn roles_and_node_assignment() {
    const SQLNODE: &str = "backend = tokenserver.assignment.sqlnode.SQLNodeAssignment";
    let base = "[syncserver]\npublic_url = http://n1.test\nsecret = s3cret\n";
    // The Python server's layout stays the default.
    let (s, _d) = ok(base, &[]);
    assert_eq!((s.role, &s.nodes_database), (Role::All, &None));
    // sqlnode needs the tokenserver's own database, never the storage one.
    let e = err(&format!("{base}[tokenserver]\n{SQLNODE}\n"), &[]);
    assert!(e.to_string().contains("sqluri"), "{e}");
    let e = err(
        &format!(
            "{base}sqluri = sqlite:///a.db\n[tokenserver]\n{SQLNODE}\nsqluri = sqlite:///a.db\n"
        ),
        &[],
    );
    assert!(e.to_string().contains("migrate-to-nodes"), "{e}");
    let (s, d) = ok(
        &format!("{base}[tokenserver]\n{SQLNODE}\nsqluri = sqlite:///ts.db\n"),
        &[],
    );
    assert_eq!(
        s.nodes_database,
        Some(DatabaseUri::Sqlite(d.0.join("ts.db")))
    );
    assert!(has_note(&s, NoteLevel::Info, "storage nodes"));
    // A tokenserver only, and a node; each shares the master secret or holds its own.
    let ts = "[syncserver]\npublic_url = http://ts.test\nrole = tokenserver\n";
    let e = err(
        &format!("{ts}[tokenserver]\n{SQLNODE}\nsqluri = sqlite:///ts.db\n"),
        &[],
    );
    assert!(e.to_string().contains("secret"), "{e}");
    let (s, _d) = ok(
        &format!("{ts}secret = m\n[tokenserver]\n{SQLNODE}\nsqluri = sqlite:///ts.db\n"),
        &[],
    );
    assert!(s.role.serves_tokens() && !s.role.serves_storage());
    let node = "[syncserver]\npublic_url = http://n2.test\nrole = storage\n";
    assert!(err(node, &[]).to_string().contains("secret"));
    let (s, _d) = ok(&format!("{node}[storage]\nnode_secret = abcd\n"), &[]);
    assert_eq!(
        (s.role, s.node_secret.as_deref()),
        (Role::Storage, Some("abcd"))
    );
    assert!(
        !format!("{s:?}").contains("abcd"),
        "the node secret stays masked"
    );
    let e = err("[syncserver]\npublic_url = http://x\nrole = both\n", &[]);
    assert!(e.to_string().contains("all, tokenserver or storage"), "{e}");
}
