//! The application: routing, the headers every response carries, and the
//! one place (`errors`) where failures become responses.

mod errors;
mod origin;
mod routes;
mod serving;

use std::time::Instant;

use crate::config::{PublicUrl, TrustedProxies};
use crate::http::Request;
use crate::http::Response;
use crate::logonce::RateLimit;
use crate::storage::Storage;
use crate::timestamp::{self, ceil_tick, now_ms};
use crate::tokenserver::Tokenserver;
use errors::AppError;
use routes::Route;
pub use serving::Serving;

/// Headers clients may send cross-origin.
const CORS_HEADERS: &str = "Authorization, Content-Type, X-If-Modified-Since, X-If-Unmodified-Since, \
X-Weave-Records, X-Weave-Bytes, X-Weave-Total-Records, X-Weave-Total-Bytes, X-KeyID, X-Client-State";
/// Headers scripts may read cross-origin.
const CORS_EXPOSE: &str = "X-Last-Modified, X-Weave-Timestamp, X-Timestamp, X-Weave-Records, \
X-Weave-Next-Offset, X-Weave-Quota-Remaining, Retry-After, X-Weave-Backoff";

/// Settings of the application layer itself.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub public_url: PublicUrl,
    pub force_wsgi_environ: bool,
    pub trusted_proxies: TrustedProxies,
}

/// Everything a worker needs to answer requests; shared by all of them.
pub struct App {
    config: AppConfig,
    /// `None` on a tokenserver-only process (`role = tokenserver`).
    storage: Option<Storage>,
    /// `None` on a storage node (`role = storage`).
    tokenserver: Option<Tokenserver>,
    /// A misaddressed request is logged at most once a minute.
    mismatch_log: RateLimit,
}

impl App {
    pub fn new(
        config: AppConfig,
        storage: Option<Storage>,
        tokenserver: Option<Tokenserver>,
    ) -> App {
        App {
            config,
            storage,
            tokenserver,
            mismatch_log: RateLimit::new(),
        }
    }

    /// Answers one request; never fails (errors become responses).
    pub fn handle(&self, req: &Request) -> Response {
        let started = Instant::now();
        let start_ms = now_ms();
        let (route_label, result) = self.dispatch(req);
        let mut resp = result.unwrap_or_else(errors::to_response);
        finish(req, &mut resp, start_ms);
        log::info!(
            "{} {} {} {:.1}ms",
            req.method,
            route_label,
            resp.status,
            started.elapsed().as_secs_f64() * 1000.0
        );
        resp
    }

    fn dispatch(&self, req: &Request) -> (String, Result<Response, AppError>) {
        if req.method.is_empty() {
            return ("-".into(), Err(AppError::BadGateway("no REQUEST_METHOD")));
        }
        // Without a Host header the front end is broken (CGI requires one).
        if !self.config.force_wsgi_environ && req.header("host").is_none() {
            return ("-".into(), Err(AppError::BadGateway("no Host header")));
        }
        let addressed = origin::address(
            req,
            &self.config.public_url,
            self.config.force_wsgi_environ,
            &self.config.trusted_proxies,
        );
        let route = routes::route(&addressed.local_path);
        let label = match &route {
            Route::Storage { uid, .. } => format!("{} uid={uid}", addressed.local_path),
            _ => addressed.local_path.clone(),
        };
        if req.method == "OPTIONS" {
            return (label, Ok(Response::new(200, "text/plain", "")));
        }
        let needs_match = matches!(
            route,
            Route::Storage { .. } | Route::Token { .. } | Route::TokenDiscovery
        );
        if needs_match && addressed.application_url != self.config.public_url.url {
            self.log_mismatch(&addressed.application_url);
            let expected = self.config.public_url.url.clone();
            let scheme_only = addressed.scheme_only_mismatch(&self.config.public_url);
            let actual = addressed.application_url;
            let err = if scheme_only {
                AppError::SchemeMismatch { expected, actual }
            } else {
                AppError::PublicUrlMismatch { expected, actual }
            };
            return (label, Err(err));
        }
        let get = matches!(req.method.as_str(), "GET" | "HEAD");
        let result = match route {
            Route::Root if get => Ok(Response::new(200, "text/html; charset=UTF-8", "it works!")),
            Route::StorageRoot if get => Ok(Response::json(
                200,
                "\"It Works!  SyncStorage is successfully running on this host.\"",
            )),
            Route::StorageHeartbeat if get => {
                Ok(Response::new(200, "text/plain; charset=UTF-8", "OK"))
            }
            Route::LbHeartbeat if get => Ok(Response::json(200, "{}")),
            Route::Heartbeat if get => Ok(self.heartbeat()),
            Route::Storage { uid, target } => match &self.storage {
                Some(storage) => storage
                    .handle(req, &addressed.origin, uid, &target)
                    .map_err(AppError::from),
                None => Err(AppError::NotFound),
            },
            Route::Token {
                application,
                version,
            } => match &self.tokenserver {
                Some(tokenserver) => tokenserver
                    .handle(req, &application, &version)
                    .map_err(AppError::from),
                None => Err(AppError::NotFound),
            },
            Route::TokenDiscovery if get => match &self.tokenserver {
                Some(tokenserver) => Ok(tokenserver.discovery()),
                None => Err(AppError::NotFound),
            },
            Route::NotFound => Err(AppError::NotFound),
            _ => Err(AppError::MethodNotAllowed("GET, HEAD")),
        };
        (label, result)
    }

    fn heartbeat(&self) -> Response {
        let db = match (&self.storage, &self.tokenserver) {
            (Some(storage), _) => storage.pool().get().and_then(|mut db| db.ping()),
            (None, Some(tokenserver)) => tokenserver.ping(),
            (None, None) => Ok(()),
        };
        let (status, db_state) = match &db {
            Ok(()) => (200, "Ok"),
            Err(e) => {
                log::error!("heartbeat: database check failed: {e}");
                (503, "Err")
            }
        };
        let body = serde_json::json!({
            "status": if status == 200 { "Ok" } else { "Err" },
            "database": db_state,
            "version": env!("CARGO_PKG_VERSION"),
        });
        Response::json(status, body.to_string())
    }

    fn log_mismatch(&self, actual: &str) {
        if self.mismatch_log.due() {
            log::warn!(
                "requests arrive for {actual} but public_url is {}: clients sign their requests for \
                 the address in public_url, so set public_url to the address Firefox uses (scheme, \
                 host, port and path), make the web server pass the original Host header (nginx: \
                 fastcgi_param HTTP_HOST $http_host), list a TLS proxy in front of the web server \
                 in trusted_proxies so that its X-Forwarded-Proto counts, or set \
                 force_wsgi_environ = true if a proxy rewrites the address; such requests get 421 \
                 (logged at most once a minute).",
                self.config.public_url.url
            );
        }
    }
}

/// The headers every response carries: `X-Weave-Timestamp` (by the Python
/// server's rule), `X-Timestamp`, and CORS when the request has an Origin.
pub fn finish(req: &Request, resp: &mut Response, start_ms: i64) {
    let ts1 = ceil_tick(start_ms);
    let ts2 = resp
        .header("X-Last-Modified")
        .and_then(timestamp::parse)
        .unwrap_or_else(|| ceil_tick(now_ms()));
    let weave = if matches!(req.method.as_str(), "GET" | "HEAD") || ts2 == 0 {
        ts1.max(ts2)
    } else {
        ts2
    };
    resp.set_header("X-Weave-Timestamp", timestamp::format(weave));
    resp.set_header("X-Timestamp", (now_ms() / 1000).to_string());
    if let Some(origin) = req.header_str("origin") {
        resp.set_header("Access-Control-Allow-Origin", origin.to_string());
        resp.set_header("Vary", "Origin");
        if req.method == "OPTIONS" {
            resp.set_header(
                "Access-Control-Allow-Methods",
                "DELETE, GET, HEAD, POST, PUT, OPTIONS",
            );
            resp.set_header("Access-Control-Allow-Headers", CORS_HEADERS);
            resp.set_header("Access-Control-Max-Age", "1728000");
        } else {
            resp.set_header("Access-Control-Expose-Headers", CORS_EXPOSE);
        }
    }
}
