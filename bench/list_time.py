#!/usr/bin/env python3
"""Time of listing a folder of 10,000 files through the API, one build.

    python3 bench/list_time.py KURA_BIN [REPEATS]

Starts Kura on the embedded default, uploads 10,000 files of 100 bytes into
one folder over 8 connections, then lists the folder REPEATS times (default
9) in one page of 10,000 and prints each time and the median (ms, measured
by the client, new connection each time). Nothing is asserted.
"""
import http.client
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from auth_bench import Kura  # noqa: E402


def main():
    os.environ["KURA_DETECTION"] = "false"
    k = Kura(sys.argv[1])
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    try:
        project, root = k.ids["PROJECT"], k.ids["ROOT_FOLDER"]
        port = int(k.base.rsplit(":", 1)[1])
        auth = {"Authorization": "Bearer " + k.token}
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("POST", f"/api/projects/{project}/folders/{root}/folders", body=json.dumps({"name": "big"}),
                  headers={**auth, "Content-Type": "application/json"})
        folder = json.loads(c.getresponse().read())["id"]

        def upload(t):
            c = http.client.HTTPConnection("127.0.0.1", port)
            for i in range(t, 10000, 8):
                c.request("POST", f"/api/projects/{project}/folders/{folder}/files?name=file-{i:05d}.txt",
                          body=b"x" * 100, headers={**auth, "Content-Type": "application/octet-stream"})
                r = c.getresponse()
                r.read()
                if r.status != 201:
                    raise SystemExit(f"upload answered {r.status}")

        threads = [threading.Thread(target=upload, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        times = []
        for _ in range(repeats):
            c = http.client.HTTPConnection("127.0.0.1", port)
            t0 = time.perf_counter()
            c.request("GET", f"/api/projects/{project}/folders/{folder}/children?limit=10000", headers=auth)
            body = c.getresponse().read()
            times.append((time.perf_counter() - t0) * 1000)
        print(f"list 10,000 entries ({len(body):,} bytes), ms: {', '.join(f'{t:.1f}' for t in times)}; "
              f"median {statistics.median(times):.1f}")
    finally:
        k.stop()


if __name__ == "__main__":
    main()
