//! End to end through a real nginx (contrib/nginx/*.conf, run as committed apart from
//! the listen address and socket path) in front of the real binary on a unix socket.

mod common;

use common::webservers::flow;
use common::webservers::Front;

#[test]
fn root() {
    flow::plain(Front::Nginx, false);
}

#[test]
fn prefix() {
    flow::plain(Front::Nginx, true);
}

#[test]
fn https_force_wsgi_environ() {
    flow::https_forced(Front::Nginx, false);
    flow::https_forced(Front::Nginx, true);
}

#[test]
fn https_x_forwarded_proto() {
    flow::https_forwarded(Front::Nginx, false);
    flow::https_forwarded(Front::Nginx, true);
}

/// Bodies over nginx's own client_max_body_size (3m) are refused by nginx with 413.
#[test]
fn body_over_nginx_limit_is_413() {
    if flow::skip(Front::Nginx) {
        return;
    }
    let stack = common::webservers::Stack::start(common::webservers::StackSpec {
        front: Front::Nginx,
        prefixed: false,
        public_url: None,
        extra_ini: flow::oauth_ini(),
    });
    let c = flow::login(&stack, None, &[]);
    let body = vec![b'x'; 4 * 1024 * 1024];
    let r = c.send_raw("POST", b"/storage/tabs", &[], &body);
    assert_eq!(r.status, 413, "{}", r.text());
}

/// The test client's own response parser (mod_proxy_fcgi re-chunks responses).
#[test]
fn http_client_parses_chunked_and_plain() {
    use common::webservers::parse_response;
    let r = parse_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
    let r = parse_response(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n").unwrap();
    assert_eq!((r.status, r.body.len()), (304, 0));
}
