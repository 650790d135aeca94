//! `fcgi-hello`: the smallest FastCGI responder on this crate's own [`fcgi`] layer, answering
//! every request with a 6-byte body. It measures the ceiling of the nginx → FastCGI path
//! (bench/run.sh): whatever the Sync server does costs throughput relative to this.
//!
//! Usage: `fcgi-hello --bind unix:PATH|HOST:PORT [--socket-mode OCTAL] [--max-connections N]`

use std::process::ExitCode;
use std::sync::Arc;

use syncserver_fcgi::fcgi::{self, BindAddr, FcgiRequest, Handler, ServerOptions};

struct Hello;

impl Handler for Hello {
    fn handle(&self, _req: FcgiRequest) -> Vec<u8> {
        b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nhello\n".to_vec()
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut bind = None;
    let mut mode = 0o660;
    let mut opts = ServerOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next();
        match (a.as_str(), v) {
            ("--bind", Some(v)) => bind = Some(v.clone()),
            ("--socket-mode", Some(v)) => match u32::from_str_radix(v, 8) {
                Ok(m) => mode = m,
                Err(_) => return usage(),
            },
            ("--max-connections", Some(v)) => match v.parse() {
                Ok(n) => opts.max_connections = n,
                Err(_) => return usage(),
            },
            _ => return usage(),
        }
    }
    let addr = match bind.as_deref().map(str::parse::<BindAddr>).transpose() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fcgi-hello: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match fcgi::open_listener(addr.as_ref(), mode) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fcgi-hello: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = fcgi::install_signal_handlers();
    match fcgi::serve(listener, Arc::new(Hello), opts, shutdown) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fcgi-hello: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: fcgi-hello --bind unix:PATH|HOST:PORT [--socket-mode OCTAL] [--max-connections N]"
    );
    ExitCode::from(2)
}
