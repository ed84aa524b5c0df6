#!/usr/bin/env python3
"""Cost of breach readiness on audited small-file downloads (issue 5).

    python3 bench/detect_bench.py KURA_BIN [REPS] [SECS]

Two servers from the same binary, on SQLite: one with the detection rules
off (`KURA_DETECTION=false`) and no SIEM forwarding, one with detection on
and every event forwarded to a JSON-lines file. Both hash-chain every event
(that cannot be turned off). Authenticated 4 KiB GETs with an API token,
wrk -t2 -c32, interleaved REPS times; medians, their ratio and the median of
the per-rep (paired) ratios. On the "on"
server the volume rules' thresholds are raised out of reach (the rules are
still evaluated): otherwise they contain the benchmark's own token. Any
refused request stops the run. Nothing else is asserted. DETECTION_ONLY=1 leaves forwarding off on both.
"""
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kura_bench  # noqa: E402
from auth_bench import Kura, get_rps  # noqa: E402


def start(binary, extra):
    saved = dict(os.environ)
    os.environ.update(extra)
    try:
        return Kura(binary)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def volume_rules_out_of_reach(k):
    """Keep every rule on but the volume thresholds out of reach: one token
    reading gigabytes in minutes is exactly what the bulk-download rules
    contain, and a contained token's refusals are not throughput. The cost
    measured is evaluating the rules and forwarding, not containment."""
    me, _ = kura_bench.call(k.base, "GET", "/api/me", token=k.token)
    path = f"/api/orgs/{me['org']['id']}/detection"
    rules, _ = kura_bench.call(k.base, "GET", path, token=k.token)
    for name in ("bulk_download", "new_project_bulk"):
        rules[name]["bytes"] = 1 << 50
        rules[name]["files"] = 1 << 30
    kura_bench.call(k.base, "PUT", path, rules, (200,), token=k.token)


def main():
    binary = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    secs = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    sink = os.path.join(tempfile.mkdtemp(), "audit.jsonl")
    on = {"KURA_DETECTION": "true"}
    if os.environ.get("DETECTION_ONLY") != "1":
        on["KURA_AUDIT_FORWARD_FILE"] = sink
    servers = {
        "off": start(binary, {"KURA_DETECTION": "false"}),
        "on": start(binary, on),
    }
    volume_rules_out_of_reach(servers["on"])
    rps = {k: [] for k in servers}
    try:
        for _ in range(reps):
            for name, k in servers.items():
                get_rps(k, 32, 2)  # warm up
                rps[name].append(get_rps(k, 32, secs))
    finally:
        for k in servers.values():
            k.stop()
    off, on = statistics.median(rps["off"]), statistics.median(rps["on"])
    print("| series | detection and forwarding off, req/s | on, req/s | ratio |")
    print("|---|---:|---:|---:|")
    for i in range(reps):
        print(f"| rep {i + 1} | {rps['off'][i]:,.0f} | {rps['on'][i]:,.0f} | {rps['on'][i] / rps['off'][i]:.3f} |")
    paired = statistics.median(rps["on"][i] / rps["off"][i] for i in range(reps))
    print(f"| **median** | **{off:,.0f}** | **{on:,.0f}** | **{on / off:.3f}** |")
    # Each rep measures both servers back to back: the median of those paired
    # ratios is steadier than the ratio of medians when the machine drifts.
    print(f"| **median of the paired ratios** | | | **{paired:.3f}** |")
    if os.path.exists(sink):
        print(f"forwarded lines: {sum(1 for _ in open(sink))}")


if __name__ == "__main__":
    main()
