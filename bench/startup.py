#!/usr/bin/env python3
"""Start to first response, without nginx: exec of the server to the first FastCGI answer on
its unix socket (or the first HTTP answer of `serve --http`), and exec to the socket accepting.

usage: bench/startup.py [--runs 15] [--path /__heartbeat__] --fcgi SOCKET -- COMMAND...
       bench/startup.py [--runs 15] [--path /__heartbeat__] --http HOST:PORT -- COMMAND...

COMMAND must serve on SOCKET (e.g. `syncserver-fcgi --config F serve --bind unix:SOCKET`) or on
HOST:PORT (`serve --http HOST:PORT`). Polls every 100 µs; prints JSON with the medians and
minima in ms. Python's own fork/exec costs are included (~0.8 ms for /bin/true here).
"""
import json, os, socket, statistics, struct, subprocess, sys, time


def fcgi_request(sock, path):
    def record(rtype, content):
        return struct.pack(">BBHHBx", 1, rtype, 1, len(content), 0) + content

    def pair(k, v):
        k, v = k.encode(), v.encode()
        return bytes([len(k)]) + bytes([len(v)]) + k + v

    params = b"".join(pair(k, v) for k, v in [
        ("REQUEST_METHOD", "GET"), ("REQUEST_URI", path), ("SCRIPT_NAME", ""),
        ("PATH_INFO", path), ("QUERY_STRING", ""), ("HTTP_HOST", "127.0.0.1"),
        ("SERVER_NAME", "127.0.0.1"), ("SERVER_PORT", "80"), ("REQUEST_SCHEME", "http"),
        ("SERVER_PROTOCOL", "HTTP/1.1"), ("GATEWAY_INTERFACE", "CGI/1.1")])
    sock.sendall(record(1, struct.pack(">HB5x", 1, 0)) + record(4, params) + record(4, b"")
                 + record(5, b""))
    out, buf = b"", b""
    while True:
        d = sock.recv(65536)
        if not d:
            break
        buf += d
        while len(buf) >= 8:
            _, rtype, _, clen, plen = struct.unpack(">BBHHB", buf[:7])
            if len(buf) < 8 + clen + plen:
                break
            if rtype == 6:
                out += buf[8:8 + clen]
            buf = buf[8 + clen + plen:]
            if rtype == 3:
                return out.split(b"\r\n", 1)[0].decode()
    return out.split(b"\r\n", 1)[0].decode() or "no answer"


def http_request(sock, path):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    data = b""
    while b"\r\n" not in data:
        d = sock.recv(65536)
        if not d:
            break
        data += d
    return data.split(b"\r\n", 1)[0].decode()


def main(argv):
    runs, path, fcgi, http = 15, "/__heartbeat__", None, None
    while argv and argv[0] != "--":
        opt, val, argv = argv[0], argv[1], argv[2:]
        if opt == "--runs":
            runs = int(val)
        elif opt == "--path":
            path = val
        elif opt == "--fcgi":
            fcgi = val
        elif opt == "--http":
            http = val
        else:
            sys.exit(f"unknown option {opt}")
    cmd = argv[1:]
    if not cmd or not (fcgi or http):
        sys.exit(__doc__)
    listening, answered, first = [], [], None
    for _ in range(runs):
        if fcgi and os.path.exists(fcgi):
            os.unlink(fcgi)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                if proc.poll() is not None:
                    sys.exit(f"{cmd[0]} exited early: {proc.returncode}")
                s = socket.socket(socket.AF_UNIX if fcgi else socket.AF_INET)
                try:
                    if fcgi:
                        s.connect(fcgi)
                    else:
                        host, port = http.rsplit(":", 1)
                        s.connect((host, int(port)))
                    break
                except OSError:
                    s.close()
                    time.sleep(0.0001)
            t_listen = time.perf_counter()
            status = fcgi_request(s, path) if fcgi else http_request(s, path)
            t_answer = time.perf_counter()
            s.close()
        finally:
            proc.terminate()
            proc.wait()
        first = first or status
        listening.append((t_listen - t0) * 1000)
        answered.append((t_answer - t0) * 1000)
    print(json.dumps({
        "runs": runs, "path": path, "first_status": first,
        "listening_ms": {"median": round(statistics.median(listening), 2), "min": round(min(listening), 2)},
        "first_answer_ms": {"median": round(statistics.median(answered), 2), "min": round(min(answered), 2)},
    }))


if __name__ == "__main__":
    main(sys.argv[1:])
