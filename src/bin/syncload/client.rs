//! One simulated Sync client's HTTP side: credentials, Hawk signing, keep-alive requests
//! (built ahead of time as bytes by [`Client::sign`]/[`Client::prepare`], then sent).

use std::cell::RefCell;
use std::fmt;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use syncserver_fcgi::auth::{client_header, mint, HawkRequest, TokenPayload};
use syncserver_fcgi::uid::Uid;

use crate::http::{self, Conn};

/// Why a request got no usable answer.
#[derive(Debug)]
pub enum ClientError {
    /// The URL could not be split into scheme, host, port and path.
    BadUrl(String),
    /// No HTTP answer (connect, I/O or protocol failure).
    Transport(String),
    /// A token server reply that is not the expected JSON.
    BadTokenReply(String),
    /// A uid no account can have (0, or beyond what databases store).
    BadUid(u64),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::BadUrl(u) => write!(f, "not an http(s) URL: {u}"),
            ClientError::BadUid(uid) => write!(f, "uid {uid} cannot be an account's"),
            ClientError::Transport(m) => write!(f, "transport: {m}"),
            ClientError::BadTokenReply(m) => write!(f, "token server reply: {m}"),
        }
    }
}

/// A URL split the way Hawk needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// Lower-cased host name.
    pub host: String,
    /// Explicit port, or 80/443 from the scheme.
    pub port: u16,
    /// Path without a trailing slash ("" for the root).
    pub path: String,
}

impl Endpoint {
    /// Parses `scheme://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<Endpoint, ClientError> {
        let bad = || ClientError::BadUrl(url.to_string());
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let default = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad()),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (authority, default),
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Endpoint {
            scheme: scheme.to_string(),
            host: host.to_ascii_lowercase(),
            port,
            path: path.trim_end_matches('/').to_string(),
        })
    }

    /// `scheme://host:port` (always with the port, so the Host header matches what we sign).
    pub fn origin(&self) -> String {
        format!("{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// What a client needs to talk to one user's storage.
#[derive(Debug, Clone)]
pub struct Creds {
    pub uid: u64,
    /// The token (Hawk id).
    pub token: String,
    /// The derived Hawk key.
    pub key: String,
    /// Where this user's storage lives (`…/storage/1.5/{uid}`).
    pub api: Endpoint,
}

/// Mints a tokenlib token for `uid` naming `node`, as the target's own token server would.
pub fn mint_creds(
    secret: &str,
    node: &str,
    storage_path: &str,
    uid: u64,
) -> Result<Creds, ClientError> {
    let payload = TokenPayload {
        uid: Uid::from_wire(uid).ok_or(ClientError::BadUid(uid))?,
        node: node.trim_end_matches('/').to_string(),
        expires: (now_secs() + 6.0 * 3600.0).floor(),
        salt: String::new(),
        fxa_uid: Some(format!("{:032x}", 0x5e_0000_0000_u64 + uid)),
        fxa_kid: Some("0000000001000-qqo".into()),
        hashed_fxa_uid: Some(format!("{:032x}", 0x4a_0000_0000_u64 + uid)),
        hashed_device_id: Some(format!("{:032x}", 0xde_0000_0000_u64 + uid)),
    };
    let (token, key) = mint(secret, &payload);
    let api = Endpoint::parse(&format!(
        "{}{}/{uid}",
        node.trim_end_matches('/'),
        storage_path.trim_end_matches('/')
    ))?;
    Ok(Creds {
        uid,
        token,
        key,
        api,
    })
}

/// Seconds since the epoch.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An answer: status, the headers the workloads follow, and the body.
#[derive(Debug, Default)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `X-Last-Modified`.
    pub last_modified: Option<String>,
    /// `X-Weave-Next-Offset`.
    pub next_offset: Option<String>,
    /// The whole body (always read, so the connection can be reused).
    pub body: Vec<u8>,
}

/// A request to send.
pub struct Req<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Absolute URL.
    pub url: &'a str,
    /// Extra headers.
    pub headers: &'a [(&'a str, &'a str)],
    /// Body (sent as `application/json` when not empty).
    pub body: &'a [u8],
}

/// A request made ready to send: for `http://`, every byte of it; `https://` goes through
/// `ureq` (the hand-written client speaks no TLS).
#[derive(Debug, Clone)]
pub enum Prepared {
    Http {
        host: String,
        port: u16,
        bytes: Vec<u8>,
    },
    Https {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

/// One client: a keep-alive connection per host it talks to.
pub struct Client {
    conns: RefCell<Vec<Conn>>,
    agent: RefCell<Option<ureq::Agent>>,
    nonce_prefix: String,
}

static CLIENTS: AtomicU64 = AtomicU64::new(0);
static NONCES: AtomicU64 = AtomicU64::new(0);
const TIMEOUT: Duration = Duration::from_secs(30);

impl Client {
    /// A new client (connections open on first use).
    pub fn new() -> Client {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Client {
            conns: RefCell::new(Vec::new()),
            agent: RefCell::new(None),
            nonce_prefix: format!(
                "{:x}{:x}{nanos:x}",
                std::process::id(),
                CLIENTS.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// Builds `r` for sending.
    pub fn prepare(&self, r: &Req) -> Result<Prepared, ClientError> {
        let ep = Endpoint::parse(r.url)?;
        Ok(self.prepare_at(&ep, &ep.path, r))
    }

    /// Builds `r` for sending to `ep`, with `path` (and query) as the request target.
    fn prepare_at(&self, ep: &Endpoint, path: &str, r: &Req) -> Prepared {
        if ep.scheme == "http" {
            return Prepared::Http {
                host: ep.host.clone(),
                port: ep.port,
                bytes: http::build(r.method, &ep.host, ep.port, path, r.headers, r.body),
            };
        }
        Prepared::Https {
            method: r.method.to_string(),
            url: r.url.to_string(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: r.body.to_vec(),
        }
    }

    /// Sends a prepared request and reads the whole answer.
    pub fn execute(&self, p: &Prepared) -> Result<Reply, ClientError> {
        match p {
            Prepared::Http { host, port, bytes } => {
                let mut conns = self.conns.borrow_mut();
                let i = match conns.iter().position(|c| c.is(host, *port)) {
                    Some(i) => i,
                    None => {
                        conns.push(Conn::new(host, *port, TIMEOUT));
                        conns.len() - 1
                    }
                };
                let r = conns[i]
                    .roundtrip(bytes)
                    .map_err(|e| ClientError::Transport(e.0))?;
                Ok(Reply {
                    status: r.status,
                    last_modified: r.last_modified,
                    next_offset: r.next_offset,
                    body: r.body,
                })
            }
            Prepared::Https {
                method,
                url,
                headers,
                body,
            } => self.ureq_send(method, url, headers, body),
        }
    }

    fn ureq_send(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Reply, ClientError> {
        let agent = self
            .agent
            .borrow_mut()
            .get_or_insert_with(|| {
                ureq::AgentBuilder::new()
                    .max_idle_connections_per_host(1)
                    .timeout(TIMEOUT)
                    .redirects(0)
                    .build()
            })
            .clone();
        let mut rq = agent.request(method, url);
        for (k, v) in headers {
            rq = rq.set(k, v);
        }
        let res = if body.is_empty() {
            rq.call()
        } else {
            rq.set("Content-Type", "application/json").send_bytes(body)
        };
        let resp = match res {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(ureq::Error::Transport(t)) => return Err(ClientError::Transport(t.to_string())),
        };
        let mut reply = Reply {
            status: resp.status(),
            last_modified: resp.header("X-Last-Modified").map(str::to_string),
            next_offset: resp.header("X-Weave-Next-Offset").map(str::to_string),
            body: Vec::new(),
        };
        resp.into_reader()
            .take(64 * 1024 * 1024)
            .read_to_end(&mut reply.body)
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        Ok(reply)
    }

    /// Sends `r` as is.
    pub fn send(&self, r: &Req) -> Result<Reply, ClientError> {
        self.execute(&self.prepare(r)?)
    }

    /// Builds a Hawk-signed request for `c` to `rest` (e.g. `/info/collections`), with a fresh
    /// nonce and the current time.
    pub fn sign(
        &self,
        c: &Creds,
        method: &str,
        rest: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Prepared {
        let path = format!("{}{rest}", c.api.path);
        let hawk = HawkRequest {
            method,
            path_and_query: &path,
            host: &c.api.host,
            port: c.api.port,
            content_type: (!body.is_empty()).then_some(b"application/json".as_slice()),
            body,
        };
        let nonce = format!(
            "{}-{}",
            self.nonce_prefix,
            NONCES.fetch_add(1, Ordering::Relaxed)
        );
        let auth = client_header(&c.key, &c.token, now_secs() as i64, &nonce, &hawk, false);
        let mut all: Vec<(&str, &str)> = Vec::with_capacity(headers.len() + 1);
        all.extend_from_slice(headers);
        all.push(("Authorization", &auth));
        let url = if c.api.scheme == "http" {
            String::new()
        } else {
            format!("{}{path}", c.api.origin())
        };
        self.prepare_at(
            &c.api,
            &path,
            &Req {
                method,
                url: &url,
                headers: &all,
                body,
            },
        )
    }

    /// Sends a Hawk-signed request (see [`Client::sign`]).
    pub fn signed(
        &self,
        c: &Creds,
        method: &str,
        rest: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, ClientError> {
        self.execute(&self.sign(c, method, rest, headers, body))
    }

    /// Builds a token server (`…/token`) request for storage credentials with an OAuth bearer
    /// token.
    pub fn token_request(
        &self,
        token_server: &str,
        bearer: &str,
        key_id: &str,
    ) -> Result<Prepared, ClientError> {
        let url = format!("{}/1.0/sync/1.5", token_server.trim_end_matches('/'));
        let auth = format!("Bearer {bearer}");
        self.prepare(&Req {
            method: "GET",
            url: &url,
            headers: &[("Authorization", &auth), ("X-KeyID", key_id)],
            body: b"",
        })
    }

    /// Asks a token server for storage credentials (see [`Client::token_request`]).
    pub fn token(
        &self,
        token_server: &str,
        bearer: &str,
        key_id: &str,
    ) -> Result<Reply, ClientError> {
        self.execute(&self.token_request(token_server, bearer, key_id)?)
    }
}

/// Storage credentials from a successful token server reply.
pub fn creds_from_token_reply(body: &[u8]) -> Result<Creds, ClientError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ClientError::BadTokenReply(e.to_string()))?;
    let field = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| ClientError::BadTokenReply(format!("no string {k:?}")))
    };
    let uid = v
        .get("uid")
        .and_then(|x| x.as_u64())
        .ok_or_else(|| ClientError::BadTokenReply("no integer \"uid\"".into()))?;
    Ok(Creds {
        uid,
        token: field("id")?,
        key: field("key")?,
        api: Endpoint::parse(&field("api_endpoint")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_host_port_and_path() {
        let e = Endpoint::parse("http://LocalHost:5000/sync/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("localhost", 5000, "/sync")
        );
        assert_eq!(Endpoint::parse("https://h").unwrap().port, 443);
        assert_eq!(
            Endpoint::parse("https://h").unwrap().origin(),
            "https://h:443"
        );
        assert!(Endpoint::parse("ftp://h").is_err());
        assert!(Endpoint::parse("http://h:x").is_err());
    }

    #[test]
    fn minted_creds_point_at_the_users_storage() {
        let c = mint_creds("s", "http://127.0.0.1:8080/", "/storage/1.5", 7).unwrap();
        assert_eq!(c.api.path, "/storage/1.5/7");
        assert_eq!(c.key.len(), 44);
    }

    #[test]
    fn token_replies_become_creds() {
        let body = br#"{"id": "t", "key": "k", "uid": 3, "api_endpoint": "http://h:1/storage/1.5/3", "duration": 300}"#;
        let c = creds_from_token_reply(body).unwrap();
        assert_eq!((c.uid, c.api.port), (3, 1));
        assert!(creds_from_token_reply(b"{}").is_err());
    }
}
