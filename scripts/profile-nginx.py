#!/usr/bin/env python3
"""Instructions per request in the real third-party host (nginx + Kong's
ngx_wasm_module on Wasmtime, built by ../shared/realhost/build.sh), counted by
callgrind: one nginx process (no master), the filter in front of a `return 200`
server in the same process, one keep-alive client connection. 200 requests warm
up, then the counters are zeroed, REQUESTS more are sent and the counts dumped:
exact and repeatable where wrk's throughput on a shared machine is not. Used by
`scripts/profile.sh nginx`.

    profile-nginx.py NGINX WASM CONFIG REQUEST.json [REQUESTS]

REQUEST.json is one request as realhost.py takes it: {"method", "path",
"headers": [[name, value], ...], "body"}. Prints the instructions per request of
the whole worker (client side, filter, upstream side) and of the filter's
callbacks with the host functions they call (`ngx_proxy_wasm_resume`).
"""
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def conf(work, wasm, config, front, up):
    # realhost.py's quoting: the configuration's bytes verbatim in single quotes.
    cfg = open(config, "rb").read().decode().replace("\\", "\\\\").replace("'", "\\'")
    return f"""daemon off;
master_process off;
worker_processes 1;
user root;
error_log '{work}/error.log' warn;
pid '{work}/nginx.pid';
events {{ worker_connections 1024; }}
wasm {{ module guard '{os.path.abspath(wasm)}'; shm_kv * 16m; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  underscores_in_headers on;
  client_max_body_size 0;
  client_body_temp_path '{work}/body';
  proxy_temp_path '{work}/proxy';
  upstream u {{ server 127.0.0.1:{up}; keepalive 8; }}
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 'upstream ok'; }} }}
  server {{
    listen 127.0.0.1:{front};
    location / {{
      proxy_wasm guard '{cfg}';
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_pass http://u;
    }}
  }}
}}
"""


def raw_request(req, front):
    lines = ["%s %s HTTP/1.1" % (req["method"], req["path"]), "Host: 127.0.0.1:%d" % front]
    lines += ["%s: %s" % (k, v) for k, v in req.get("headers", [])]
    body = req.get("body", "").encode()
    if body and not any(k.lower() == "content-length" for k, _ in req.get("headers", [])):
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def exchange(sock, raw, count):
    """Sends the request `count` times on one connection; returns the first status line."""
    first = None
    for _ in range(count):
        sock.sendall(raw)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise SystemExit("profile-nginx: nginx closed the connection")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        lengths = [int(l.split(b":")[1]) for l in head.split(b"\r\n")
                   if l.lower().startswith(b"content-length:")]
        while len(rest) < (lengths[0] if lengths else 0):
            rest += sock.recv(65536)
        if first is None:
            first = "%s %s" % (head.split(b"\r\n")[0].decode(), rest[:60].decode(errors="replace"))
    return first


def inclusive(out, pattern):
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out],
                          capture_output=True, text=True, check=True).stdout
    total, best = 0, {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(\S+)(?: \[.*\])?$", line)
        if not m:
            continue
        n, what = int(m.group(1).replace(",", "")), m.group(2)
        f = what.split(":")[-1]
        if re.search(pattern, f):
            best[f] = max(best.get(f, 0), n)
    return total, best


def main():
    nginx, wasm, config, request = sys.argv[1:5]
    count = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    req = json.load(open(request))
    work = tempfile.mkdtemp(prefix="s2s-profile-nginx-")
    proc = None
    try:
        for d in ("body", "proxy"):
            os.makedirs(os.path.join(work, d))
        front, up = free_port(), free_port()
        with open(os.path.join(work, "nginx.conf"), "w") as f:
            f.write(conf(work, wasm, config, front, up))
        out = os.path.join(work, "callgrind.out")
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--smc-check=all-non-file",
                                 "--callgrind-out-file=" + out, nginx, "-p", work + "/",
                                 "-c", os.path.join(work, "nginx.conf"), "-e", work + "/error.log"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", front), timeout=120)
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    sys.stderr.write(proc.stdout.read().decode()[-3000:])
                    raise SystemExit("profile-nginx: nginx did not start")
                time.sleep(0.5)
        raw = raw_request(req, front)
        exchange(sock, raw, 200)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        answer = exchange(sock, raw, count)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
        sock.close()
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
        errors = [l for l in open(os.path.join(work, "error.log")) if "[warn]" in l or "[error]" in l
                  or "[crit]" in l or "[alert]" in l or "[emerg]" in l]
        dump = [p for p in glob.glob(out + ".*")]
        if not dump:
            raise SystemExit("profile-nginx: callgrind wrote no dump")
        total, funcs = inclusive(dump[0], r"^ngx_proxy_wasm_resume$|^ngx_proxy_wasm_hfuncs_")
        print("answer: %s" % answer)
        print("%8d  instructions per request, the whole worker" % (total // count))
        for f, n in sorted(funcs.items(), key=lambda kv: -kv[1]):
            label = ("the filter's callbacks (guest, host calls, and the module's own debug"
                     " formatting)" if f == "ngx_proxy_wasm_resume" else f)
            print("%8d  %s" % (n // count, label))
        if errors:
            print("nginx logged: %s" % "".join(errors[:5]))
            sys.exit(1)
    finally:
        # Never leave nginx running under valgrind (a timeout or an error above).
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
