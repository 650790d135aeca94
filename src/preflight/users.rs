//! Users and groups by name, and running a check as another user.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;

/// A user from the password database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// Every group the user is in (primary and supplementary).
    pub fn groups(&self) -> Vec<u32> {
        let Ok(name) = CString::new(self.name.as_bytes()) else {
            return vec![self.gid];
        };
        let mut n: libc::c_int = 64;
        loop {
            let mut groups = vec![0 as libc::gid_t; n as usize];
            // SAFETY: `groups` holds `n` entries; getgrouplist writes at most that many and
            // updates `n`.
            let r =
                unsafe { libc::getgrouplist(name.as_ptr(), self.gid, groups.as_mut_ptr(), &mut n) };
            if r >= 0 {
                groups.truncate(n as usize);
                return groups;
            }
            if n as usize <= groups.len() {
                n = (groups.len() * 2) as libc::c_int;
            }
        }
    }
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (uid {})", self.name, self.uid)
    }
}

fn from_passwd(pw: &libc::passwd) -> User {
    // SAFETY: pw_name of an entry getpwnam_r/getpwuid_r filled is a C string.
    let name = unsafe { CStr::from_ptr(pw.pw_name) };
    User {
        name: name.to_string_lossy().into_owned(),
        uid: pw.pw_uid,
        gid: pw.pw_gid,
    }
}

fn getpw(by: impl Fn(*mut libc::passwd, &mut [u8], *mut *mut libc::passwd) -> i32) -> Option<User> {
    let mut buf = vec![0u8; 16384];
    // SAFETY: an all-zero passwd is a valid out-parameter; the call fills it.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let r = by(&mut pw, &mut buf, &mut found);
    (r == 0 && !found.is_null()).then(|| from_passwd(&pw))
}

/// A user by name or numeric uid.
pub fn lookup_user(name: &str) -> Result<User, String> {
    let by_name = CString::new(name).ok().and_then(|c| {
        getpw(|pw, buf, found| {
            // SAFETY: every pointer is valid for the call; `buf` outlives `pw`'s use.
            unsafe { libc::getpwnam_r(c.as_ptr(), pw, buf.as_mut_ptr().cast(), buf.len(), found) }
        })
    });
    by_name
        .or_else(|| name.parse::<u32>().ok().and_then(user_by_uid))
        .ok_or_else(|| format!("no user {name:?} on this system"))
}

fn user_by_uid(uid: u32) -> Option<User> {
    getpw(|pw, buf, found| {
        // SAFETY: as in lookup_user.
        unsafe { libc::getpwuid_r(uid, pw, buf.as_mut_ptr().cast(), buf.len(), found) }
    })
}

/// The user this process runs as (effective uid).
pub fn current_user() -> User {
    // SAFETY: geteuid/getegid cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    user_by_uid(uid).unwrap_or(User {
        name: uid.to_string(),
        uid,
        gid,
    })
}

/// A group by name or numeric gid.
pub fn lookup_group(name: &str) -> Result<u32, String> {
    if let Ok(c) = CString::new(name) {
        let mut buf = vec![0u8; 16384];
        // SAFETY: an all-zero group is a valid out-parameter; the call fills it.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call.
        let r = unsafe {
            libc::getgrnam_r(
                c.as_ptr(),
                &mut gr,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut found,
            )
        };
        if r == 0 && !found.is_null() {
            return Ok(gr.gr_gid);
        }
    }
    name.parse::<u32>()
        .map_err(|_| format!("no group {name:?} on this system"))
}

/// Runs `check` in a child process that has become `user` (its uid, primary
/// and supplementary groups), so this process keeps its own rights, and
/// returns the lines `check` produced. Needs root unless `user` is us.
pub fn run_as(user: &User, check: impl FnOnce() -> Vec<String>) -> Result<Vec<String>, String> {
    let me = current_user();
    if me.uid == user.uid {
        return Ok(check());
    }
    if me.uid != 0 {
        return Err(format!(
            "--as-user {} needs root (this runs as {me}); run it with sudo, or as {} itself",
            user.name, user.name
        ));
    }
    let name = CString::new(user.name.as_bytes()).map_err(|e| e.to_string())?;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: check-config is single-threaded here, so the child may allocate and run Rust
    // code; it leaves with _exit and never returns into the caller.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: fds[1] is the write end, now owned by this child only.
        let mut out = unsafe { File::from_raw_fd(fds[1]) };
        // SAFETY: plain syscalls; groups first, then gid, then uid (after setuid we could
        // no longer change the others).
        let dropped = unsafe {
            libc::close(fds[0]) == 0
                && libc::initgroups(name.as_ptr(), user.gid as _) == 0
                && libc::setgid(user.gid) == 0
                && libc::setuid(user.uid) == 0
        };
        let text = if dropped {
            let lines: Vec<String> = check().iter().map(|l| l.replace('\n', " ")).collect();
            format!("ok\n{}", lines.join("\n"))
        } else {
            format!("cannot become {user}: {}", std::io::Error::last_os_error())
        };
        let _ = out.write_all(text.as_bytes());
        drop(out);
        // SAFETY: leave the child without running the parent's destructors or atexit.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: fds[0] is the read end, owned by us; the write end belongs to the child.
    let mut input = unsafe {
        libc::close(fds[1]);
        File::from_raw_fd(fds[0])
    };
    let mut text = String::new();
    let read = input.read_to_string(&mut text);
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    read.map_err(|e| format!("reading the check's result: {e}"))?;
    match text.strip_prefix("ok") {
        Some(rest) => Ok(rest
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()),
        None if text.is_empty() => Err(format!("the check as {user} died (status {status})")),
        None => Err(text),
    }
}
