//! Whether the web server's user can connect to the unix socket we bound:
//! connecting needs write permission on the socket and search permission on
//! every directory above it. nginx only says "Permission denied" in its own
//! error log and answers 502, so we say it at start-up.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::users::{lookup_user, User};

/// The users web servers run as on common systems (Debian, RHEL, Arch, nginx's own packages).
const WEB_USERS: &[&str] = &["www-data", "nginx", "apache", "http"];

fn allowed(user: &User, groups: &[u32], m: &fs::Metadata, bit: u32) -> bool {
    let mode = m.mode();
    if user.uid == 0 {
        true
    } else if user.uid == m.uid() {
        mode & (bit << 6) != 0
    } else if groups.contains(&m.gid()) {
        mode & (bit << 3) != 0
    } else {
        mode & bit != 0
    }
}

/// Why `user` cannot connect to the socket at `path`, if it cannot.
fn obstacle(user: &User, path: &Path) -> Option<String> {
    let groups = user.groups();
    let dirs: Vec<&Path> = path.ancestors().skip(1).collect();
    for dir in dirs.into_iter().rev() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(m) = fs::metadata(dir) {
            if !allowed(user, &groups, &m, 0o1) {
                return Some(format!(
                    "no search permission (x) on the directory {} (mode {:o}, owner uid {}, group gid {})",
                    dir.display(),
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid()
                ));
            }
        }
    }
    let m = fs::metadata(path).ok()?;
    (!allowed(user, &groups, &m, 0o2)).then(|| {
        format!(
            "no write permission on the socket (mode {:o}, owner uid {}, group gid {})",
            m.mode() & 0o777,
            m.uid(),
            m.gid()
        )
    })
}

/// A warning when none of the web-server users that exist on this system can
/// connect to the socket at `path`; `None` when one can, or none exists.
pub fn socket_warning(path: &Path) -> Option<String> {
    let users: Vec<User> = WEB_USERS
        .iter()
        .filter_map(|n| lookup_user(n).ok())
        .filter(|u| u.name.as_str() != "root")
        .collect();
    let mut reasons = Vec::new();
    for user in &users {
        match obstacle(user, path) {
            None => return None,
            Some(why) => reasons.push(format!("{}: {why}", user.name)),
        }
    }
    let first = users.first()?;
    Some(format!(
        "the web server will get \"Permission denied\" (nginx: 502) on {}: {}. Fix: --socket-group {} (with the default --socket-mode 660), and make every directory above the socket searchable by that user",
        path.display(),
        reasons.join("; "),
        first.name
    ))
}
