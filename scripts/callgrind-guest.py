#!/usr/bin/env python3
"""Per-request instructions by function, host and guest, from two callgrind runs of
the test host (N and 2N requests) with wasmtime's perf map (S2S_HOST_PERFMAP=1):
the guest's JIT-compiled functions, which callgrind sees only as addresses, are
named from the map. Used by `scripts/profile.sh guest`.

    callgrind-guest.py OUT_N MAP_N OUT_2N MAP_2N N [TOP]
"""
import bisect
import collections
import re
import subprocess
import sys


def namer(perf_map):
    syms = []
    with open(perf_map) as f:
        for line in f:
            addr, size, name = line.rstrip("\n").split(" ", 2)
            syms.append((int(addr, 16), int(size, 16), name))
    syms.sort()
    starts = [s[0] for s in syms]

    def name(addr):
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and addr < syms[i][0] + syms[i][1]:
            return demangle(syms[i][2])
        return None
    return name


def demangle(sym):
    # Legacy Rust mangling: _ZN<len><part>...17h<hash>E -> a::b::c
    if sym.startswith("_ZN"):
        parts, s = [], sym[3:]
        while s and s[0].isdigit():
            n = re.match(r"\d+", s).group(0)
            s = s[len(n):]
            parts.append(s[: int(n)])
            s = s[int(n):]
        parts = [p for p in parts if not re.fullmatch(r"h[0-9a-f]{16}", p)]
        sym = "::".join(parts)
        for a, b in (("$LT$", "<"), ("$GT$", ">"), ("$u20$", " "), ("$u7b$", "{"),
                     ("$u7d$", "}"), ("$C$", ","), ("$RF$", "&"), ("..", "::")):
            sym = sym.replace(a, b)
    return sym


def load(out, perf_map, inclusive):
    name = namer(perf_map)
    text = subprocess.run(["callgrind_annotate", "--inclusive=" + ("yes" if inclusive else "no"),
                           "--threshold=100", out], capture_output=True, text=True, check=True).stdout
    costs = collections.Counter()
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*)$", line)
        if not m:
            continue
        n, what = int(m.group(1).replace(",", "")), m.group(2)
        jit = re.match(r"\?\?\?:0x([0-9a-f]+) \[\?\?\?\]", what)
        if jit:
            what = "guest " + (name(int(jit.group(1), 16)) or "(unnamed)")
        elif what.startswith("PROGRAM TOTALS"):
            what = "PROGRAM TOTALS"
        else:
            what = "host " + re.sub(r"\s*\[.*\]$", "", what).split(":")[-1]
        if inclusive:
            costs[what] = max(costs[what], n)
        else:
            costs[what] += n
    return costs


def main():
    out_a, map_a, out_b, map_b, n = sys.argv[1:6]
    top = int(sys.argv[6]) if len(sys.argv) > 6 else 30
    n = int(n)
    for inclusive in (False, True):
        a, b = load(out_a, map_a, inclusive), load(out_b, map_b, inclusive)
        diff = {k: (b[k] - a.get(k, 0)) / n for k in b}
        if not inclusive:
            guest = sum(v for k, v in diff.items() if k.startswith("guest "))
            print("%8.0f  instructions per request, whole run" % diff.get("PROGRAM TOTALS", 0))
            print("%8.0f  of them in the guest (JIT-compiled Wasm)" % guest)
            print("\nself, per request (guest functions):")
        else:
            print("\ninclusive, per request (guest functions):")
        rows = sorted(((k, v) for k, v in diff.items() if k.startswith("guest ")),
                      key=lambda kv: -kv[1])
        for k, v in rows[:top]:
            print("%8.0f  %s" % (v, k[:140]))


if __name__ == "__main__":
    main()
