#!/usr/bin/env python3
"""Server CPU per small upload, for several Kura builds side by side.

    python3 bench/upload_cpu_ab.py [-n N] KURA_BIN [KURA_BIN ...]

One server per binary (embedded default, detection off), interleaved three
times: N (default 2000) files of 4 KiB, one POST each, by
`curl --parallel --parallel-max 8` into a new folder. Prints uploads/s and
the server process's CPU time divided by the uploads (microseconds), which
is steadier than uploads/s on a noisy machine where curl shares the cores.

Small-file figures on this machine's ext4 (no journal) depend on how many
files were deleted in the last minutes (see bench/README.md): run it after
`sync` and a quiet minute, and compare builds within one run. Nothing is
asserted.
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kura_bench  # noqa: E402
from auth_bench import Kura  # noqa: E402
from get_cpu_ab import cpu_seconds, report  # noqa: E402


def folder(k, name):
    node, _ = kura_bench.call(k.base, "POST", f"/api/projects/{k.ids['PROJECT']}/folders/{k.ids['ROOT_FOLDER']}/folders",
                              {"name": name}, (200, 201), token=k.token)
    return node["id"]


def upload_all(k, fid, src, n):
    prefix = f"{k.base}/api/projects/{k.ids['PROJECT']}/folders/{fid}/files?name="
    cfg = "".join(f'url = "{prefix}f{i:05d}.bin"\nupload-file = "{src}/f{i:05d}.bin"\noutput = "/dev/null"\n' for i in range(1, n + 1))
    t0 = time.monotonic()
    out = subprocess.run(["curl", "-sS", "--no-progress-meter", "--parallel", "--parallel-max", "8", "-X", "POST",
                          "-H", "Authorization: Bearer " + k.token, "-K", "-",
                          "-w", "%{http_code}\n"], input=cfg, capture_output=True, text=True, timeout=900)
    secs = time.monotonic() - t0
    ok = out.stdout.split().count("201")
    if ok != n:
        codes = sorted(set(out.stdout.split()))[:5]
        sys.exit(f"only {ok} of {n} uploads succeeded (codes {codes}): {out.stderr[-300:]}")
    return n / secs


def main():
    args = sys.argv[1:]
    n = 2000
    if args[:1] == ["-n"]:
        n, args = int(args[1]), args[2:]
    os.environ["KURA_DETECTION"] = "false"
    src = tempfile.mkdtemp(prefix="kura-upload-ab-")
    for i in range(1, n + 1):
        with open(f"{src}/f{i:05d}.bin", "wb") as f:
            f.write(os.urandom(4096))
    servers = [Kura(b) for b in args]
    res = {b: [] for b in args}
    try:
        for rnd in range(3):
            for b, k in zip(args, servers):
                fid = folder(k, f"round-{rnd}")
                c0 = cpu_seconds(k.proc.pid)
                rate = upload_all(k, fid, src, n)
                res[b].append((rate, (cpu_seconds(k.proc.pid) - c0) / n * 1e6))
    finally:
        for k in servers:
            k.stop()
        subprocess.run(["rm", "-rf", src])
    report(res, "uploads/s", "upload")


if __name__ == "__main__":
    main()
