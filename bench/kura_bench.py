#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

  kura_bench.py setup BASE BOOTSTRAP_TOKEN           -> shell lines TOKEN=… PROJECT=… ROOT_FOLDER=…
  kura_bench.py mkdir BASE TOKEN PROJECT PARENT NAME  -> id of the new folder
  kura_bench.py curlcfg URL_PREFIX SRC_DIR N [FILE]   -> curl -K config, one url/upload-file pair
        per file: URL_PREFIX + f00001.bin ...; uploads FILE for every entry if given
  kura_bench.py page-bytes BASE COOKIE PATH          -> KiB of a web page and its assets
  kura_bench.py count JSON_FILE                       -> number of "items" (fails on next_cursor)
  kura_bench.py report RAW_TSV OUT_MD COMMAND         -> prints the table, writes markdown

Every HTTP call checks its status and exits non-zero with the response body otherwise.
"""
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request


def call(base, method, path, body=None, expect=(200,), token=None, cookie=None, csrf=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if cookie:
        req.add_header("Cookie", cookie)
    if csrf:
        req.add_header("X-CSRF-Token", csrf)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, raw, headers = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, raw, headers = e.code, e.read(), e.headers
    if status not in expect:
        sys.exit(f"kura_bench: {method} {path} -> HTTP {status} (expected {expect}): {raw[:500]!r}")
    try:
        return (json.loads(raw) if raw else None), headers
    except ValueError:  # a plain-text answer (e.g. 405 from an older binary)
        return None, headers


TOTP = {}  # email -> (secret bytes, last step used)


def totp_at(secret, step):
    """RFC 6238 (SHA-1, 6 digits, 30 s), to sign in through the second factor."""
    import hashlib
    import hmac
    import struct
    h = hmac.new(secret, struct.pack(">Q", step), hashlib.sha1).digest()
    o = h[19] & 15
    return "%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)


def login(base, email, password):
    """Password, then the TOTP factor (enrolled at the first sign-in)."""
    import base64
    body, headers = call(base, "POST", "/api/auth/login", {"email": email, "password": password},
                         (200, 401))
    if body.get("code") == "mfa-enrolment-required":
        ch = body["challenge"]
        e, _ = call(base, "POST", "/api/auth/enrol/totp", {"challenge": ch})
        b32 = e["secret"] + "=" * (-len(e["secret"]) % 8)
        secret, step = base64.b32decode(b32), int(time.time()) // 30
        TOTP[email] = (secret, step)
        body, headers = call(base, "POST", "/api/auth/enrol/totp/confirm",
                             {"challenge": ch, "factor_id": e["factor_id"], "code": totp_at(secret, step)})
    elif body.get("code") == "mfa-required":
        secret, last = TOTP[email]
        step = max(last + 1, int(time.time()) // 30 - 1)
        if step > int(time.time()) // 30 + 1:
            time.sleep(31)
            step = int(time.time()) // 30
        TOTP[email] = (secret, step)
        body, headers = call(base, "POST", "/api/auth/mfa",
                             {"challenge": body["challenge"], "method": "totp", "code": totp_at(secret, step)})
    elif "csrf_token" not in body:
        sys.exit(f"kura_bench: login as {email}: {body}")
    for c in headers.get_all("Set-Cookie") or []:
        if c.startswith("kura_session="):
            return c.split(";", 1)[0], body["csrf_token"]
    sys.exit("kura_bench: login returned no kura_session cookie")


def setup(base, boot, kura_bin=None, data_dir=None):
    pw = "bench-password-1"
    call(base, "POST", "/api/bootstrap", {"token": boot, "email": "admin@bench.test",
                                          "display_name": "Bench Admin", "password": pw}, (201,))
    if kura_bin and data_dir:
        # Administrators need a passkey by default; the benchmark signs in with TOTP.
        # (Binaries from before sign-in policies have no such command: ignored.)
        subprocess.run([kura_bin, "admin", "set-policy", "--org", "platform", "--json",
                        '{"webauthn_for_admins": false}', "--data-dir", data_dir],
                       capture_output=True, check=False)
    ck, csrf = login(base, "admin@bench.test", pw)
    org, _ = call(base, "POST", "/api/admin/orgs", {"name": "Bench", "slug": "bench",
                  "quota_bytes": 1 << 40}, (200, 201), cookie=ck, csrf=csrf)
    call(base, "PUT", f"/api/orgs/{org['id']}/policy", {"webauthn_for_admins": False},
         (200, 404, 405), cookie=ck, csrf=csrf)
    call(base, "POST", f"/api/orgs/{org['id']}/users", {"email": "user@bench.test",
         "display_name": "Bench User", "password": pw, "org_admin": True}, (200, 201),
         cookie=ck, csrf=csrf)
    ck, csrf = login(base, "user@bench.test", pw)
    tok, _ = call(base, "POST", "/api/me/tokens", {"name": "bench", "expires_in_days": 1}, (201,),
                  cookie=ck, csrf=csrf)
    secret = tok["secret"]
    proj, _ = call(base, "POST", "/api/projects", {"name": "bench"}, (200, 201), token=secret)
    print(f"TOKEN={secret}\nPROJECT={proj['id']}\nROOT_FOLDER={proj['root_folder_id']}\nCOOKIE='{ck}'")


def mkdir(base, token, project, parent, name):
    node, _ = call(base, "POST", f"/api/projects/{project}/folders/{parent}/folders",
                   {"name": name}, (200, 201), token=token)
    print(node["id"])


def curlcfg(prefix, src, n, one_file=None):
    out = []
    for i in range(1, int(n) + 1):
        name = "f%05d.bin" % i
        path = one_file or os.path.join(src, name)
        out.append(f'url = "{prefix}{name}"\nupload-file = "{path}"\n')
    sys.stdout.write("".join(out))


def page_bytes(base, cookie, path):
    """Bytes of the page plus the stylesheets and scripts it references."""
    req = urllib.request.Request(base + path, headers={"Cookie": cookie})
    with urllib.request.urlopen(req, timeout=60) as r:
        html = r.read()
    total = len(html)
    import re
    for ref in sorted(set(re.findall(rb'(?:href|src)="(/assets/[^"]+)"', html))):
        with urllib.request.urlopen(urllib.request.Request(base + ref.decode()), timeout=60) as r:
            total += len(r.read())
    print(round(total / 1024, 1))


def count(path):
    with open(path) as f:
        d = json.load(f)
    if d.get("next_cursor"):
        sys.exit("kura_bench: listing was paginated (next_cursor set)")
    print(len(d["items"]))


# ---------------------------------------------------------------- report
# metric -> (label, unit, target kind, target value); kinds: rel (kura >= v * nginx),
# min (kura >= v), max (kura < v), none
ROWS = [
    ("put_big", "upload {BIG} (Kura POST / nginx PUT)", "GB/s", "rel", 0.5),
    ("get_big", "download {BIG} (GET)", "GB/s", "rel", 0.5),
    ("small_seq1", "upload {SMALL} x 4 KiB, 1 keep-alive conn", "files/s", "none", None),
    ("small_par8", "upload {SMALL} x 4 KiB, 8 conns", "files/s", "min", 1500),
    ("list", "list {LIST} entries (Kura GET children / nginx PROPFIND)", "ms", "max", 100),
    ("web_list", "web file browser page, folder of {LIST} entries (first page)", "ms", "max", 30),
    ("web_bytes", "web file browser page: HTML + CSS + JS transferred", "KiB", "max", 150),
    ("wrk_rps", "GET 4 KiB, wrk -t2 -c64 -d{WRK}s", "req/s", "rel", 0.2),
    ("wrk_p99", "GET 4 KiB, wrk p99 latency", "ms", "none", None),
    ("rss_idle", "RSS at idle, after setup (process tree)", "MiB", "max", 40),
    ("rss_growth", "RSS peak growth during {BIG} transfers", "MiB", "max", 64),
]


def fmt(v):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"


def report(raw, out_md, command):
    vals, notes, bg = {}, [], []
    with open(raw) as f:
        for line in f:
            server, metric, rep, value, note = line.rstrip("\n").split("\t")
            vals.setdefault((metric, server), []).append(float(value))
            for item in filter(None, note.split(";")):
                if item.startswith("bg="):
                    bg.append(int(item[3:].rstrip("%")))
                elif item.startswith("WARN"):
                    notes.append(f"{server} {metric} rep {rep}: {item}")
    env = os.environ
    big = int(env.get("BIG_MB", "1024"))
    sub = {"BIG": f"{big // 1024} GiB" if big % 1024 == 0 else f"{big} MiB",
           "SMALL": f"{int(env.get('SMALL_N', '2000')):,}", "LIST": f"{int(env.get('LIST_N', '10000')):,}",
           "WRK": env.get("WRK_SECS", "10")}
    head = "| workload | kura | nginx | ratio kura/nginx | target |"
    lines = [head, "|---|---:|---:|---:|---|"]
    failed = 0
    for metric, label, unit, kind, tv in ROWS:
        k, n = vals.get((metric, "kura")), vals.get((metric, "nginx"))
        km = statistics.median(k) if k else None
        nm = statistics.median(n) if n else None
        ratio = km / nm if km is not None and nm else None
        if kind == "none" or km is None:
            target = "—"
        else:
            ok = {"rel": lambda: ratio is not None and ratio >= tv,
                  "min": lambda: km >= tv, "max": lambda: km < tv}[kind]()
            failed += not ok
            want = {"rel": f">= {tv}x nginx", "min": f">= {tv:,} {unit}", "max": f"< {tv} {unit}"}[kind]
            target = f"{want}: {'PASS' if ok else 'FAIL'}"
        lines.append(f"| {label.format(**sub)}, {unit} | {fmt(km)} | {fmt(nm)} | "
                     f"{'n/a' if ratio is None else f'{ratio:.2f}'} | {target} |")
    reps = env.get("REPS", "3")
    foot = [f"Cells are medians of REPS={reps} repetition(s) (RSS: one sample series, 100 ms). "
            f"Targets failed: {failed}.",
            f"Background CPU busy in the 1 s before timed runs: max {max(bg) if bg else 'n/a'}%."]
    table = "\n".join(lines)
    print(table + "\n")
    print("\n".join(foot + notes))
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    md = [f"# Kura vs nginx benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", "",
          f"- machine: `{uname}`", f"- nproc: {os.cpu_count()}",
          f"- kura: `{env.get('KURA_BIN', '?')}`; nginx: {nginx_version()}",
          f"- command: `{command}`", "", table, ""] + foot + [""]
    if notes:
        md += ["Warnings:", ""] + [f"- {x}" for x in notes] + [""]
    with open(raw) as f:
        md += ["## Raw measurements", "", "server, metric, repetition, value, notes "
               "(bg = whole-machine CPU busy % in the 1 s before the run)", "", "```", f.read().rstrip(), "```", ""]
    with open(out_md, "w") as f:
        f.write("\n".join(md))


def nginx_version():
    try:
        r = subprocess.run(["nginx", "-v"], capture_output=True, text=True, timeout=10)
        return r.stderr.strip().replace("nginx version: ", "")
    except OSError:
        return "?"


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"setup": setup, "mkdir": mkdir, "curlcfg": curlcfg, "count": count, "report": report,
     "page-bytes": page_bytes}[cmd](*args)
