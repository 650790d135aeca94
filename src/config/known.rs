//! Which sections and options we know, and the notes for the ones we do not use.
//!
//! Nothing here is fatal: the Python server refused unknown `[hawkauth]` keys, we only warn.

use super::read::Ctx;
use super::NoteLevel;

/// What we do with an option.
#[derive(Clone, Copy)]
enum Use {
    /// Read into `Settings` (any notes come from the code that reads it).
    Read,
    /// A Python-only setting with no effect here.
    Ignored,
    /// A setting that changed behaviour in Python and does nothing here: worth a warning.
    Dropped(&'static str),
}

/// An option name (a trailing `*` matches any suffix) and its use.
type Rule = (&'static str, Use);

const SYNCSERVER: &[Rule] = &[
    ("public_url", Use::Read),
    ("sqluri", Use::Read),
    ("secret", Use::Read),
    ("identity_provider", Use::Read),
    ("allow_new_users", Use::Read),
    ("force_wsgi_environ", Use::Read),
    ("trusted_proxies", Use::Read),
    ("browserid_verifier", Use::Read),
    ("oauth_verifier", Use::Read),
    ("debug_enabled", Use::Read),
    ("loglevel", Use::Read),
    ("role", Use::Read),
];

const STORAGE: &[Rule] = &[
    ("max_request_bytes", Use::Read),
    ("max_record_payload_bytes", Use::Read),
    ("max_post_records", Use::Read),
    ("max_post_bytes", Use::Read),
    ("max_total_records", Use::Read),
    ("max_total_bytes", Use::Read),
    ("quota_size", Use::Read),
    ("batch_upload_enabled", Use::Read),
    ("node_secret", Use::Read),
    ("sqluri", Use::Read),
    ("backend", Use::Read),
    ("standard_collections", Use::Ignored),
    ("create_tables", Use::Ignored),
    ("pool_*", Use::Ignored),
    ("no_pool", Use::Ignored),
    ("reset_on_return", Use::Ignored),
    ("pagination_batch_size", Use::Ignored),
    ("force_consistent_sort_order", Use::Ignored),
    ("shard", Use::Ignored),
    ("shardsize", Use::Ignored),
    ("allow_migration", Use::Ignored),
    ("optimize_table_*", Use::Ignored),
];

const HAWKAUTH: &[Rule] = &[
    ("expired_token_timeout", Use::Read),
    ("timestamp_skew", Use::Read),
    ("max_nonces", Use::Read),
    (
        "secret",
        Use::Dropped("tokens are checked with [syncserver] secret"),
    ),
    (
        "secrets_file",
        Use::Dropped("tokens are checked with [syncserver] secret"),
    ),
    (
        "secrets.*",
        Use::Dropped("tokens are checked with [syncserver] secret"),
    ),
    (
        "master_secret",
        Use::Dropped("tokens are checked with [syncserver] secret"),
    ),
    (
        "nonce_cache",
        Use::Dropped("nonces are always checked; see timestamp_skew"),
    ),
    ("nonce_cache_*", Use::Ignored),
    ("find_groups", Use::Ignored),
    ("decode_hawk_id", Use::Ignored),
    ("encode_hawk_id", Use::Ignored),
];

const TOKENSERVER: &[Rule] = &[
    ("token_duration", Use::Read),
    ("node_url", Use::Read),
    ("allow_new_users", Use::Read),
    ("allowed_users", Use::Read),
    ("max_users", Use::Read),
    ("applications", Use::Read),
    ("backend", Use::Read),
    ("sqluri", Use::Read),
    (
        "secrets_file",
        Use::Dropped("tokens are signed with [syncserver] secret"),
    ),
    (
        "secrets.*",
        Use::Dropped("tokens are signed with [syncserver] secret"),
    ),
    ("node_type_patterns", Use::Ignored),
    ("monkey_patch_gevent", Use::Ignored),
    ("pool_*", Use::Ignored),
    ("spanner_*", Use::Ignored),
];

const FXA: &[Rule] = &[("metrics_uid_secret_key", Use::Read)];

const OAUTH: &[Rule] = &[
    ("jwks", Use::Read),
    ("jwks_file", Use::Read),
    ("timeout", Use::Read),
    ("server_url", Use::Read),
    ("default_issuer", Use::Read),
    ("scope", Use::Read),
    ("backend", Use::Ignored),
];

const BROWSERID: &[Rule] = &[
    ("verifier_url", Use::Read),
    ("backend", Use::Ignored),
    ("audiences", Use::Ignored),
    ("trusted_issuers", Use::Ignored),
    ("allowed_issuers", Use::Ignored),
    ("timeout", Use::Ignored),
    ("ssl_certificate", Use::Ignored),
];

const ENDPOINTS: &[Rule] = &[("sync-1.5", Use::Read)];

const MOZSVC: &[Rule] = &[
    ("retry_after", Use::Ignored),
    ("backoff_probability", Use::Ignored),
    ("unavailable_probability", Use::Ignored),
    ("dont_fuzz", Use::Ignored),
];

/// What a section is to us.
enum Kind {
    Keys(&'static [Rule]),
    /// Read by gunicorn/PasteDeploy/Python logging only.
    Silent,
    ServerMain,
    PerHost,
    Unknown,
}

fn kind(section: &str) -> Kind {
    match section {
        "syncserver" => Kind::Keys(SYNCSERVER),
        "storage" => Kind::Keys(STORAGE),
        "hawkauth" => Kind::Keys(HAWKAUTH),
        "tokenserver" => Kind::Keys(TOKENSERVER),
        "fxa" => Kind::Keys(FXA),
        "oauth" => Kind::Keys(OAUTH),
        "browserid" => Kind::Keys(BROWSERID),
        "endpoints" => Kind::Keys(ENDPOINTS),
        "mozsvc" => Kind::Keys(MOZSVC),
        "server:main" => Kind::ServerMain,
        "app:main" | "loggers" | "handlers" | "formatters" => Kind::Silent,
        s if [
            "logger_",
            "handler_",
            "formatter_",
            "pipeline:",
            "filter:",
            "app:",
        ]
        .iter()
        .any(|p| s.starts_with(p)) =>
        {
            Kind::Silent
        }
        s if s.starts_with("host:") => Kind::PerHost,
        _ => Kind::Unknown,
    }
}

fn lookup(rules: &[Rule], key: &str) -> Option<Use> {
    rules.iter().find_map(|(name, u)| {
        let hit = match name.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => *name == key,
        };
        hit.then_some(*u)
    })
}

/// Adds a note for every section and option we do not read.
pub(super) fn check(ctx: &mut Ctx<'_>) {
    let sections: Vec<String> = ctx.ini.sections().map(str::to_string).collect();
    for section in &sections {
        let at = ctx.ini.section_line(section).unwrap_or(0);
        match kind(section) {
            Kind::Silent => {}
            Kind::ServerMain => ctx.note(
                NoteLevel::Info,
                format!("[server:main] (line {at}) is ignored: host, port and workers are set on the command line or by the web server now"),
            ),
            Kind::PerHost => ctx.note(
                NoteLevel::Warning,
                format!("[{section}] (line {at}) is ignored: per-host storage settings are not supported"),
            ),
            Kind::Unknown => ctx.note(
                NoteLevel::Warning,
                format!("[{section}] (line {at}) is not a section we know: ignored (check the spelling)"),
            ),
            Kind::Keys(rules) => check_keys(ctx, section, rules),
        }
    }
}

fn check_keys(ctx: &mut Ctx<'_>, section: &str, rules: &[Rule]) {
    let keys: Vec<String> = ctx.ini.keys(section).map(str::to_string).collect();
    for key in &keys {
        let origin = ctx.origin(section, key);
        match lookup(rules, key) {
            Some(Use::Read) => {}
            Some(Use::Ignored) => ctx.note(
                NoteLevel::Info,
                format!("{origin} is a setting of the Python server only: ignored"),
            ),
            Some(Use::Dropped(why)) => ctx.note(
                NoteLevel::Warning,
                format!("{origin} is not supported and ignored: {why}"),
            ),
            None => {
                let extra = if section == "hawkauth" {
                    " (the Python server refused to start with it)"
                } else {
                    ""
                };
                let advice = match suggest(section, key) {
                    Some((s, name)) if s == section => format!("did you mean {name}?"),
                    Some((s, name)) => format!("did you mean [{s}] {name}?"),
                    None => "check the spelling".to_string(),
                };
                ctx.note(
                    NoteLevel::Warning,
                    format!("{origin} is not a setting we know: ignored{extra}; {advice}"),
                );
            }
        }
    }
}

/// Sections whose options we know, for suggestions.
const KNOWN_SECTIONS: &[&str] = &[
    "syncserver",
    "tokenserver",
    "storage",
    "hawkauth",
    "fxa",
    "oauth",
    "browserid",
    "endpoints",
];

/// Edit distance (insertions, deletions, substitutions of characters).
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Whether `key` is close enough to `name` to be a misspelling of it: at most
/// one edit in three characters (and always one).
fn close(key: &str, name: &str) -> Option<usize> {
    let d = levenshtein(key, name);
    let longest = key.chars().count().max(name.chars().count());
    (d <= (longest / 3).max(1)).then_some(d)
}

/// The known option (of those we read) closest to an unknown `key` of
/// `section`: one of the same section, unless another section has a strictly
/// closer one (an option put in the wrong section).
fn suggest(section: &str, key: &str) -> Option<(&'static str, &'static str)> {
    let mut best: Option<(usize, bool, &'static str, &'static str)> = None;
    for &other in KNOWN_SECTIONS {
        let Kind::Keys(rules) = kind(other) else {
            continue;
        };
        for (name, u) in rules {
            if !matches!(u, Use::Read) || name.ends_with('*') {
                continue;
            }
            let Some(d) = close(key, name) else { continue };
            // Lower distance wins; on a tie the key's own section wins.
            let rank = (d, other != section);
            if best.is_none_or(|(bd, bo, _, _)| rank < (bd, bo)) {
                best = Some((d, other != section, other, name));
            }
        }
    }
    best.map(|(_, _, s, name)| (s, name))
}

/// An option present in the file, not one we know, that looks like a
/// misspelling of the required `[section] key`, for the "not set" error.
pub(super) fn near_miss(ctx: &Ctx<'_>, section: &str, key: &str) -> Option<String> {
    let mut best: Option<(usize, bool, String)> = None;
    for s in ctx.ini.sections() {
        let rules = match kind(s) {
            Kind::Keys(rules) => rules,
            Kind::Unknown => &[][..],
            _ => continue,
        };
        for k in ctx.ini.keys(s) {
            if lookup(rules, k).is_some() {
                continue;
            }
            let Some(d) = close(k, key) else { continue };
            let rank = (d, s != section);
            if best.as_ref().is_none_or(|(bd, bo, _)| rank < (*bd, *bo)) {
                best = Some((d, s != section, ctx.origin(s, k).to_string()));
            }
        }
    }
    best.map(|(_, _, origin)| origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("abc", ""), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("publc_url", "public_url"), 1);
        assert_eq!(levenshtein("publicurl", "public_url"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("sqlrui", "sqluri"), 2);
        assert_eq!(levenshtein("é", "e"), 1);
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("syncserver", "publc_url"),
            Some(("syncserver", "public_url"))
        );
        assert_eq!(
            suggest("syncserver", "secrets"),
            Some(("syncserver", "secret"))
        );
        assert_eq!(suggest("storage", "quota"), None, "too far from quota_size");
        assert_eq!(
            suggest("storage", "max_post_record"),
            Some(("storage", "max_post_records"))
        );
        // An option of another section, written in the wrong one.
        assert_eq!(
            suggest("syncserver", "token_duration"),
            Some(("tokenserver", "token_duration"))
        );
        // `sqluri` is read in three sections: the key's own wins the tie.
        assert_eq!(suggest("storage", "sqlur"), Some(("storage", "sqluri")));
        assert_eq!(suggest("syncserver", "colour"), None);
        assert_eq!(suggest("hawkauth", "weird"), None);
    }
}
