#!/usr/bin/env python3
"""Server CPU per authenticated 4 KiB GET, for several Kura builds side by side.

    python3 bench/get_cpu_ab.py KURA_BIN [KURA_BIN ...]

One server per binary (embedded default, detection off), interleaved three
times: `wrk -t2 -c64 -d8s` on one file with an API token, after a 2 s warm-up.
Prints req/s and the server process's CPU time divided by the requests it
served (microseconds). CPU per request is much steadier than req/s on a noisy
machine, where wrk shares the cores. Nothing is asserted.
"""
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from auth_bench import Kura  # noqa: E402


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(k, secs):
    return subprocess.run(["wrk", "-t2", "-c64", f"-d{secs}s", "-H", "Authorization: Bearer " + k.token, k.url],
                          capture_output=True, text=True, check=True).stdout


def main():
    os.environ["KURA_DETECTION"] = "false"
    bins = sys.argv[1:]
    servers = [Kura(b) for b in bins]
    res = {b: [] for b in bins}
    try:
        for _ in range(3):
            for b, k in zip(bins, servers):
                wrk(k, 2)
                c0 = cpu_seconds(k.proc.pid)
                out = wrk(k, 8)
                n = int(re.search(r"(\d+) requests in", out).group(1))
                rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
                res[b].append((rps, (cpu_seconds(k.proc.pid) - c0) / n * 1e6))
    finally:
        for k in servers:
            k.stop()
    report(res, "req/s", "request")


def report(res, rate_name, per):
    """One line per binary: its rates and CPU µs per item, with medians."""
    for b, runs in res.items():
        rates = [r for r, _ in runs]
        cpu = [c for _, c in runs]
        print(f"{b}: {rate_name} {', '.join(f'{r:,.0f}' for r in rates)} (median {statistics.median(rates):,.0f}); "
              f"CPU µs/{per} {', '.join(f'{c:.0f}' for c in cpu)} (median {statistics.median(cpu):.0f})")


if __name__ == "__main__":
    main()
