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

/// Waits for events on `fds` for at most `timeout`; returns how many have events. EINTR
/// counts as a timeout (0), so callers simply loop and re-check their shutdown flag.
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    let n = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `fds` is a valid slice of `n` pollfd structs.
    match cvt(unsafe { libc::poll(fds.as_mut_ptr(), n, ms) }) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        Err(e) => Err(e),
    }
}

/// Wakes a thread blocked in [`poll`] from another thread (an eventfd).
#[derive(Debug)]
pub(crate) struct Waker(OwnedFd);

impl Waker {
    pub(crate) fn new() -> io::Result<Waker> {
        // SAFETY: plain syscall; the new fd is ours to own.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: eventfd just returned this fd and nobody else holds it.
        Ok(Waker(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the eventfd readable. Cannot block: at worst the counter is already huge.
    pub(crate) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64.
        unsafe {
            libc::write(
                self.0.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            )
        };
    }

    /// Resets the eventfd after a wake-up.
    pub(crate) fn reset(&self) {
        let mut n: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64; non-blocking.
        unsafe {
            libc::read(
                self.0.as_raw_fd(),
                &mut n as *mut u64 as *mut libc::c_void,
                8,
            )
        };
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
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

/// Accepts one connection as a non-blocking, close-on-exec socket.
pub(crate) fn accept(listen_fd: RawFd) -> io::Result<Socket> {
    // SAFETY: null address pointers are allowed; the returned fd is ours to own.
    let fd = cvt(unsafe {
        libc::accept4(
            listen_fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    })?;
    // SAFETY: accept4 just returned this fd and nobody else holds it.
    Ok(Socket(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// One accepted connection of any address family.
#[derive(Debug)]
pub(crate) struct Socket(OwnedFd);

impl Socket {
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
