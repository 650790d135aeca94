"""Interop check against the real server, using libraries we did not write.

Run by tests/interop_python.rs with the project venv's python. Tokens are
minted with PyPI `tokenlib`, requests are signed with `hawkauthlib` (and
`mohawk` for payload hashes), and the script talks FastCGI to the server's unix
socket itself (a small std-lib client below), playing nginx's part.

Environment (set by the Rust test):
  INTEROP_SOCKET      unix socket the server listens on
  INTEROP_PUBLIC_URL  the server's public_url (also the token node)
  INTEROP_SECRET      the server's token secret
  INTEROP_RUST_TOKEN  a token minted by syncserver_fcgi::auth::mint
  INTEROP_RUST_KEY    the derived key Rust returned with it
  INTEROP_RUST_UID    the uid inside that token

Exits 1 if any check failed, after printing every check's outcome.
"""

import json
import os
import socket
import struct
import sys
import time

import hawkauthlib
import mohawk
import tokenlib
import webob

# --- A minimal FastCGI client (responder role, one request per connection) ---

FCGI_VERSION = 1
BEGIN_REQUEST, END_REQUEST, PARAMS, STDIN, STDOUT, STDERR = 1, 3, 4, 5, 6, 7
RESPONDER = 1
REQUEST_ID = 1


def fcgi_record(rtype, content):
    pad = (8 - len(content) % 8) % 8
    header = struct.pack(">BBHHBx", FCGI_VERSION, rtype, REQUEST_ID, len(content), pad)
    return header + content + b"\0" * pad


def fcgi_length(n):
    return struct.pack(">B", n) if n < 128 else struct.pack(">I", n | 0x80000000)


def fcgi_stream(rtype, data):
    """The records of one stream, ending with the empty record that closes it."""
    out = b"".join(fcgi_record(rtype, data[i:i + 65535]) for i in range(0, len(data), 65535))
    return out + fcgi_record(rtype, b"")


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise IOError("connection closed mid-record")
        buf += chunk
    return buf


def fcgi_request(sock_path, params, body):
    """Sends one request; returns (status, {lower-case header: value}, body bytes)."""
    pairs = b"".join(
        fcgi_length(len(k)) + fcgi_length(len(v)) + k + v
        for k, v in ((k.encode("latin-1"), v.encode("latin-1")) for k, v in params.items())
    )
    msg = fcgi_record(BEGIN_REQUEST, struct.pack(">HB5x", RESPONDER, 0))
    msg += fcgi_stream(PARAMS, pairs) + fcgi_stream(STDIN, body)
    stdout = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(20)
        sock.connect(sock_path)
        sock.sendall(msg)
        while True:
            _, rtype, _, length, pad = struct.unpack(">BBHHBx", recv_exact(sock, 8))
            content = recv_exact(sock, length + pad)[:length]
            if rtype == STDOUT:
                stdout += content
            elif rtype == END_REQUEST:
                break
    head, _, resp_body = stdout.partition(b"\r\n\r\n")
    if not _:
        head, _, resp_body = stdout.partition(b"\n\n")
    headers = {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(headers.get("status", "200").split()[0])
    return status, headers, resp_body


def send(req):
    """Sends a WebOb request over FastCGI with the params nginx would pass."""
    env = req.environ
    params = {
        "REQUEST_METHOD": req.method,
        "REQUEST_URI": req.path_qs,
        "QUERY_STRING": env.get("QUERY_STRING", ""),
        "SCRIPT_NAME": env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", ""),
        "SERVER_NAME": env["SERVER_NAME"],
        "SERVER_PORT": env["SERVER_PORT"],
        "REQUEST_SCHEME": env["wsgi.url_scheme"],
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": str(len(req.body)) if req.body else "",
    }
    if req.content_type:
        params["CONTENT_TYPE"] = req.headers["Content-Type"]
    for name, value in req.headers.items():
        if name.lower() not in ("content-type", "content-length"):
            params["HTTP_" + name.upper().replace("-", "_")] = value
    return fcgi_request(SOCKET, params, req.body)


# --- Checks ---

SOCKET = os.environ["INTEROP_SOCKET"]
PUBLIC_URL = os.environ["INTEROP_PUBLIC_URL"].rstrip("/")
SECRET = os.environ["INTEROP_SECRET"]
FAILURES = []


def check(name, ok, detail=""):
    print("%s %s%s" % ("ok  " if ok else "FAIL", name, "" if ok else ": " + detail))
    if not ok:
        FAILURES.append(name)


def make_request(method, path, body=b"", content_type=None):
    req = webob.Request.blank(PUBLIC_URL + path, method=method)
    if content_type:
        req.headers["Content-Type"] = content_type
    if body:
        req.body = body
    return req


def signed(token, key, method, path, body=b"", content_type=None):
    req = make_request(method, path, body, content_type)
    hawkauthlib.sign_request(req, token, key)
    return send(req)


def python_token(uid, secret=SECRET, **extra):
    data = {
        "uid": uid,
        "node": PUBLIC_URL,
        "expires": int(time.time()) + 300,
        "fxa_uid": "0123456789abcdef0123456789abcdef",
        "fxa_kid": "0000000001234-qqo",
        "hashed_fxa_uid": "87dbc9a2388d0f1dd7b21ce37fabd77d",
        "hashed_device_id": "fde2c0b664592c6d894df60d9e68691c",
    }
    data.update(extra)
    token = tokenlib.make_token(data, secret=secret)
    return token, tokenlib.get_derived_secret(token, secret=secret)


def body_json(body):
    try:
        return json.loads(body.decode("utf-8"))
    except ValueError:
        return None


def storage_flow(uid, token, key):
    base = "/storage/1.5/%d" % uid
    ct = "application/json"
    record = {"payload": "h\u00e9llo \u2603", "sortindex": 5}
    status, headers, body = signed(token, key, "PUT", base + "/storage/meta/global",
                                   json.dumps(record).encode("utf-8"), ct)
    check("PUT meta/global -> 200", status == 200, "%d %r" % (status, body))
    check("PUT returns X-Last-Modified = body", headers.get("x-last-modified") == body.decode(),
          repr((headers, body)))

    status, _, body = signed(token, key, "GET", base + "/storage/meta/global")
    got = body_json(body) or {}
    check("GET meta/global -> 200", status == 200, "%d %r" % (status, body))
    check("GET meta/global round-trips payload and sortindex",
          got.get("payload") == record["payload"] and got.get("sortindex") == 5, repr(got))

    items = [{"id": "a", "payload": "x"}, {"id": "b", "payload": "y", "ttl": 3600}]
    status, _, body = signed(token, key, "POST", base + "/storage/bookmarks",
                             json.dumps(items).encode("utf-8"), ct)
    got = body_json(body) or {}
    check("POST bookmarks -> 200", status == 200, "%d %r" % (status, body))
    check("POST bookmarks succeeded for a, b",
          sorted(got.get("success", [])) == ["a", "b"] and not got.get("failed"), repr(got))

    status, _, body = signed(token, key, "GET", base + "/storage/bookmarks?full=1&sort=index")
    got = body_json(body) or []
    check("GET bookmarks?full=1 -> 200 with 2 records",
          status == 200 and sorted(r.get("id") for r in got) == ["a", "b"], "%d %r" % (status, body))

    status, _, body = signed(token, key, "GET", base + "/info/collections")
    got = body_json(body) or {}
    check("GET info/collections lists meta and bookmarks",
          status == 200 and set(got) == {"meta", "bookmarks"}, "%d %r" % (status, body))

    status, _, body = signed(token, key, "DELETE", base + "/storage/bookmarks?ids=a")
    check("DELETE bookmarks?ids=a -> 200", status == 200, "%d %r" % (status, body))
    status, _, body = signed(token, key, "DELETE", base + "/storage/bookmarks")
    check("DELETE bookmarks -> 200", status == 200, "%d %r" % (status, body))
    status, _, body = signed(token, key, "GET", base + "/storage/bookmarks")
    check("GET deleted bookmarks -> 200 []", status == 200 and body_json(body) == [],
          "%d %r" % (status, body))
    status, _, body = signed(token, key, "DELETE", base)
    check("DELETE all -> 200", status == 200, "%d %r" % (status, body))
    status, _, body = signed(token, key, "GET", base + "/info/collections")
    check("info/collections empty after DELETE all", status == 200 and body_json(body) == {},
          "%d %r" % (status, body))


def auth_failures(uid, token, key):
    path = "/storage/1.5/%d/storage/meta/global" % uid
    ct = "application/json"

    req = make_request("GET", path)
    hawkauthlib.sign_request(req, token, key)
    params = hawkauthlib.utils.parse_authz_header(req)
    mac = params["mac"]
    params["mac"] = ("B" if mac[0] != "B" else "C") + mac[1:]
    del params["scheme"]
    req.authorization = ("Hawk", params)
    status, headers, body = send(req)
    check("tampered MAC -> 401", status == 401, "%d %r" % (status, body))
    check("401 carries WWW-Authenticate: Hawk", headers.get("www-authenticate", "").startswith("Hawk"),
          repr(headers))

    # mohawk always includes the payload hash; first prove that an honest one passes.
    body = json.dumps({"payload": "hashed"}).encode("utf-8")
    url = PUBLIC_URL + path
    for tampered in (False, True):
        sender = mohawk.Sender({"id": token, "key": key, "algorithm": "sha256"}, url, "PUT",
                               content=body, content_type=ct)
        sent = body.replace(b"hashed", b"hacked") if tampered else body
        req = make_request("PUT", path, sent, ct)
        req.headers["Authorization"] = sender.request_header
        status, _, resp = send(req)
        if tampered:
            check("mohawk payload hash, tampered body -> 401", status == 401, "%d %r" % (status, resp))
        else:
            check("mohawk payload hash, honest body -> 200", status == 200, "%d %r" % (status, resp))

    req = make_request("GET", path)
    hawkauthlib.sign_request(req, token, key, params={"ext": "app-data"})
    status, _, resp = send(req)
    check("hawkauthlib with ext -> 200", status == 200, "%d %r" % (status, resp))

    req = make_request("GET", path)
    hawkauthlib.sign_request(req, token, key)
    first, _, _ = send(req)
    status, _, resp = send(req)
    check("replayed (token, nonce) -> 200 then 401", (first, status) == (200, 401),
          "%d then %d %r" % (first, status, resp))

    other_token, other_key = python_token(uid, secret=SECRET + "-other")
    status, _, resp = signed(other_token, other_key, "GET", path)
    check("token from another secret -> 401", status == 401, "%d %r" % (status, resp))

    status, _, resp = signed(token, key, "GET", "/storage/1.5/%d/storage/meta/global" % (uid + 1))
    check("token for another uid -> 401", status == 401, "%d %r" % (status, resp))

    wrong_node, wrong_key = python_token(uid, node="http://elsewhere.example:5000")
    status, _, resp = signed(wrong_node, wrong_key, "GET", path)
    check("token naming another node -> 401", status == 401, "%d %r" % (status, resp))

    expired, expired_key = python_token(uid, expires=int(time.time()) - 60)
    status, _, resp = signed(expired, expired_key, "GET", path)
    check("expired token on storage -> 401", status == 401, "%d %r" % (status, resp))
    status, _, resp = signed(expired, expired_key, "GET", "/storage/1.5/%d/info/collections" % uid)
    check("expired token on info/collections (grace) -> 200", status == 200, "%d %r" % (status, resp))


def rust_minted():
    token = os.environ["INTEROP_RUST_TOKEN"]
    key = os.environ["INTEROP_RUST_KEY"]
    uid = int(os.environ["INTEROP_RUST_UID"])
    try:
        data = tokenlib.parse_token(token, secret=SECRET)
    except Exception as e:  # any tokenlib error is a failed check
        check("Rust token parses in tokenlib", False, repr(e))
        return
    check("Rust token parses in tokenlib", True)
    check("Rust token payload has uid and node",
          data.get("uid") == uid and data.get("node") == PUBLIC_URL, repr(data))
    derived = tokenlib.get_derived_secret(token, secret=SECRET)
    check("Rust derived key == tokenlib.get_derived_secret", derived == key,
          "%r != %r" % (key, derived))
    try:
        tokenlib.parse_token(token, secret=SECRET + "-other")
        check("Rust token refused by tokenlib under another secret", False, "parsed")
    except tokenlib.errors.InvalidSignatureError:
        check("Rust token refused by tokenlib under another secret", True)
    status, _, body = signed(token, key, "GET", "/storage/1.5/%d/info/collections" % uid)
    check("Rust token signed by hawkauthlib -> 200", status == 200, "%d %r" % (status, body))


def main():
    token, key = python_token(7)
    storage_flow(7, token, key)
    # A minimal token as bare tokenlib makes it: float expires, random salt, no FxA fields.
    minimal = tokenlib.make_token({"uid": 9, "node": PUBLIC_URL}, secret=SECRET, timeout=300)
    minimal_key = tokenlib.get_derived_secret(minimal, secret=SECRET)
    status, _, body = signed(minimal, minimal_key, "GET", "/storage/1.5/9/info/collections")
    check("minimal tokenlib token (float expires) -> 200", status == 200, "%d %r" % (status, body))
    auth_failures(7, token, key)
    rust_minted()
    if FAILURES:
        print("%d check(s) failed: %s" % (len(FAILURES), ", ".join(FAILURES)))
        return 1
    print("all interop checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
