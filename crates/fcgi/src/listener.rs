//! Where the listening socket comes from: our own bind, systemd socket activation (fd 3), or a
//! FastCGI spawner (fd 0: mod_fcgid, spawn-fcgi).

use std::fmt;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::sys;

/// fd on which systemd (and `systemd-socket-activate`) passes the first socket.
const SD_LISTEN_FDS_START: RawFd = 3;

/// An address given with `--bind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    /// A unix socket path (`unix:/run/sync.sock`).
    Unix(PathBuf),
    /// A TCP `host:port` (`tcp:127.0.0.1:8000`, `127.0.0.1:8000`, `[::1]:8000`).
    Tcp(String),
}

impl FromStr for BindAddr {
    type Err = ListenerError;

    /// Parses `unix:PATH`, `tcp:HOST:PORT`, `HOST:PORT` or `[V6]:PORT`; a bare absolute path is
    /// taken as a unix socket too, since that is what people type.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| ListenerError::BadBindAddr {
            input: s.to_string(),
            reason,
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("the unix socket path is empty"));
            }
            return Ok(BindAddr::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Ok(BindAddr::Unix(PathBuf::from(s)));
        }
        let hostport = s.strip_prefix("tcp:").unwrap_or(s);
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| bad("expected unix:PATH or HOST:PORT"))?;
        if host.is_empty() {
            return Err(bad("the host is empty (use 127.0.0.1:PORT)"));
        }
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(bad("an IPv6 address must be in brackets, e.g. [::1]:8000"));
        }
        if port.parse::<u16>().is_err() {
            return Err(bad("the port must be a number from 0 to 65535"));
        }
        Ok(BindAddr::Tcp(hostport.to_string()))
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            BindAddr::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// Why no listening socket could be opened; the message tells a self-hoster what to fix.
#[derive(Debug)]
pub enum ListenerError {
    /// The `--bind` value does not parse.
    BadBindAddr {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The unix socket path exists and is not a socket; we never delete such a file.
    NotASocket(PathBuf),
    /// Another process is accepting connections on that unix socket.
    InUse(PathBuf),
    /// A stale socket file could not be inspected or removed.
    RemoveStale {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// bind(2) failed.
    Bind {
        /// The address as given.
        addr: String,
        /// The underlying error.
        source: io::Error,
    },
    /// chmod of the new unix socket failed.
    Chmod {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An inherited socket (fd 0 or 3) could not be set up.
    Inherited {
        /// The fd.
        fd: RawFd,
        /// The underlying error.
        source: io::Error,
    },
    /// No `--bind`, no systemd socket, and fd 0 is not a listening socket.
    NoListener,
}

impl fmt::Display for ListenerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadBindAddr { input, reason } => write!(
                f,
                "invalid bind address {input:?}: {reason} \
                 (examples: unix:/run/syncserver/sync.sock, 127.0.0.1:8000, [::1]:8000)"
            ),
            Self::NotASocket(p) => write!(
                f,
                "{} exists and is not a socket; refusing to delete it, choose another path",
                p.display()
            ),
            Self::InUse(p) => write!(
                f,
                "{} is in use: another server is listening on it (stop it first)",
                p.display()
            ),
            Self::RemoveStale { path, source } => write!(
                f,
                "cannot remove the old socket {}: {source} (check the directory permissions)",
                path.display()
            ),
            Self::Bind { addr, source } => {
                write!(f, "cannot listen on {addr}: {source}")?;
                match source.kind() {
                    io::ErrorKind::PermissionDenied => {
                        write!(f, " (does this user have write access to the directory?)")
                    }
                    io::ErrorKind::NotFound => write!(f, " (does the directory exist?)"),
                    io::ErrorKind::AddrInUse => write!(f, " (is another server running?)"),
                    _ => Ok(()),
                }
            }
            Self::Chmod { path, source } => {
                write!(f, "cannot set permissions on {}: {source}", path.display())
            }
            Self::Inherited { fd, source } => {
                write!(
                    f,
                    "cannot use the inherited listening socket on fd {fd}: {source}"
                )
            }
            Self::NoListener => write!(
                f,
                "no listening socket: fd 0 is not a FastCGI listening socket and no systemd \
                 socket was passed (LISTEN_FDS). Either let a FastCGI spawner start this program \
                 (Apache mod_fcgid, spawn-fcgi, systemd socket activation), or give it an address \
                 with --bind unix:/path/to/sync.sock (nginx, Apache mod_proxy_fcgi) or \
                 --bind 127.0.0.1:PORT"
            ),
        }
    }
}

impl std::error::Error for ListenerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::RemoveStale { source, .. }
            | Self::Bind { source, .. }
            | Self::Chmod { source, .. }
            | Self::Inherited { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A listening socket ready for [`serve`](super::serve).
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    description: String,
    created: Option<Created>,
}

/// A unix socket file we bound ourselves, removed again when the listener is dropped (never
/// one inherited from systemd or a spawner, which own theirs).
#[derive(Debug)]
struct Created {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let Some(c) = &self.created else { return };
        // Only if it is still ours: a newer server may have replaced it at the same path.
        if let Ok(m) = fs::symlink_metadata(&c.path) {
            if m.file_type().is_socket() && m.dev() == c.dev && m.ino() == c.ino {
                let _ = fs::remove_file(&c.path);
            }
        }
    }
}

impl Listener {
    /// Human description for start-up logs, e.g. "unix socket /run/x.sock".
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// Wraps an already listening socket (e.g. one a test bound itself).
    pub fn from_fd(fd: OwnedFd, description: String) -> io::Result<Listener> {
        sys::prepare_listening_fd(&fd)?;
        Ok(Listener {
            fd,
            description,
            created: None,
        })
    }

    /// The path of the unix socket file we bound, if we bound one.
    pub fn created_path(&self) -> Option<&Path> {
        self.created.as_ref().map(|c| c.path.as_path())
    }

    /// Gives the unix socket file we bound to group `gid` (so the web server's group can
    /// connect with mode 660); nothing for other sockets.
    pub fn set_group(&self, gid: u32) -> io::Result<()> {
        match &self.created {
            Some(c) => std::os::unix::fs::lchown(&c.path, None, Some(gid)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot give {} to group {gid}: {e}", c.path.display()),
                )
            }),
            None => Ok(()),
        }
    }
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Opens the listening socket. Order: explicit `bind` (a stale socket file is removed first,
/// the new one chmod-ed to `socket_mode`); else systemd's fd 3 when LISTEN_PID is us and
/// LISTEN_FDS >= 1; else fd 0 when it is a listening socket (mod_fcgid, spawn-fcgi); else
/// [`ListenerError::NoListener`].
pub fn open_listener(bind: Option<&BindAddr>, socket_mode: u32) -> Result<Listener, ListenerError> {
    match bind {
        Some(BindAddr::Unix(path)) => bind_unix(path, socket_mode),
        Some(BindAddr::Tcp(addr)) => bind_tcp(addr),
        None if systemd_activated() => inherited(SD_LISTEN_FDS_START, "socket from systemd (fd 3)"),
        None if sys::is_listening_socket(io::stdin().as_fd()) => {
            inherited(0, "socket on stdin (mod_fcgid/spawn-fcgi)")
        }
        None => Err(ListenerError::NoListener),
    }
}

fn systemd_activated() -> bool {
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id());
    let fds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    pid_matches && fds >= 1
}

fn inherited(fd: RawFd, description: &str) -> Result<Listener, ListenerError> {
    // SAFETY: the spawner handed this fd to us for our exclusive use (systemd's LISTEN_PID is
    // us and LISTEN_FDS >= 1, or fd 0 already answered getpeername as a listening socket), so it
    // is open and nothing else in the process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if !sys::is_socket(owned.as_fd()) {
        // Not ours to close after all: leave it as we found it.
        let _ = owned.into_raw_fd();
        return Err(ListenerError::Inherited {
            fd,
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a socket"),
        });
    }
    Listener::from_fd(owned, description.to_string())
        .map_err(|source| ListenerError::Inherited { fd, source })
}

fn bind_unix(path: &Path, mode: u32) -> Result<Listener, ListenerError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A live server still answering would lose its socket: refuse instead.
            if UnixStream::connect(path).is_ok() {
                return Err(ListenerError::InUse(path.to_path_buf()));
            }
            fs::remove_file(path).map_err(|source| ListenerError::RemoveStale {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(_) => return Err(ListenerError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ListenerError::RemoveStale {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    let listener = UnixListener::bind(path).map_err(|source| ListenerError::Bind {
        addr: format!("unix:{}", path.display()),
        source,
    })?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| {
        ListenerError::Chmod {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let description = format!("unix socket {} (mode {mode:o})", path.display());
    let bind_err = |source| ListenerError::Bind {
        addr: format!("unix:{}", path.display()),
        source,
    };
    let meta = fs::symlink_metadata(path).map_err(bind_err)?;
    let mut l = Listener::from_fd(OwnedFd::from(listener), description).map_err(bind_err)?;
    l.created = Some(Created {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    });
    Ok(l)
}

fn bind_tcp(addr: &str) -> Result<Listener, ListenerError> {
    let bind_err = |source| ListenerError::Bind {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).map_err(bind_err)?;
    let shown = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| addr.to_string());
    Listener::from_fd(OwnedFd::from(listener), format!("tcp {shown}")).map_err(bind_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("fcgi-listener-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn parse_bind_addr() {
        let p = |s: &str| s.parse::<BindAddr>();
        assert_eq!(
            p("unix:/run/x.sock").unwrap(),
            BindAddr::Unix("/run/x.sock".into())
        );
        assert_eq!(
            p("/run/x.sock").unwrap(),
            BindAddr::Unix("/run/x.sock".into())
        );
        assert_eq!(
            p("tcp:127.0.0.1:8000").unwrap(),
            BindAddr::Tcp("127.0.0.1:8000".into())
        );
        assert_eq!(
            p("localhost:8000").unwrap(),
            BindAddr::Tcp("localhost:8000".into())
        );
        assert_eq!(p("[::1]:8000").unwrap(), BindAddr::Tcp("[::1]:8000".into()));
        for bad in [
            "unix:",
            "",
            "8000",
            ":8000",
            "host:http",
            "::1:8000",
            "h:70000",
            "tcp:x",
        ] {
            assert!(p(bad).is_err(), "{bad:?} should not parse");
        }
        let msg = p("nonsense").unwrap_err().to_string();
        assert!(msg.contains("unix:"), "{msg}");
    }

    #[test]
    fn unix_bind_replaces_stale_socket_and_sets_mode() {
        let d = tmpdir("stale");
        let path = d.join("s.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves a dead socket file
        let l = open_listener(Some(&BindAddr::Unix(path.clone())), 0o666).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666);
        assert!(l.describe().contains("s.sock"));
        // A live socket is not stolen.
        let err = open_listener(Some(&BindAddr::Unix(path.clone())), 0o660).unwrap_err();
        assert!(matches!(err, ListenerError::InUse(_)), "{err}");
        drop(l);
        assert!(
            !path.exists(),
            "the socket we bound is removed with the listener"
        );
        // One that replaced ours at the same path is not.
        let l = open_listener(Some(&BindAddr::Unix(path.clone())), 0o660).unwrap();
        fs::remove_file(&path).unwrap();
        let other = UnixListener::bind(&path).unwrap();
        drop(l);
        assert!(path.exists());
        drop(other);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn unix_bind_never_deletes_a_regular_file() {
        let d = tmpdir("regular");
        let path = d.join("data.db");
        fs::write(&path, b"precious").unwrap();
        let err = open_listener(Some(&BindAddr::Unix(path.clone())), 0o660).unwrap_err();
        assert!(matches!(err, ListenerError::NotASocket(_)), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"precious");
        let err = open_listener(Some(&BindAddr::Unix(d.join("no/such/dir.sock"))), 0o660);
        assert!(err.unwrap_err().to_string().contains("directory"));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn tcp_bind_describes_the_port() {
        let l = open_listener(Some(&BindAddr::Tcp("127.0.0.1:0".into())), 0).unwrap();
        assert!(
            l.describe().starts_with("tcp 127.0.0.1:"),
            "{}",
            l.describe()
        );
    }

    #[test]
    fn no_listener_message_mentions_bind() {
        assert!(ListenerError::NoListener.to_string().contains("--bind"));
    }
}
