//! URL routing: the raw path (prefix already removed) to a [`Route`].
//!
//! Paths are matched on the raw `REQUEST_URI` (not the decoded, slash-merged
//! `PATH_INFO`), so a record id may contain an encoded `/` or `//`.

use crate::http::percent_decode;
use crate::storage::bso::{valid_collection, valid_id};
use crate::storage::{Info, Target};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/`: "it works!".
    Root,
    /// `/storage/`: the storage greeting.
    StorageRoot,
    /// `/storage/__heartbeat__`: the Python server's plain `OK`.
    StorageHeartbeat,
    /// `/__heartbeat__`: JSON with database health.
    Heartbeat,
    /// `/__lbheartbeat__`, `/token/__lbheartbeat__`, `/storage/__lbheartbeat__`: `{}`.
    LbHeartbeat,
    /// `/token/`: the tokenserver discovery document.
    TokenDiscovery,
    /// `/token/1.0/{application}/{version}` or `/1.0/{application}/{version}`.
    Token {
        /// Application name (only `sync`).
        application: String,
        /// Version (only `1.5`).
        version: String,
    },
    /// `/storage/1.5/{uid}/...` or `/1.5/{uid}/...`.
    Storage {
        /// The uid in the URL.
        uid: u64,
        /// What below it.
        target: Target,
    },
    NotFound,
}

/// Routes a raw path such as `/storage/1.5/42/storage/bookmarks/a%2Fb`.
pub fn route(raw_path: &str) -> Route {
    let segments: Vec<&str> = raw_path.split('/').collect();
    // The first element is "" for an absolute path.
    let rest: &[&str] = match segments.split_first() {
        Some((&"", rest)) => rest,
        _ => return Route::NotFound,
    };
    match rest {
        [] | [""] => Route::Root,
        ["__heartbeat__"] => Route::Heartbeat,
        ["__lbheartbeat__"] | ["token", "__lbheartbeat__"] | ["storage", "__lbheartbeat__"] => {
            Route::LbHeartbeat
        }
        ["token", ""] => Route::TokenDiscovery,
        ["token", "1.0", app, version] | ["1.0", app, version] => token(app, version),
        ["storage", ""] => Route::StorageRoot,
        ["storage", "__heartbeat__"] => Route::StorageHeartbeat,
        ["storage", "1.5", uid, tail @ ..] | ["1.5", uid, tail @ ..] => storage(uid, tail),
        _ => Route::NotFound,
    }
}

fn token(app: &str, version: &str) -> Route {
    match (percent_decode(app), percent_decode(version)) {
        (Some(application), Some(version)) => Route::Token {
            application,
            version,
        },
        _ => Route::NotFound,
    }
}

fn storage(uid: &str, tail: &[&str]) -> Route {
    if uid.is_empty() || uid.len() > 10 || !uid.bytes().all(|b| b.is_ascii_digit()) {
        return Route::NotFound;
    }
    let Ok(uid) = uid.parse::<u64>() else {
        return Route::NotFound;
    };
    let target = match tail {
        // syncclient deletes everything with a trailing slash on api_endpoint.
        [] | [""] | ["storage"] => Some(Target::Root),
        ["info", view] => info(view).map(Target::Info),
        ["storage", collection] => collection_name(collection).map(Target::Collection),
        ["storage", collection, item @ ..] => collection_name(collection).and_then(|c| {
            // The id is everything after the collection, decoded, slashes included.
            let id = percent_decode(&item.join("/"))?;
            valid_id(&id).then_some(Target::Item(c, id))
        }),
        _ => None,
    };
    match target {
        Some(target) => Route::Storage { uid, target },
        None => Route::NotFound,
    }
}

fn info(view: &str) -> Option<Info> {
    Some(match view {
        "collections" => Info::Collections,
        "collection_counts" => Info::Counts,
        "collection_usage" => Info::Usage,
        "quota" => Info::Quota,
        "configuration" => Info::Configuration,
        _ => return None,
    })
}

fn collection_name(raw: &str) -> Option<String> {
    percent_decode(raw).filter(|c| valid_collection(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(uid: u64, target: Target) -> Route {
        Route::Storage { uid, target }
    }

    #[test]
    fn storage_routes_in_both_layouts() {
        assert_eq!(route("/storage/1.5/42"), st(42, Target::Root));
        assert_eq!(route("/1.5/42/storage"), st(42, Target::Root));
        assert_eq!(route("/storage/1.5/42/"), st(42, Target::Root));
        assert_eq!(
            route("/1.5/42/info/collections"),
            st(42, Target::Info(Info::Collections))
        );
        assert_eq!(
            route("/storage/1.5/1/info/quota"),
            st(1, Target::Info(Info::Quota))
        );
        assert_eq!(
            route("/storage/1.5/1/storage/bookmarks"),
            st(1, Target::Collection("bookmarks".into()))
        );
        assert_eq!(
            route("/1.5/1/storage/col/a/b"),
            st(1, Target::Item("col".into(), "a/b".into()))
        );
        assert_eq!(
            route("/1.5/1/storage/col/a%2Fc%20d"),
            st(1, Target::Item("col".into(), "a/c d".into()))
        );
    }

    #[test]
    fn bad_storage_paths_are_404() {
        for p in [
            "/storage/1.5/abc/info/collections",
            "/storage/1.5/12345678901/info/collections",
            "/storage/1.5/1/info",
            "/storage/1.5/1/info/nope",
            "/storage/1.5/1/storage/col/",
            "/storage/1.5/1/storage/bad%2Fname",
            "/storage/1.5/1/storage/col/%zz",
            "/storage/1.5/1/storage/col/%C3%A9",
            "/storage/1.6/1/info/collections",
            "/storage",
            "/token",
            "relative",
        ] {
            assert_eq!(route(p), Route::NotFound, "{p}");
        }
        assert_eq!(
            route(&format!("/1.5/1/storage/c/{}", "x".repeat(65))),
            Route::NotFound
        );
    }

    #[test]
    fn service_routes() {
        assert_eq!(route("/"), Route::Root);
        assert_eq!(route(""), Route::Root);
        assert_eq!(route("/token/"), Route::TokenDiscovery);
        assert_eq!(route("/storage/"), Route::StorageRoot);
        assert_eq!(route("/storage/__heartbeat__"), Route::StorageHeartbeat);
        assert_eq!(route("/storage/__lbheartbeat__"), Route::LbHeartbeat);
        assert_eq!(route("/__heartbeat__"), Route::Heartbeat);
        assert_eq!(
            route("/token/1.0/sync/1.5"),
            Route::Token {
                application: "sync".into(),
                version: "1.5".into()
            }
        );
        assert_eq!(
            route("/1.0/sync/1.5"),
            Route::Token {
                application: "sync".into(),
                version: "1.5".into()
            }
        );
    }
}
