//! End to end through a real Apache (contrib/apache/*.conf, run as committed apart from
//! the vhost port and paths): mod_fcgid spawning the real binary, and mod_proxy_fcgi to
//! the binary's own unix socket.

mod common;

use common::webservers::flow;
use common::webservers::Front::{ApacheFcgid, ApacheProxyFcgi};

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
