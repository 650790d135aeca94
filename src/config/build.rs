//! Turns the ini file and the environment into `Settings`, one setting at a time.

use std::path::{Path, PathBuf};

use super::error::{ConfigError, Origin};
use super::known;
use super::read::Ctx;
use super::url::{absolute, mask_uri_password, parse_sqluri};
use super::{DatabaseUri, NoteLevel, PublicUrl, Role, Settings, StorageLimits, TrustedProxies};

const DEFAULT_ENDPOINT: &str = "{node}/storage/1.5/{uid}";
const OLDSYNC_SCOPE: &str = "https://identity.mozilla.com/apps/oldsync";
const SQL_STORAGE: &str = "syncstorage.storage.sql.SQLStorage";

/// Reads every setting; notes gathered on the way end up in `Settings::notes`.
pub(super) fn build(ctx: &mut Ctx<'_>) -> Result<Settings, ConfigError> {
    let public_url = public_url(ctx)?;
    let database = database(ctx)?;
    let secrets = secrets(ctx)?;
    let identity_provider = url_setting(
        ctx,
        "SYNCSERVER_IDENTITY_PROVIDER",
        ("syncserver", "identity_provider"),
        None,
    )?;
    let oauth_verifier = url_setting(
        ctx,
        "SYNCSERVER_OAUTH_VERIFIER",
        ("syncserver", "oauth_verifier"),
        Some(("oauth", "server_url")),
    )?;
    let browserid_verifier = url_setting(
        ctx,
        "SYNCSERVER_BROWSERID_VERIFIER",
        ("syncserver", "browserid_verifier"),
        Some(("browserid", "verifier_url")),
    )?;
    let allow_new_users = allow_new_users(ctx)?;
    let force_wsgi_environ = ctx.flag(
        "SYNCSERVER_FORCE_WSGI_ENVIRON",
        "syncserver",
        "force_wsgi_environ",
        false,
    )?;
    let trusted_proxies = trusted_proxies(ctx, force_wsgi_environ)?;
    let debug_enabled = ctx.flag(
        "SYNCSERVER_DEBUG_ENABLED",
        "syncserver",
        "debug_enabled",
        false,
    )?;
    let batch_upload_enabled = ctx.flag(
        "SYNCSERVER_BATCH_UPLOAD_ENABLED",
        "storage",
        "batch_upload_enabled",
        true,
    )?;
    let loglevel = loglevel(ctx)?;
    let storage = storage_limits(ctx)?;
    let quota_size = ctx.uint("storage", "quota_size", 1)?;
    let expired_token_timeout = ctx.uint("hawkauth", "expired_token_timeout", 0)?;
    let timestamp_skew = ctx.uint("hawkauth", "timestamp_skew", 1)?;
    let max_nonces = ctx
        .uint("hawkauth", "max_nonces", 16)?
        .unwrap_or(crate::auth::DEFAULT_MAX_NONCES as u64);
    let token_duration = token_duration(ctx)?;
    let node_url = node_url(ctx, &public_url)?;
    let metrics_secret = metrics_secret(ctx)?;
    let allowed_users = allowed_users(ctx);
    let max_users = ctx.uint("tokenserver", "max_users", 1)?;
    let (oauth_jwks, oauth_jwks_file) = jwks(ctx)?;
    let oauth_timeout = ctx.uint("oauth", "timeout", 1)?.unwrap_or(30);
    let oauth_default_issuer = ctx
        .single("oauth", "default_issuer")?
        .map(|(v, _)| v)
        .filter(|v| !v.is_empty());
    let role = role(ctx)?;
    let nodes_database = nodes_database(ctx, &database, role)?;
    let node_secret = node_secret(ctx)?;
    shared_secret_needed(ctx, &secrets, role, nodes_database.is_some(), &node_secret)?;
    python_only_notes(ctx)?;
    known::check(ctx);
    Ok(Settings {
        config_path: ctx.file.map(Path::to_path_buf),
        public_url,
        database,
        secrets,
        identity_provider,
        oauth_verifier,
        browserid_verifier,
        allow_new_users,
        force_wsgi_environ,
        trusted_proxies,
        debug_enabled,
        loglevel,
        storage,
        quota_size,
        batch_upload_enabled,
        expired_token_timeout: expired_token_timeout.unwrap_or(7200),
        timestamp_skew,
        max_nonces,
        token_duration,
        node_url,
        metrics_secret,
        allowed_users,
        max_users,
        oauth_jwks,
        oauth_jwks_file,
        oauth_timeout,
        oauth_default_issuer,
        role,
        nodes_database,
        node_secret,
        notes: std::mem::take(&mut ctx.notes),
    })
}

fn public_url(ctx: &mut Ctx<'_>) -> Result<PublicUrl, ConfigError> {
    let chosen = match ctx.env_str("SYNCSERVER_PUBLIC_URL") {
        Some(v) => Some(v),
        None => ctx.single("syncserver", "public_url")?,
    };
    let Some((raw, origin)) = chosen else {
        return Err(ConfigError::Missing {
            section: "syncserver".into(),
            key: "public_url".into(),
            env_var: Some("SYNCSERVER_PUBLIC_URL".into()),
            near_miss: known::near_miss(ctx, "syncserver", "public_url"),
        });
    };
    let (url, dropped_port) = PublicUrl::parse_detailed(&raw)
        .map_err(|p| ctx.invalid(origin.clone(), &raw, &p.to_string()))?;
    if dropped_port {
        let msg = format!(
            "{origin}: the port is the default for {} and is left out ({}); the Python server answered 500 (public_url mismatch) with it",
            url.scheme, url.url
        );
        ctx.note(NoteLevel::Info, msg);
    }
    Ok(url)
}

fn database(ctx: &mut Ctx<'_>) -> Result<DatabaseUri, ConfigError> {
    let main = match ctx.env_str("SYNCSERVER_SQLURI") {
        Some(v) => Some(v),
        None => ctx.single("syncserver", "sqluri")?,
    };
    let storage = ctx.single("storage", "sqluri")?;
    let backend = ctx.single("storage", "backend")?;
    if let Some((b, origin)) = &backend {
        if b != SQL_STORAGE {
            let msg = format!("{origin} = {b} is ignored: sqluri alone chooses the database");
            ctx.note(NoteLevel::Warning, msg);
        }
    }
    let chosen = match (main, storage) {
        (Some(main), _) => Some(main),
        // Python used [storage] sqluri only when [storage] backend was set too.
        (None, Some((uri, origin))) if backend.is_some() => {
            let msg = format!(
                "{origin} is used for all data, users included: this server keeps everything in one database and [syncserver] sqluri is not set"
            );
            ctx.note(NoteLevel::Warning, msg);
            Some((uri, origin))
        }
        (None, Some((_, origin))) => {
            let msg = format!(
                "{origin} is ignored, as the Python server ignored it without [storage] backend; set [syncserver] sqluri to choose the database"
            );
            ctx.note(NoteLevel::Warning, msg);
            None
        }
        (None, None) => None,
    };
    let db = match chosen {
        Some((uri, origin)) => resolve_sqluri(ctx, &uri, &origin)?,
        None => {
            let path = ctx.base_dir.join("syncserver.db");
            let mut msg = format!("sqluri is not set: the database is {}", path.display());
            if ctx.file.is_some() {
                msg.push_str(" (the Python server used syncserver.db in its checkout directory: set sqluri if yours is elsewhere)");
            }
            ctx.note(NoteLevel::Info, msg);
            DatabaseUri::Sqlite(path)
        }
    };
    ignored_sqluri(ctx, "storage", &db)?;
    if !sqlnode(ctx)? {
        ignored_sqluri(ctx, "tokenserver", &db)?;
    }
    Ok(db)
}

/// The Python setting that gives the tokenserver node assignment.
const SQLNODE: &str = "tokenserver.assignment.sqlnode.SQLNodeAssignment";

fn sqlnode(ctx: &mut Ctx<'_>) -> Result<bool, ConfigError> {
    Ok(ctx
        .single("tokenserver", "backend")?
        .is_some_and(|(b, _)| b == SQLNODE))
}

fn role(ctx: &mut Ctx<'_>) -> Result<Role, ConfigError> {
    let Some((raw, origin)) = ctx.single("syncserver", "role")? else {
        return Ok(Role::All);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "" | "all" => Ok(Role::All),
        "tokenserver" => Ok(Role::Tokenserver),
        "storage" => Ok(Role::Storage),
        _ => Err(ctx.invalid(origin, &raw, "it must be all, tokenserver or storage")),
    }
}

/// The tokenserver's own database, with `sqlnode`.
fn nodes_database(
    ctx: &mut Ctx<'_>,
    storage: &DatabaseUri,
    role: Role,
) -> Result<Option<DatabaseUri>, ConfigError> {
    if !sqlnode(ctx)? {
        return Ok(None);
    }
    if role == Role::Storage {
        ctx.note(
            NoteLevel::Info,
            "[tokenserver] backend is not used by a storage node (role = storage)".into(),
        );
        return Ok(None);
    }
    let Some((uri, origin)) = ctx.single("tokenserver", "sqluri")? else {
        return Err(ConfigError::Missing {
            section: "tokenserver".into(),
            key: "sqluri".into(),
            env_var: None,
            near_miss: known::near_miss(ctx, "tokenserver", "sqluri"),
        });
    };
    let db = resolve_sqluri(ctx, &uri, &origin)?;
    if db == DatabaseUri::Memory {
        return Err(ctx.invalid(origin, &uri, "node assignments must outlive the process"));
    }
    if role.serves_storage() && db.same_database(storage) {
        let reason = "the tokenserver's tables need a database of their own, not the storage database (`syncserver-fcgi migrate-to-nodes --to URI` fills one from this box)";
        return Err(ctx.invalid(origin, &mask_uri_password(&uri), reason));
    }
    Ok(Some(db))
}

fn node_secret(ctx: &mut Ctx<'_>) -> Result<Option<String>, ConfigError> {
    match ctx.single("storage", "node_secret")? {
        Some((v, origin)) if v.trim().is_empty() => Err(ctx.invalid(
            origin,
            "",
            "it is empty; remove the line to derive it from [syncserver] secret",
        )),
        other => Ok(other.map(|(v, _)| v.trim().to_string())),
    }
}

/// Processes that sign or check each other's tokens must be given the secret: one
/// generated and stored in a database is seen by that database's processes only.
fn shared_secret_needed(
    ctx: &mut Ctx<'_>,
    secrets: &[String],
    role: Role,
    sqlnode: bool,
    node_secret: &Option<String>,
) -> Result<(), ConfigError> {
    let needed = match role {
        Role::All => sqlnode,
        Role::Tokenserver => true,
        Role::Storage => node_secret.is_none(),
    };
    if needed && secrets.is_empty() {
        return Err(ConfigError::Missing {
            section: "syncserver".into(),
            key: "secret".into(),
            env_var: Some("SYNCSERVER_SECRET".into()),
            near_miss: known::near_miss(ctx, "syncserver", "secret"),
        });
    }
    Ok(())
}

fn resolve_sqluri(
    ctx: &mut Ctx<'_>,
    uri: &str,
    origin: &Origin,
) -> Result<DatabaseUri, ConfigError> {
    let parsed = parse_sqluri(uri, &ctx.base_dir, origin)?;
    for (level, note) in &parsed.notes {
        ctx.note(*level, format!("{origin}: {note}"));
    }
    if let Some(q) = &parsed.ignored_query {
        ctx.note(
            NoteLevel::Info,
            format!("{origin}: the options `?{q}` are ignored"),
        );
    }
    if let (Some(rel), DatabaseUri::Sqlite(ours)) = (&parsed.relative, &parsed.db) {
        let python = absolute(rel, &ctx.cwd);
        if &python != ours {
            let msg = format!(
                "{origin}: the relative path is taken from the config file's directory: {} (the Python server took it from its working directory, here {})",
                ours.display(),
                python.display()
            );
            ctx.note(NoteLevel::Info, msg);
            if python.is_file() && !ours.exists() {
                let msg = format!(
                    "a database exists at {} but not at {}: if it is yours, write sqluri = sqlite:///{} (absolute, four slashes)",
                    python.display(),
                    ours.display(),
                    python.display()
                );
                ctx.note(NoteLevel::Warning, msg);
            }
        }
    }
    if parsed.db == DatabaseUri::Memory {
        let msg = format!(
            "{origin}: in-memory database: all data is lost on restart, and it works with a single worker only"
        );
        ctx.note(NoteLevel::Warning, msg);
    }
    Ok(parsed.db)
}

/// `[storage]`/`[tokenserver] sqluri` naming another database than the one we use.
fn ignored_sqluri(ctx: &mut Ctx<'_>, section: &str, db: &DatabaseUri) -> Result<(), ConfigError> {
    let Some((uri, origin)) = ctx.single(section, "sqluri")? else {
        return Ok(());
    };
    let same = parse_sqluri(&uri, &ctx.base_dir, &origin).is_ok_and(|p| p.db.same_database(db));
    let used = match db {
        DatabaseUri::Sqlite(p) => p.display().to_string(),
        DatabaseUri::Memory => "in memory".to_string(),
        DatabaseUri::Mysql(_) | DatabaseUri::Postgresql(_) => db.to_string(),
    };
    if !same {
        let msg = format!(
            "{origin} = {} is ignored: this server keeps users and storage in one database ({used})",
            mask_uri_password(&uri)
        );
        ctx.note(NoteLevel::Warning, msg);
    }
    Ok(())
}

fn secrets(ctx: &mut Ctx<'_>) -> Result<Vec<String>, ConfigError> {
    let mut chosen = ctx.strings("syncserver", "secret");
    if let Some((path, origin)) = ctx.env_str("SYNCSERVER_SECRET_FILE") {
        if path.trim().is_empty() {
            return Err(ctx.invalid(origin, &path, "it must name a file holding the secret"));
        }
        let file = absolute(Path::new(&path), &ctx.cwd);
        let text = ctx.read_text(&file, "secret file (SYNCSERVER_SECRET_FILE)")?;
        chosen = Some((vec![text.trim().to_string()], origin));
    }
    if let Some((secret, origin)) = ctx.env_str("SYNCSERVER_SECRET") {
        chosen = Some((vec![secret], origin));
    }
    let Some((list, origin)) = chosen else {
        return Ok(Vec::new());
    };
    if list.is_empty() || list.iter().any(|s| s.trim().is_empty()) {
        return Err(ConfigError::EmptySecret {
            origin: Box::new(origin),
        });
    }
    if list.iter().any(|s| s.bytes().all(|b| b.is_ascii_digit())) {
        let msg = format!("{origin}: an all-digit secret is used as the text it is (the Python server failed every token request with it)");
        ctx.note(NoteLevel::Info, msg);
    }
    if list.iter().any(|s| s.chars().count() < 16) {
        let msg = format!(
            "{origin}: a secret shorter than 16 characters is easy to guess; use a long random one"
        );
        ctx.note(NoteLevel::Warning, msg);
    }
    Ok(list)
}

/// A URL setting: the environment, else the main option, else its alias; empty means unset.
fn url_setting(
    ctx: &mut Ctx<'_>,
    var: &str,
    main: (&str, &str),
    alias: Option<(&str, &str)>,
) -> Result<Option<String>, ConfigError> {
    let primary = ctx.single(main.0, main.1)?;
    let secondary = match alias {
        Some((section, key)) => ctx.single(section, key)?,
        None => None,
    };
    if let (Some((p, po)), Some((a, ao))) = (&primary, &secondary) {
        if p.trim_end_matches('/') != a.trim_end_matches('/') {
            ctx.note(
                NoteLevel::Warning,
                format!("{ao} is ignored: {po} is set too and wins"),
            );
        }
    }
    let Some((value, origin)) = ctx.env_str(var).or(primary).or(secondary) else {
        return Ok(None);
    };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    PublicUrl::parse_detailed(value).map_err(|p| ctx.invalid(origin, value, &p.to_string()))?;
    Ok(Some(value.to_string()))
}

fn allow_new_users(ctx: &mut Ctx<'_>) -> Result<bool, ConfigError> {
    let sync = ctx.boolean("syncserver", "allow_new_users")?;
    let token = ctx.boolean("tokenserver", "allow_new_users")?;
    let env = ctx.env_bool("SYNCSERVER_ALLOW_NEW_USERS")?;
    if let (Some(s), Some(t)) = (sync, token) {
        if s != t {
            let msg = format!(
                "{} wins over {}, as in the Python server",
                ctx.origin("tokenserver", "allow_new_users"),
                ctx.origin("syncserver", "allow_new_users")
            );
            ctx.note(NoteLevel::Info, msg);
        }
    }
    if let (Some(e), Some(t)) = (env, token) {
        if e != t {
            let msg = format!(
                "SYNCSERVER_ALLOW_NEW_USERS wins over {} (the Python server let the ini setting win)",
                ctx.origin("tokenserver", "allow_new_users")
            );
            ctx.note(NoteLevel::Info, msg);
        }
    }
    Ok(env.or(token).or(sync).unwrap_or(true))
}

/// `[syncserver] trusted_proxies` (or `SYNCSERVER_TRUSTED_PROXIES`): addresses and
/// networks, comma- or line-separated. A bad entry stops the start: silently
/// trusting less (or more) than the operator wrote would be worse.
fn trusted_proxies(ctx: &mut Ctx<'_>, forced: bool) -> Result<TrustedProxies, ConfigError> {
    let chosen = match ctx.env_str("SYNCSERVER_TRUSTED_PROXIES") {
        Some((v, origin)) => Some((vec![v], origin)),
        None => ctx.strings("syncserver", "trusted_proxies"),
    };
    let Some((lines, origin)) = chosen else {
        return Ok(TrustedProxies::default());
    };
    let text = lines.join("\n");
    let parsed = TrustedProxies::parse(&text)
        .map_err(|why| ctx.invalid(origin.clone(), &lines.join(", "), &why))?;
    if !parsed.is_empty() && forced {
        let msg = format!(
            "{origin} has no effect while force_wsgi_environ = true: the scheme is then always public_url's"
        );
        ctx.note(NoteLevel::Info, msg);
    }
    Ok(parsed)
}

fn loglevel(ctx: &mut Ctx<'_>) -> Result<Option<String>, ConfigError> {
    let Some((raw, origin)) = ctx.single("syncserver", "loglevel")? else {
        return Ok(None);
    };
    let level = match raw.to_ascii_lowercase().as_str() {
        "" => return Ok(None),
        "warning" | "warn" => "warn".to_string(),
        l @ ("off" | "error" | "info" | "debug" | "trace") => l.to_string(),
        _ => {
            let reason = "it must be one of off, error, warn, info, debug, trace";
            return Err(ctx.invalid(origin, &raw, reason));
        }
    };
    Ok(Some(level))
}

fn storage_limits(ctx: &mut Ctx<'_>) -> Result<StorageLimits, ConfigError> {
    let d = StorageLimits::default();
    let get = |key: &str, default: u64| -> Result<u64, ConfigError> {
        Ok(ctx.uint("storage", key, 1)?.unwrap_or(default))
    };
    let limits = StorageLimits {
        max_request_bytes: get("max_request_bytes", d.max_request_bytes)?,
        max_record_payload_bytes: get("max_record_payload_bytes", d.max_record_payload_bytes)?,
        max_post_records: get("max_post_records", d.max_post_records)?,
        max_post_bytes: get("max_post_bytes", d.max_post_bytes)?,
        max_total_records: get("max_total_records", d.max_total_records)?,
        max_total_bytes: get("max_total_bytes", d.max_total_bytes)?,
    };
    let l = &limits;
    let checks = [
        (
            "max_record_payload_bytes",
            l.max_record_payload_bytes,
            "max_post_bytes",
            l.max_post_bytes,
        ),
        (
            "max_post_bytes",
            l.max_post_bytes,
            "max_request_bytes",
            l.max_request_bytes,
        ),
        (
            "max_post_records",
            l.max_post_records,
            "max_total_records",
            l.max_total_records,
        ),
        (
            "max_post_bytes",
            l.max_post_bytes,
            "max_total_bytes",
            l.max_total_bytes,
        ),
    ];
    for (small, a, big, b) in checks {
        if a > b {
            let msg = format!(
                "[storage] {small} ({a}) is larger than {big} ({b}); clients may send uploads the server then refuses"
            );
            ctx.note(NoteLevel::Warning, msg);
        }
    }
    Ok(limits)
}

fn token_duration(ctx: &mut Ctx<'_>) -> Result<u64, ConfigError> {
    let set = ctx.uint("tokenserver", "token_duration", 1)?;
    if set.is_none() {
        let msg = "token_duration is not set: tokens last 3600 s, as with Mozilla's current server (the Python server's default was 300 s)";
        ctx.note(NoteLevel::Info, msg.to_string());
    }
    Ok(set.unwrap_or(3600))
}

fn node_url(ctx: &mut Ctx<'_>, public: &PublicUrl) -> Result<String, ConfigError> {
    let Some((raw, origin)) = ctx.single("tokenserver", "node_url")? else {
        return Ok(public.url.clone());
    };
    if raw.is_empty() {
        return Ok(public.url.clone());
    }
    let (url, _) = PublicUrl::parse_detailed(&raw)
        .map_err(|p| ctx.invalid(origin.clone(), &raw, &p.to_string()))?;
    if url.url != public.url {
        let msg = format!(
            "{origin} = {} differs from public_url {}: tokens will name that node, and this server refuses storage requests for another node (401); remove node_url unless another server serves storage with the same secret",
            url.url, public.url
        );
        ctx.note(NoteLevel::Warning, msg);
    }
    Ok(url.url)
}

fn metrics_secret(ctx: &mut Ctx<'_>) -> Result<Option<String>, ConfigError> {
    match ctx.single("fxa", "metrics_uid_secret_key")? {
        Some((v, origin)) if v.trim().is_empty() => {
            let reason = "it is empty; remove the line to have one generated";
            Err(ctx.invalid(origin, &v, reason))
        }
        other => Ok(other.map(|(v, _)| v)),
    }
}

fn allowed_users(ctx: &Ctx<'_>) -> Vec<String> {
    let lines = ctx
        .ini
        .get_strings("tokenserver", "allowed_users")
        .unwrap_or_default();
    lines
        .iter()
        .flat_map(|l| l.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

fn jwks(ctx: &mut Ctx<'_>) -> Result<(Option<String>, Option<PathBuf>), ConfigError> {
    // Read raw: a JWK set spread over several lines is still one JSON text.
    let inline = match ctx.ini.get_raw("oauth", "jwks").map(str::trim) {
        Some(raw) if !raw.is_empty() => {
            if let Err(why) = check_json(raw) {
                let shown: String = raw.chars().take(60).collect();
                return Err(ctx.invalid(ctx.origin("oauth", "jwks"), &shown, &why));
            }
            Some(raw.to_string())
        }
        _ => None,
    };
    let file = match ctx.single("oauth", "jwks_file")? {
        Some((p, origin)) if !p.is_empty() => {
            let path = absolute(Path::new(&p), &ctx.base_dir);
            let text = ctx.read_text(&path, "JWKS file ([oauth] jwks_file)")?;
            if let Err(why) = check_json(&text) {
                return Err(ctx.invalid(origin, &p, &format!("the file {why}")));
            }
            Some(path)
        }
        _ => None,
    };
    Ok((inline, file))
}

fn check_json(text: &str) -> Result<(), String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) if v.is_object() => Ok(()),
        Ok(_) => Err("it must be a JSON object (a JWK, or {\"keys\": [...]})".to_string()),
        Err(e) => Err(format!("it is not valid JSON ({e})")),
    }
}

/// Python settings we read only to say what became of them.
fn python_only_notes(ctx: &mut Ctx<'_>) -> Result<(), ConfigError> {
    if let Some((b, origin)) = ctx.single("tokenserver", "backend")? {
        let (level, msg) = if b == SQLNODE {
            (
                NoteLevel::Info,
                format!(
                    "{origin}: accounts are assigned to the storage nodes of [tokenserver] sqluri"
                ),
            )
        } else if b.ends_with("StaticNodeAssignment") {
            (
                NoteLevel::Info,
                format!("{origin} is a setting of the Python server only: ignored"),
            )
        } else {
            let msg = format!(
                "{origin} = {b} is ignored: users are assigned to this server's own storage (or, with {SQLNODE}, to the nodes of [tokenserver] sqluri)"
            );
            (NoteLevel::Warning, msg)
        };
        ctx.note(level, msg);
    }
    let checks = [
        (
            "tokenserver",
            "applications",
            "sync-1.5",
            "only sync-1.5 is served",
        ),
        (
            "endpoints",
            "sync-1.5",
            DEFAULT_ENDPOINT,
            "api_endpoint is always {public_url}/storage/1.5/{uid}",
        ),
        (
            "oauth",
            "scope",
            OLDSYNC_SCOPE,
            "the oldsync scope is always required",
        ),
    ];
    for (section, key, expected, why) in checks {
        if let Some((v, origin)) = ctx.single(section, key)? {
            if v != expected {
                ctx.note(
                    NoteLevel::Warning,
                    format!("{origin} = {v} is ignored: {why}"),
                );
            }
        }
    }
    Ok(())
}
