#!/usr/bin/env python3
"""Scope report benchmark: `kura incident scope` over a large audit trail.

    python3 bench/scope_bench.py KURA_BIN [EVENTS] [ORGS] [REPS]

Creates a data folder with `kura migrate`, fills it with EVENTS synthetic audit
events (default 10,000,000) across ORGS organizations (default 100) with SQL in
SQLite itself (Python's sqlite3 module runs one INSERT … SELECT over a recursive
counter), plus one "attacker" whose 20,000 events touch 60 of the organizations,
then times the report (wall clock, median of REPS runs, default 3; 0 only loads) by actor,
session, one address, and address ranges with and without a time window.

Synthetic events have no hash chain (the report does not read it); the
organizations and projects exist so that names and the unaffected list are
real. The data folder is kept under /tmp (about 4 GB for 10 million events)
and removed at the end unless KEEP=1.
"""

import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

kura = sys.argv[1]
events = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000_000
orgs = int(sys.argv[3]) if len(sys.argv) > 3 else 100
reps = int(sys.argv[4]) if len(sys.argv) > 4 else 3

def uid(kind, n):
    return f"{kind}0000000-0000-7000-8000-{n:012d}"


BASE_TS = 1_795_000_000_000_000  # µs; events 1 ms apart
attacker = uid(9, 1)
env = dict(os.environ, KURA_LOG="warn")
reuse = os.environ.get("DATA")  # a folder loaded by an earlier run with KEEP=1
data = reuse or tempfile.mkdtemp(prefix="kura-scope-bench-")


def first_start(folder):
    """Start the server once: it creates the keys and runs the migrations."""
    p = subprocess.Popen([kura, "serve", "--listen", "127.0.0.1:0", "--data-dir", folder],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:
        if line.startswith("kura: listening on"):
            break
    p.terminate()
    p.wait(timeout=30)


if not os.path.exists(os.path.join(data, "master.key")):
    first_start(data)
# One organization made properly, for the master key's id: the synthetic ones
# carry it too (their wrapped keys are dummies; the report never opens them).
with sqlite3.connect(os.path.join(data, "kura.db")) as c:
    have_probe = c.execute("SELECT COUNT(*) FROM orgs WHERE slug = 'bench-probe'").fetchone()[0]
# `with` only commits: a connection left open blocks the bulk load's journal change.
c.close()
if not have_probe:
    subprocess.run([kura, "admin", "create-org", "--name", "Probe (bench)", "--slug", "bench-probe", "--data-dir", data],
                   check=True, env=env, capture_output=True)
with sqlite3.connect(os.path.join(data, "kura.db")) as c:
    KEY_ID = c.execute("SELECT master_key_id FROM orgs WHERE slug = 'bench-probe'").fetchone()[0]
    c.execute("UPDATE orgs SET master_key_id = ? WHERE master_key_id = 'bench'", (KEY_ID,))
c.close()
if reuse:
    db = None
else:
    db = sqlite3.connect(os.path.join(data, "kura.db"))
if db is not None:
    # Bulk load: no journal, no index maintenance per row; the indexes are
    # rebuilt (sorted, much faster) exactly as the migrations defined them.
    db.execute("PRAGMA journal_mode=OFF")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-262144")
    indexes = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_events' AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in indexes:
        db.execute(f'DROP INDEX "{name}"')

    t0 = time.time()
    db.executemany(
        "INSERT INTO orgs (id, name, slug, quota_bytes, wrapped_key, master_key_id, created_at) VALUES (?, ?, ?, 0, x'00', ?, 0)",
        [(uid(1, o), f"Organization {o:03d}", f"org-{o:03d}", KEY_ID) for o in range(orgs)],
    )
    db.executemany(
        "INSERT INTO projects (id, org_id, name, root_node_id, created_at, created_by) VALUES (?, ?, ?, ?, 0, 'bench')",
        [(uid(3, p), uid(1, p % orgs), f"Project {p:04d}", uid(4, p)) for p in range(orgs * 10)],
    )
    # One INSERT … SELECT: 5,000 users, 50,000 sessions, addresses 10.x.y.z,
    # 70% downloads, 20% listings, 10% uploads.
    db.execute(
        f"""
        WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {events - 1})
        INSERT INTO audit_events (ts, org_id, actor_user_id, actor_org_id, credential, ip, user_agent, request_id,
                                  action, outcome, project_id, node_id, version_id, object_name, bytes, detail)
        SELECT {BASE_TS} + x * 1000,
               printf('10000000-0000-7000-8000-%012d', x % {orgs}),
               printf('20000000-0000-7000-8000-%012d', (x * 7919) % 5000),
               printf('10000000-0000-7000-8000-%012d', ((x * 7919) % 5000) % {orgs}),
               printf('session:50000000-0000-7000-8000-%012d', (x * 7919) % 50000),
               printf('10.%d.%d.%d', (x / 65536) % 256, (x / 256) % 256, x % 256),
               'bench', NULL,
               CASE WHEN x % 10 < 7 THEN 'file.download' WHEN x % 10 < 9 THEN 'folder.list' ELSE 'file.upload' END,
               'success',
               printf('30000000-0000-7000-8000-%012d', (x % {orgs}) + {orgs} * ((x / {orgs}) % 10)),
               printf('40000000-0000-7000-8000-%012d', x % 200000),
               printf('60000000-0000-7000-8000-%012d', x % 200000),
               printf('file-%d.pdf', x % 200000),
               4096, NULL
        FROM c
        """
    )
    # The attacker: 20,000 downloads across 60 organizations, from 198.51.100.7.
    db.execute(
        f"""
        WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < 19999)
        INSERT INTO audit_events (ts, org_id, actor_user_id, actor_org_id, credential, ip, user_agent, action, outcome,
                                  project_id, node_id, version_id, object_name, bytes)
        SELECT {BASE_TS} + x * 500, printf('10000000-0000-7000-8000-%012d', x % 60), '{attacker}',
               '10000000-0000-7000-8000-000000000000', 'session:90000000-0000-7000-8000-000000000001',
               '198.51.100.7', 'curl', 'file.download', 'success',
               printf('30000000-0000-7000-8000-%012d', x % 60), printf('70000000-0000-7000-8000-%012d', x),
               printf('80000000-0000-7000-8000-%012d', x), printf('stolen-%d.pdf', x), 65536
        FROM c
        """
    )
    db.commit()
    for _, sql in indexes:
        db.execute(sql)
    db.commit()
    total = db.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0]
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    load_secs = time.time() - t0
    size = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data))

else:
    load_secs = 0.0
    with sqlite3.connect(os.path.join(data, "kura.db")) as c:
        total = c.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0]
size = sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data) if os.path.isfile(os.path.join(data, f)))

def from_to(minutes_from, minutes_to):
    def iso(us):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(us / 1e6))
    return ["--from", iso(BASE_TS + minutes_from * 60_000_000), "--to", iso(BASE_TS + minutes_to * 60_000_000)]

cases = [
    ("actor (attacker, 20,000 events in 60 orgs)", ["--actor", attacker]),
    ("actor (ordinary user, ~2,000 events)", ["--actor", uid(2, 1234)]),
    ("session", ["--session", "90000000-0000-7000-8000-000000000001"]),
    ("one address", ["--ip", "198.51.100.7"]),
    ("range /24 (attacker's network)", ["--ip", "198.51.100.0/24"]),
    ("range /16 over the whole trail (65,536 events)", ["--ip", "10.3.0.0/16"]),
    ("range /8 + 1-hour window", ["--ip", "10.0.0.0/8", *from_to(60, 120)]),
]
if reps == 0:  # only load the folder (with KEEP=1, for later runs with DATA=)
    cases = []
print(f"# {total:,} events, {orgs} organizations, loaded in {load_secs:.0f} s, data folder {size / 2**30:.1f} GiB")
print("| report | median s | runs | affected orgs | events matched |")
print("|---|---:|---|---:|---:|")
for label, args in cases:
    times = []
    summary = ""
    for _ in range(reps):
        started = time.time()
        out = subprocess.run([kura, "incident", "scope", *args, "--format", "json", "--out", os.devnull, "--data-dir", data],
                             env=env, capture_output=True, text=True)
        times.append(time.time() - started)
        if out.returncode != 0:
            sys.exit(f"{label}: {out.stderr}")
        summary = out.stderr.strip()
    # stderr: "<subject>: N event(s); A organization(s) affected, U not"
    matched = summary.split(": ")[-1].split(" event")[0]
    affected = summary.split("; ")[-1].split(" organization")[0]
    print(f"| {label} | {statistics.median(times):.2f} | {', '.join(f'{t:.2f}' for t in times)} | {affected} | {matched} |")

if os.environ.get("KEEP") != "1":
    shutil.rmtree(data)
else:
    print(f"# kept {data}")
