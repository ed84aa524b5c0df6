#!/usr/bin/env python3
"""Zero-trust sign-in benchmark (issue 4), standard library + wrk.

  python3 bench/auth_bench.py BIN_BEFORE BIN_AFTER [REPS] [SECS]

1. Per-request checks: authenticated 4 KiB GETs (API token) with wrk -t2 -c32,
   the binary from before sign-in policies vs the current one, interleaved
   REPS times; medians and the ratio.
2. Sign-in flood: the same GETs (wrk -c16) alone, then while a second wrk
   (-c16) posts wrong-password sign-ins for random unknown emails; the share
   of GET throughput kept. Run with the per-address sign-in limit lifted (the
   Argon2 pool alone protects) and, for the current binary, with the default
   limit (20/min) too.
Prints a markdown table; nothing is asserted.
"""
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kura_bench  # noqa: E402

FLOOD_LUA = r'''
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  return wrk.format(nil, nil, nil, string.format(
    '{"email":"flood%d@example.org","password":"wrong password %d"}',
    math.random(1, 1000000000), math.random(1, 1000000000)))
end
'''


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Kura:
    def __init__(self, binary, signin_limit=1_000_000, password_budget=1_000_000):
        self.dir = tempfile.mkdtemp(prefix="kura-authbench-")
        self.port = free_port()
        env = dict(os.environ, KURA_LOG="warn", KURA_SIGNIN_RATE_PER_MINUTE=str(signin_limit),
                   KURA_ANONYMOUS_RATE_PER_MINUTE="100000000",
                   KURA_PASSWORD_CHECKS_PER_SECOND=str(password_budget))
        self.out = open(os.path.join(self.dir, "stdout"), "w+")
        self.proc = subprocess.Popen([binary, "serve", "--data-dir", self.dir, "--listen",
                                      f"127.0.0.1:{self.port}"], stdout=self.out,
                                     stderr=subprocess.DEVNULL, env=env)
        self.base = f"http://127.0.0.1:{self.port}"
        for _ in range(600):
            self.out.seek(0)
            text = self.out.read()
            if "kura: listening on" in text:
                break
            time.sleep(0.1)
        boot = re.search(r"^kura: bootstrap-token (\S+)", text, re.M).group(1)
        ids = {}
        import contextlib
        import io
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            kura_bench.setup(self.base, boot, binary, self.dir)
        for line in buf.getvalue().splitlines():
            k, _, v = line.partition("=")
            ids[k] = v.strip("'")
        self.token = ids["TOKEN"]
        self.ids = ids
        req = urllib.request.Request(
            f"{self.base}/api/projects/{ids['PROJECT']}/folders/{ids['ROOT_FOLDER']}/files?name=small.bin",
            data=os.urandom(4096), method="POST",
            headers={"Authorization": "Bearer " + self.token, "Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req) as r:
            import json
            self.file = json.loads(r.read())["id"]
        self.url = f"{self.base}/api/projects/{ids['PROJECT']}/files/{self.file}/content"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


def wrk_rps(args):
    out = subprocess.run(["wrk"] + args, capture_output=True, text=True, check=True).stdout
    # A refused request is not throughput (detection once contained the
    # benchmark's own token, and wrk counted the 401s: RESULTS.md, run 9).
    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if failed:
        sys.exit(f"wrk: {failed.group(1)} requests were refused; the figure would be meaningless")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def get_rps(k, conns, secs):
    return wrk_rps(["-t1" if conns <= 16 else "-t2", f"-c{conns}", f"-d{secs}s", "-H",
                    "Authorization: Bearer " + k.token, k.url])


def flooded(k, secs, lua):
    flood = subprocess.Popen(["wrk", "-t1", "-c16", f"-d{secs + 2}s", "-s", lua, k.base + "/api/auth/login"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(1)
    rps = get_rps(k, 16, secs)
    out = flood.communicate()[0]
    logins = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, logins


def main():
    before, after = sys.argv[1], sys.argv[2]
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    secs = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    lua = os.path.join(tempfile.mkdtemp(), "flood.lua")
    with open(lua, "w") as f:
        f.write(FLOOD_LUA)
    started = []

    def start(*a, **kw):
        k = Kura(*a, **kw)
        started.append(k)
        return k

    try:
        servers = {"before": start(before), "after": start(after)}
        budget = start(after, password_budget=4)
        limited = start(after, signin_limit=20)
        gets = {"before": [], "after": []}
        for _ in range(0 if os.environ.get("FLOOD_ONLY") == "1" else reps):
            for name, k in servers.items():
                get_rps(k, 32, 2)  # warm up
                gets[name].append(get_rps(k, 32, secs))
        flood = {}
        cases = [] if os.environ.get("GETS_ONLY") == "1" else list(servers.items()) + [
            ("after, password budget 4/s (default)", budget),
            ("after, per-address limit 20/min (default)", limited)]
        for name, k in cases:
            alone, during, logins = [], [], []
            for _ in range(reps):
                alone.append(get_rps(k, 16, secs))
                r, l = flooded(k, secs, lua)
                during.append(r)
                logins.append(l)
            flood[name] = (statistics.median(alone), statistics.median(during), statistics.median(logins))
    finally:
        for k in started:
            k.stop()
    if gets["before"]:
        b, a = statistics.median(gets["before"]), statistics.median(gets["after"])
        print(f"| measure | before | after | ratio |\n|---|---|---|---|")
        print(f"| 4 KiB GET with API token, wrk -t2 -c32 -d{secs}s, req/s (median of {reps}) | {b:,.0f} | {a:,.0f} | {a / b:.3f} |")
        print(f"\nall runs: before {gets['before']}, after {gets['after']}\n")
    print("| server | GET alone req/s | GET during flood req/s | kept | flood sign-in answers/s |\n|---|---|---|---|---|")
    for name, (alone, during, logins) in flood.items():
        print(f"| {name} | {alone:,.0f} | {during:,.0f} | {during / alone:.0%} | {logins:,.0f} |")


if __name__ == "__main__":
    main()
