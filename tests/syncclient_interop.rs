//! A real client we did not write: PyPI `syncclient` 0.8.0 with `requests-hawk`
//! gets a token from our tokenserver (OAuth bearer JWT + X-KeyID, a few lines of
//! glue in tests/python/syncclient_flow.py), then writes, reads and deletes
//! records through our storage API. syncclient speaks HTTP, so a real nginx
//! (started from a temp dir, as in deployment.md §3.1/§4.1) sits in front of
//! the binary's FastCGI socket.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fxa::{self, FakeFxa, TestKey};
use common::{Server, ServerSpec};

/// nginx from PATH (or /usr/sbin, where Debian puts it).
fn nginx() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
        .expect("nginx is not installed (apt-get install nginx): it fronts the FastCGI server")
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// nginx as our child, in `<dir>/nginx`; stopped (SIGTERM, reaped) on drop.
struct Nginx {
    child: Option<Child>,
    prefix: PathBuf,
}

impl Nginx {
    fn start(dir: &Path, port: u16, socket: &Path) -> Nginx {
        let prefix = dir.join("nginx");
        for sub in ["logs", "tmp"] {
            std::fs::create_dir_all(prefix.join(sub)).expect("nginx dirs");
        }
        let conf = format!(
            r#"pid logs/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path tmp/body;  fastcgi_temp_path tmp/fastcgi;
    proxy_temp_path tmp/proxy;  scgi_temp_path tmp/scgi;  uwsgi_temp_path tmp/uwsgi;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        client_max_body_size 4m;
        location / {{
            fastcgi_param QUERY_STRING      $query_string;
            fastcgi_param REQUEST_METHOD    $request_method;
            fastcgi_param CONTENT_TYPE      $content_type;
            fastcgi_param CONTENT_LENGTH    $content_length;
            fastcgi_param SCRIPT_NAME       "";
            fastcgi_param PATH_INFO         $uri;
            fastcgi_param REQUEST_URI       $request_uri;
            fastcgi_param SERVER_PROTOCOL   $server_protocol;
            fastcgi_param REQUEST_SCHEME    $scheme;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param REMOTE_ADDR       $remote_addr;
            fastcgi_param SERVER_NAME       $server_name;
            fastcgi_param SERVER_PORT       $server_port;
            fastcgi_param HTTP_HOST         $http_host;
            fastcgi_pass unix:{socket};
        }}
    }}
}}
"#,
            socket = socket.display()
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let child = Command::new(nginx())
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(prefix.join("logs/error.log"))
            .arg("-c")
            .arg(&conf_path)
            .arg("-g")
            .arg("daemon off; worker_processes 1;")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx {
            child: Some(child),
            prefix,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = nginx
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "nginx did not start ({exited:?}):\n{}",
                nginx.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        nginx
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("logs/error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM lets the master stop its workers; SIGKILL would orphan them.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn syncclient_signs_in_and_syncs_through_nginx() {
    let python = common::venv_python("syncclient/requests-hawk");
    let key = TestKey::load("oauth-test-key.pk8", "key-1");
    let fxa = FakeFxa::start(&[&key]);
    let port = free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let server = Server::start_spec(ServerSpec {
        public_url: public_url.clone(),
        extra_ini: format!("oauth_verifier = {}\n", fxa.url),
        socket_mode: Some("666".into()),
        ..ServerSpec::default()
    });
    let nginx = Nginx::start(&server.dir.0, port, &server.socket);

    let sub = fxa::fxa_uid();
    let bearer = key.token(&fxa::claims(&sub, 1_700_000_000_000));
    let kid = fxa::key_id(1_700_000_000_000, fxa::fingerprint(0x5c));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/syncclient_flow.py");
    let out = Command::new(&python)
        .arg(&script)
        .env("SC_TOKEN_URL", format!("{public_url}/token"))
        .env("SC_BEARER", &bearer)
        .env("SC_KEYID", &kid)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let report = format!(
        "--- syncclient_flow.py stdout ---\n{}\n--- stderr ---\n{}\n--- nginx ---\n{}\n--- server ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        nginx.log(),
        server.log()
    );
    assert!(out.status.success(), "{report}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("syncclient flow: all good"),
        "{report}"
    );
}
