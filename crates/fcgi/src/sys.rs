//! The few system calls the server needs, on sockets of any address family.
//!
//! The listening socket may be fd 0 or fd 3 handed over by a parent, of any address family, so
//! accepted connections are `socket2::Socket`s rather than `UnixStream`/`TcpStream`. `socket2`
//! makes every socket call here (accept4, getpeername, getsockopt, fcntl, shutdown, send, recv)
//! without `unsafe` of ours; only poll(2) is still called through `libc` (see [`poll`]).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use socket2::SockRef;

/// Waits for events on `fds` for at most `timeout`; returns how many have events. EINTR
/// counts as a timeout (0), so callers simply loop and re-check their shutdown flag.
///
/// Still libc: `socket2` has no poll, and the safe wrappers (`rustix::event::poll`) tie each
/// entry to a borrow of its fd for as long as the array lives, while the event loop rebuilds the
/// array from raw fds and then mutates its connection table while walking the results. `mio` or
/// `polling` would swap poll(2) for epoll and change the loop's model, not just its syscall.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `fds` is a valid slice of `n` pollfd structs.
    let ret = unsafe { libc::poll(fds.as_mut_ptr(), n, ms) };
    if ret >= 0 {
        return Ok(ret as usize);
    }
    match io::Error::last_os_error() {
        e if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        e => Err(e),
    }
}

/// Wakes a thread blocked in [`poll`] from another thread: a non-blocking socket pair, one
/// byte per wake-up (std only; it replaced an eventfd that needed three `unsafe` calls).
#[derive(Debug)]
pub(crate) struct Waker {
    rx: UnixStream,
    tx: UnixStream,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Waker> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok(Waker { rx, tx })
    }

    /// Makes the read end readable. Cannot block: when the pair's buffer is full the write fails
    /// with WouldBlock, and the read end is readable already.
    pub(crate) fn wake(&self) {
        let _ = (&self.tx).write(&[1]);
    }

    /// Empties the read end after a wake-up.
    pub(crate) fn reset(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }
}

/// Sets O_NONBLOCK and FD_CLOEXEC on a listening socket, so an accept that loses a race
/// (another process sharing the socket, or a connection reset before accept) cannot block the
/// acceptor.
pub(crate) fn prepare_listening_fd(fd: &impl AsFd) -> io::Result<()> {
    let sock = SockRef::from(fd);
    sock.set_nonblocking(true)?;
    sock.set_cloexec(true)
}

/// Whether `fd` is a socket with no peer, i.e. a listening socket handed to us by a spawner.
pub(crate) fn is_listening_socket(fd: BorrowedFd<'_>) -> bool {
    match SockRef::from(&fd).peer_addr() {
        Ok(_) => false,
        Err(e) => e.raw_os_error() == Some(libc::ENOTCONN),
    }
}

/// Whether `fd` is an open socket (used to check a systemd-passed fd 3 before trusting it):
/// getsockopt(SO_TYPE) fails with ENOTSOCK on anything else.
pub(crate) fn is_socket(fd: BorrowedFd<'_>) -> bool {
    SockRef::from(&fd).r#type().is_ok()
}

/// Accepts one connection as a non-blocking, close-on-exec socket.
pub(crate) fn accept(listener: &impl AsFd) -> io::Result<Socket> {
    let (sock, _peer) =
        SockRef::from(listener).accept4(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)?;
    Ok(Socket(sock))
}

/// One accepted connection of any address family.
#[derive(Debug)]
pub(crate) struct Socket(socket2::Socket);

impl Socket {
    /// Half-closes the sending side so the peer sees EOF after the last response byte.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        self.0.shutdown(Shutdown::Write)
    }
}

impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Retries `f` while it fails with EINTR.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

impl Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        retry(|| (&self.0).read(buf))
    }
}

impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // MSG_NOSIGNAL: a vanished peer gives EPIPE here instead of killing the process.
        retry(|| self.0.send_with_flags(buf, libc::MSG_NOSIGNAL))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
