#!/usr/bin/env bash
# make bench-nginx: s2s-guard in a real third-party proxy-wasm host, nginx with Kong's
# ngx_wasm_module (built by ../shared/realhost/build.sh), against the floor filters,
# side by side in interleaved wrk rounds of one run (../shared/realhost/realhost.py
# bench). Writes the `nginx` section of BENCHMARKS.md.
#
#   scripts/bench-nginx.sh [NGINX] [FLOOR_FILTERS_DIR]
#
# NGINX defaults to $REALHOST_PREFIX/nginx/sbin/nginx and FLOOR_FILTERS_DIR (where
# noop.wasm and mintoken.wasm are) to $REALHOST_PREFIX, which defaults to
# ${XDG_CACHE_HOME:-~/.cache}/s2s-realhost (build.sh's prefix). Environment:
# ROUNDS (7), DURATION (5 s per round and filter), CONNECTIONS (16), WARMUP (1 s),
# WASM (dist/s2s-guard.wasm), BODYNOOP (dist/bodynoop-filter.wasm), OUT
# (BENCHMARKS.md; empty: print only), REALHOST (../shared/realhost/realhost.py).
#
# Comparisons: (a) an Adjust event with mintoken's token, forwarded, against
# mintoken, noop and the body-buffering no-op; (b) no token and (c) a wrong token,
# answered locally, against mintoken; (d) a signed SDK session POST (642-byte form
# body, signed now, replay memory off: bench/signature.json) against the
# body-buffering no-op and noop. Each filter's answer is checked first with
# `realhost.py run` and stated in the section. Exits non-zero if nginx logged errors
# or a filter did not answer as expected.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${REALHOST_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/s2s-realhost}
NGINX=${1:-$PREFIX/nginx/sbin/nginx}
FLOORS=${2:-$PREFIX}
REALHOST=${REALHOST:-../shared/realhost/realhost.py}
export ROUNDS=${ROUNDS:-7} DURATION=${DURATION:-5} CONNECTIONS=${CONNECTIONS:-16} WARMUP=${WARMUP:-1}
export WASM=${WASM:-dist/s2s-guard.wasm} BODYNOOP=${BODYNOOP:-dist/bodynoop-filter.wasm}
export OUT=${OUT-BENCHMARKS.md}
for f in "$NGINX" "$FLOORS/noop.wasm" "$FLOORS/mintoken.wasm" "$WASM" "$BODYNOOP" "$REALHOST"; do
  if [ ! -e "$f" ]; then
    echo "bench-nginx: $f is missing (the host and floors: bash ../shared/realhost/build.sh;" \
      "the filters: make build)" >&2
    exit 2
  fi
done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# Passed to the Python part under other names: nginx reads $NGINX itself (inherited
# listening sockets), so it must not be in its environment.
export BN_NGINX=$NGINX BN_FLOORS=$FLOORS BN_REALHOST=$REALHOST BN_WORK=$WORK
python3 - <<'PY'
import datetime, hashlib, json, os, re, statistics, subprocess, sys, urllib.parse

E = os.environ
WORK, NGINX, FLOORS, REALHOST = E["BN_WORK"], E["BN_NGINX"], E["BN_FLOORS"], E["BN_REALHOST"]
WASM, BODYNOOP, OUT = E["WASM"], E["BODYNOOP"], E["OUT"]
ROUNDS, DURATION, CONNECTIONS, WARMUP = (E[k] for k in ("ROUNDS", "DURATION", "CONNECTIONS", "WARMUP"))
# realhost.py runs nginx in its own directory: absolute paths for the modules.
WASM_ABS, BODYNOOP = os.path.abspath(WASM), os.path.abspath(BODYNOOP)
NOOP = os.path.abspath(os.path.join(FLOORS, "noop.wasm"))
MINTOKEN = os.path.abspath(os.path.join(FLOORS, "mintoken.wasm"))
TOKEN_CONFIG, SIG_CONFIG = "bench/realhost-token.json", "bench/signature.json"
TOKEN = "v8s5opi0zs45607l8h8c48wak2vxb5oe"  # the one token mintoken knows


def log(msg):
    sys.stderr.write("bench-nginx: %s\n" % msg)
    sys.stderr.flush()


def write(name, obj):
    path = os.path.join(WORK, name)
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


# ---- the requests ---------------------------------------------------------------
# An Adjust S2S event as the Adjust document sends it: a POST with its parameters in
# the query and no body. This host passes eof=false to on_http_request_headers even
# for a request without a body; `Content-Length: 0` tells s2s-guard there is none,
# so it decides at the headers as in Envoy (without it, it would wait for a body).
EVENT = "/event?s2s=1&app_token=abc123kuvada7&event_token=xyzklm&gps_adid=11110111-2345-6789-1122-000000005678"


def token_request(auth):
    h = [["User-Agent", "wrk"], ["Content-Length", "0"]]
    if auth:
        h.insert(0, ["Authorization", auth])
    return {"method": "POST", "path": EVENT, "headers": h}


valid = token_request("Bearer " + TOKEN)
missing = token_request(None)
wrong = token_request("Bearer x8s5opi0zs45607l8h8c48wak2vxb5oe")


def signed_request():
    """bench/signature-requests.jsonl's 642-byte session, signed now (the real clock
    decides freshness here) with bench/signature.json's App Secret."""
    with open("bench/signature-requests.jsonl") as f:
        line = json.loads(next(l for l in f if l.strip() and not l.startswith("#")))
    with open(SIG_CONFIG) as f:
        cfg = json.load(f)
    app, = cfg["apps"].keys()
    sec = cfg["apps"][app]["signature"]["secrets"][0]
    secret = sec.get("secret") or "".join(str(n) for n in sec["info"])
    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=60)
    created = now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ+0000" % (now.microsecond // 1000)
    body = re.sub(r"created_at=[^&]*", "created_at=" + urllib.parse.quote(created, safe=""),
                  line["body"], count=1)
    params = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
    auth = line["headers"]["authorization"]
    order = re.search(r'headers="([^"]*)"', auth).group(1).split()
    activity = {"/session": "session", "/event": "event"}[line["path"]]
    clear = "".join(secret if n == "app_secret" else activity if n == "activity_kind"
                    else params.get(n, "") for n in order)
    sig = hashlib.sha256(clear.encode()).hexdigest()
    auth = re.sub(r'signature="[0-9a-fA-F]*"', 'signature="%s"' % sig, auth)
    headers = [[k, v] for k, v in line["headers"].items() if k != "authorization"]
    headers.append(["authorization", auth])
    return {"method": line["method"], "path": line["path"], "headers": headers, "body": body}


signed = signed_request()
assert len(signed["body"]) == 642, len(signed["body"])


def realhost(*args, timeout=900):
    r = subprocess.run([sys.executable, REALHOST] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    lines = [json.loads(l) for l in r.stdout.decode().splitlines() if l.strip()]
    if not lines or "fatal" in lines[0] or "fatal" in lines[-1]:
        sys.stderr.write(r.stderr.decode()[-3000:])
        raise SystemExit("bench-nginx: realhost.py %s failed: %s" % (args[0], (lines or [r.returncode])[-1]))
    return lines


# ---- what each filter answers ------------------------------------------------------
FILTERS = {"s2s-guard": WASM_ABS, "mintoken": MINTOKEN, "noop": NOOP, "bodynoop": BODYNOOP}
REQUESTS = {"valid": valid, "missing": missing, "wrong": wrong, "signed": signed}
errors = []


def answers(name, config):
    path = os.path.join(WORK, "probe.jsonl")
    with open(path, "w") as f:
        for r in REQUESTS.values():
            f.write(json.dumps(r) + "\n")
    out = realhost("run", "--nginx", NGINX, "--wasm", FILTERS[name], "--config", config,
                   "--requests", path)
    errs = out[-1].get("nginx_errors", [])
    if errs:
        errors.append("%s (run): %s" % (name, errs))
    res = {}
    for key, o in zip(REQUESTS, out[:-1]):
        body = o.get("body")
        body = body if isinstance(body, str) else "(binary)"
        res[key] = {"status": o.get("status"), "body": body, "forwarded": o.get("reached_upstream"),
                    "error": o.get("error")}
    return res


load_start = os.getloadavg()[0]
log("checking what each filter answers (realhost.py run)")
seen = {
    "s2s-guard": answers("s2s-guard", TOKEN_CONFIG),
    "s2s-guard (signature config)": answers("s2s-guard", SIG_CONFIG),
    "mintoken": answers("mintoken", TOKEN_CONFIG),
    "noop": answers("noop", TOKEN_CONFIG),
    "bodynoop": answers("bodynoop", TOKEN_CONFIG),
}
expect = [("s2s-guard", "valid", True), ("s2s-guard", "missing", False), ("s2s-guard", "wrong", False),
          ("s2s-guard (signature config)", "signed", True), ("mintoken", "valid", True),
          ("mintoken", "missing", False), ("mintoken", "wrong", False), ("noop", "valid", True),
          ("noop", "signed", True), ("bodynoop", "valid", True), ("bodynoop", "signed", True)]
for f, r, fwd in expect:
    if seen[f][r]["forwarded"] is not fwd:
        errors.append("%s on the %s request: expected %s, got %s" % (
            f, r, "forwarded" if fwd else "a local reply", seen[f][r]))


def said(f, r):
    a = seen[f][r]
    if a["forwarded"]:
        return "forwarded (%s)" % a["status"]
    return "%s %s" % (a["status"], json.dumps(a["body"].rstrip("\n")))


# ---- the comparisons ---------------------------------------------------------------
COMPARISONS = [
    ("a", "Adjust event, mintoken's token (forwarded)", "valid", TOKEN_CONFIG, "mintoken"),
    ("a", "Adjust event, mintoken's token (forwarded)", "valid", TOKEN_CONFIG, "noop"),
    ("b", "Adjust event, no token (local reply)", "missing", TOKEN_CONFIG, "mintoken"),
    ("c", "Adjust event, wrong token (local reply)", "wrong", TOKEN_CONFIG, "mintoken"),
    ("d", "signed SDK session POST, 642-byte form body (forwarded)", "signed", SIG_CONFIG, "bodynoop"),
    ("d", "signed SDK session POST, 642-byte form body (forwarded)", "signed", SIG_CONFIG, "noop"),
]
results = []
for i, (tag, what, req, config, base) in enumerate(COMPARISONS, 1):
    log("(%s) %s: s2s-guard vs %s [%d/%d]" % (tag, what, base, i, len(COMPARISONS)))
    out = realhost("bench", "--nginx", NGINX, "--wasm", WASM_ABS, "--config", config,
                   "--baseline-wasm", FILTERS[base], "--request", write("one.json", REQUESTS[req]),
                   "--rounds", ROUNDS, "--duration", DURATION, "--connections", CONNECTIONS,
                   "--warmup", WARMUP)[-1]
    for v, errs in out.get("nginx_errors", {}).items():
        if errs:
            errors.append("(%s) vs %s, %s: %s" % (tag, base, v, errs[:5]))
    g = "s2s-guard (signature config)" if req == "signed" else "s2s-guard"
    for v, f in (("A", g), ("B", base)):
        if out["probe"][v]["status"] != seen[f][req]["status"]:
            errors.append("(%s) vs %s: the benchmark's probe of %s got %s, realhost.py run %s" % (
                tag, base, f, out["probe"][v], seen[f][req]["status"]))
    ratios = [r["ratio_rps_A_over_B"] for r in out["rounds"] if "ratio_rps_A_over_B" in r]
    res = dict(tag=tag, what=what, req=req, base=base, config=config,
               rps_a=out["median_rps_A"], rps_b=out["median_rps_B"],
               p50_a=out["median_p50_us_A"], p50_b=out["median_p50_us_B"],
               ratio=out["median_ratio_rps_A_over_B"], lo=min(ratios), hi=max(ratios),
               probe=out["probe"],
               non2xx=[(r["A"]["non_2xx_3xx"], r["B"]["non_2xx_3xx"]) for r in out["rounds"]],
               sockerr=[(r["A"]["socket_errors"], r["B"]["socket_errors"]) for r in out["rounds"]])
    results.append(res)
    log("    median ratio %.3f (rounds %.3f-%.3f), %.0f vs %.0f req/s" % (
        res["ratio"], res["lo"], res["hi"], res["rps_a"], res["rps_b"]))
    if any(a or b for a, b in res["sockerr"]):
        errors.append("(%s) vs %s: socket errors %s" % (tag, base, res["sockerr"]))

# ---- the section -------------------------------------------------------------------
version = subprocess.run([NGINX, "-V"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode()
first = version.splitlines()[0] if version else "?"
m = re.search(r"nginx/(\S+)\s*\(realhost (\S+) (\S+)\)", first)
if m:
    host_versions = "nginx %s, ngx_wasm_module %s, Wasmtime %s (`nginx -V`: %s)" % (
        m.group(1), m.group(2).replace("ngx_wasm_module-", ""),
        m.group(3).replace("wasmtime-", ""), first.replace("nginx version: ", ""))
else:
    host_versions = first
cpu = "?"
try:
    with open("/proc/cpuinfo") as f:
        cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
except (OSError, StopIteration):
    pass
load_end = os.getloadavg()[0]
# The last commit that changed the filter's sources (the .wasm is built from them).
sha = subprocess.run(["git", "log", "-1", "--format=%h", "--", "src"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().strip() or "?"
with open(WASM, "rb") as f:
    wasm_sha = hashlib.sha256(f.read()).hexdigest()[:12]
dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL).stdout.decode().strip()
size = os.path.getsize(WASM)
BASE_NAME = {"mintoken": "mintoken (minimal token filter)", "noop": "noop (does nothing)",
             "bodynoop": "bodynoop (buffers the body)"}

md = []
md.append("### Real host: nginx + ngx_wasm_module (scripts/bench-nginx.sh)\n")
md.append(
    "A second, independent proxy-wasm host: %s, built by `../shared/realhost/build.sh` "
    "(nginx's and ngx_wasm_module's source tarballs, the Wasmtime C API from crates.io, "
    "linked statically) and driven by `../shared/realhost/realhost.py bench`: one nginx worker "
    "per filter, `wrk -t1 -c%s`, %s interleaved rounds of %s s per filter (A B A B ...) after a %s s "
    "warm-up, upstream an nginx `return 200` over keepalive. Filter: `%s` (%d bytes, SHA-256 %s…, "
    "built from src/ at %s%s). Machine: %d cores (%s), shared with other work (load average %.1f "
    "at the start, %.1f at the end). **Absolute figures vary from machine to "
    "machine (and from run to run on a shared one); the ratios from one run compare.** "
    "Ratio = s2s-guard's req/s ÷ the baseline's, the median of the per-round ratios; spread = "
    "the smallest and largest per-round ratio.\n"
    % (host_versions, CONNECTIONS, ROUNDS, DURATION, WARMUP, WASM, size, wasm_sha, sha,
       " with uncommitted changes" if dirty else "", os.cpu_count() or 0, cpu, load_start,
       load_end))
md.append("| | request | baseline | s2s-guard req/s | baseline req/s | **ratio** | spread (rounds) | p50 µs s2s-guard / baseline |")
md.append("|---|---|---|---:|---:|---:|---|---:|")
for r in results:
    md.append("| (%s) | %s | %s | %.0f | %.0f | **%.3f** | %.3f–%.3f | %d / %d |" % (
        r["tag"], r["what"], BASE_NAME[r["base"]], r["rps_a"], r["rps_b"], r["ratio"],
        r["lo"], r["hi"], r["p50_a"], r["p50_b"]))
md.append("")
md.append("What each filter answered (`realhost.py run` before the runs; each benchmark's "
          "probe request got the same status, or it is listed under problems below):\n")
md.append("| request | s2s-guard | mintoken | noop | bodynoop |")
md.append("|---|---|---|---|---|")
for key, label in (("valid", "(a) `POST %s`, `Authorization: Bearer %s`, `Content-Length: 0`, no body" % (EVENT, TOKEN)),
                   ("missing", "(b) the same without `Authorization`"),
                   ("wrong", "(c) the same with another bearer token"),
                   ("signed", "(d) `POST /session`, signed SDK session, 642-byte form body")):
    g = "s2s-guard (signature config)" if key == "signed" else "s2s-guard"
    md.append("| %s | %s | %s | %s | %s |" % (label, said(g, key), said("mintoken", key),
                                              said("noop", key), said("bodynoop", key)))
md.append("")
statuses = {(k, seen["s2s-guard"][k]["status"], seen["mintoken"][k]["status"]) for k in ("missing", "wrong")}
diff = [s for s in statuses if s[1] != s[2]]
if diff:
    md.append(
        "The local replies differ: s2s-guard answers with the Adjust profile (%s), mintoken "
        "401 `no`, so (b) and (c) compare a 2xx local reply of s2s-guard with a 401 of mintoken "
        "(both answered by the filter without reaching the upstream; bodies of similar size). "
        "A custom profile answering 401 would match mintoken exactly.\n"
        % ", ".join("%s: %s" % (k, said("s2s-guard", k)) for k in ("missing", "wrong")))
md.append(
    "Configurations: (a)–(c) `%s` (the `adjust` preset and one token, mintoken's, bound to the "
    "app; its escaped size must stay within realhost's 4094-byte limit for a `proxy_wasm` "
    "argument); (d) `%s` (replay memory off, so one signed request can be repeated; it is "
    "signed when the script starts, as freshness follows the real clock here). The request path "
    "must be a protected Adjust route (`/event?s2s=1&app_token=…&event_token=…`), else s2s-guard "
    "passes it unchecked.\n" % (TOKEN_CONFIG, SIG_CONFIG))
md.append(
    "How this host differs from Envoy, and what it means for these figures "
    "(`../shared/realhost/README.md`):\n\n"
    "- `on_http_request_headers` always gets `end_of_stream = false`. s2s-guard decides at the "
    "headers when `Content-Length: 0` announces no body (Envoy removes `Transfer-Encoding` before "
    "the filters, so nothing else can) and refuses bytes that arrive anyway; the token requests "
    "(a)-(c) are sent that way, as Adjust's S2S requests are (query parameters, no body), and "
    "are decided at the headers like mintoken's. A request with no framing header is waited on "
    "as a possible form (a POST without one is refused 415 here).\n"
    "- Removing a request header has no effect: the `Authorization` that s2s-guard (and "
    "mintoken) strips still reaches the upstream here.\n"
    "- Request trailers are not delivered to filters.\n"
    "- `proxy_get_log_level` has another signature (`(i32 i32) -> i32`): a filter that calls the "
    "SDK's `get_log_level()` does not load. s2s-guard must not call it (it loaded in this run).\n"
    "- Each worker compiles the module with Cranelift at start (s2s-guard: about 1.5 s here).\n")
if errors:
    md.append("**Problems in this run** (nginx_errors must be empty):\n")
    for e in errors:
        md.append("- %s" % str(e)[:500])
    md.append("")
else:
    md.append("nginx_errors: empty for every run and filter.\n")
body = "\n".join(md) + "\n"
print(body)
if OUT:
    name = "nginx"
    try:
        old = open(OUT).read()
    except OSError:
        old = "# Benchmarks\n\n"
    op, cl = "<!-- bench:%s -->" % name, "<!-- /bench:%s -->" % name
    block = "%s\n%s%s" % (op, body, cl)
    a, b = old.find(op), old.find(cl)
    new = old[:a] + block + old[b + len(cl):] if 0 <= a < b else old.rstrip() + "\n" + block + "\n"
    with open(OUT, "w") as f:
        f.write(new)
    log("wrote the nginx section of %s" % OUT)
if errors:
    log("problems: %s" % errors)
    sys.exit(1)
PY
