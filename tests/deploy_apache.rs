//! End to end through a real Apache (contrib/apache/*.conf, run as committed apart from
//! the vhost port and paths): mod_fcgid spawning the real binary, and mod_proxy_fcgi to
//! the binary's own unix socket.

mod common;

use common::webservers::Front::{ApacheFcgid, ApacheProxyFcgi};
use common::webservers::{flow, Stack, StackSpec};

#[test]
fn fcgid_root() {
    flow::plain(ApacheFcgid, false);
}

#[test]
fn fcgid_prefix() {
    flow::plain(ApacheFcgid, true);
}

#[test]
fn fcgid_https() {
    flow::https_forced(ApacheFcgid, true);
    flow::https_forwarded(ApacheFcgid, false);
}

#[test]
fn proxy_fcgi_root() {
    flow::plain(ApacheProxyFcgi, false);
}

#[test]
fn proxy_fcgi_prefix() {
    flow::plain(ApacheProxyFcgi, true);
}

#[test]
fn proxy_fcgi_https() {
    flow::https_forced(ApacheProxyFcgi, false);
    flow::https_forwarded(ApacheProxyFcgi, true);
}

/// Bodies over FcgidMaxRequestLen (4 MiB): mod_fcgid answers 500 itself (documented in
/// contrib/apache/syncserver-fcgid.conf; clients never send that much, their batches stay
/// under max_request_bytes); the same body via mod_proxy_fcgi reaches the app, which
/// refuses it with its own 413.
#[test]
fn body_over_apache_limit() {
    for (front, status) in [(ApacheFcgid, 500), (ApacheProxyFcgi, 413)] {
        if flow::skip(front) {
            continue;
        }
        let stack = Stack::start(StackSpec {
            front,
            prefixed: false,
            public_url: None,
            extra_ini: flow::oauth_ini(),
        });
        let c = flow::login(&stack, None, &[]);
        let body = vec![b'x'; 5 * 1024 * 1024];
        let r = c.send_raw("POST", b"/storage/tabs", &[], &body);
        assert_eq!(
            r.status,
            status,
            "{front:?}: {}\n{}",
            r.text(),
            stack.logs()
        );
    }
}
