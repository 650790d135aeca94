//! Thin libc wrappers on raw fds.
//!
//! The listening socket may be fd 0 or fd 3 handed over by a parent, of any address family, so
//! accepted connections are plain fds rather than `UnixStream`/`TcpStream`.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Turns a libc return value into an `io::Result`, reading errno on -1.
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Waits until `fd` is readable (or hung up) for at most `timeout`. `Ok(false)` on timeout and
/// on EINTR, so callers simply loop and re-check their shutdown flag.
pub(crate) fn poll_readable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd, count 1.
    match cvt(unsafe { libc::poll(&mut pfd, 1, ms) }) {
        Ok(n) => Ok(n > 0),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets O_NONBLOCK and FD_CLOEXEC on a listening fd, so an accept that loses a race (another
/// process sharing the socket, or a connection reset before accept) cannot block the acceptor.
pub(crate) fn prepare_listening_fd(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an fd we own; no pointers involved.
    unsafe {
        let fl = cvt(libc::fcntl(fd, libc::F_GETFL))?;
        cvt(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK))?;
        let fdfl = cvt(libc::fcntl(fd, libc::F_GETFD))?;
        cvt(libc::fcntl(fd, libc::F_SETFD, fdfl | libc::FD_CLOEXEC))?;
    }
    Ok(())
}

/// Whether `fd` is a socket with no peer, i.e. a listening socket handed to us by a spawner.
pub(crate) fn is_listening_socket(fd: RawFd) -> bool {
    // SAFETY: sockaddr_storage is plain data, big enough for any address; len says so.
    unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let r = libc::getpeername(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len);
        r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOTCONN)
    }
}

/// Whether `fd` is an open socket (used to check a systemd-passed fd 3 before trusting it).
pub(crate) fn is_socket(fd: RawFd) -> bool {
    // SAFETY: stat is plain data filled by the kernel.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd, &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}

/// Accepts one connection as a blocking, close-on-exec socket.
pub(crate) fn accept(listen_fd: RawFd) -> io::Result<Socket> {
    // SAFETY: null address pointers are allowed; the returned fd is ours to own.
    let fd = cvt(unsafe {
        libc::accept4(
            listen_fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: accept4 just returned this fd and nobody else holds it.
    Ok(Socket(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// One accepted connection of any address family.
#[derive(Debug)]
pub(crate) struct Socket(OwnedFd);

impl Socket {
    /// Sets SO_RCVTIMEO and SO_SNDTIMEO: a read or write blocked this long fails with
    /// WouldBlock, which is how a stalled peer (slow loris) gets dropped.
    pub(crate) fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        // A zero timeval means "no timeout" to the kernel; keep at least 1 ms.
        let timeout = timeout.max(Duration::from_millis(1));
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
        };
        for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
            // SAFETY: tv is a valid timeval and its size is passed.
            cvt(unsafe {
                libc::setsockopt(
                    self.0.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &tv as *const libc::timeval as *const libc::c_void,
                    std::mem::size_of::<libc::timeval>() as libc::socklen_t,
                )
            })?;
        }
        Ok(())
    }

    /// Half-closes the sending side so the peer sees EOF after the last response byte.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        // SAFETY: plain syscall on our fd.
        cvt(unsafe { libc::shutdown(self.0.as_raw_fd(), libc::SHUT_WR) }).map(|_| ())
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe {
                libc::recv(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // MSG_NOSIGNAL: a vanished peer gives EPIPE here instead of killing the process.
            // SAFETY: buf is valid for buf.len() bytes.
            let n = unsafe {
                libc::send(
                    self.0.as_raw_fd(),
                    buf.as_ptr() as *const libc::c_void,
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
