#!/usr/bin/env bash
# Kura vs nginx (WebDAV) on this machine, in one run, 127.0.0.1 only. See bench/README.md.
#   bash bench/run.sh          knobs: REPS BIG_MB SMALL_N LIST_N WRK_SECS KURA_BIN KURA_PORT ...
# Prints one table and writes it to bench/out/latest.md (raw numbers in bench/out/raw.tsv).
set -euo pipefail
# the exact command, as typed (knobs given in the environment first)
CMD=""
for v in KURA_BIN REPS BIG_MB SMALL_N LIST_N WRK_SECS KURA_PORT KURA_LOG QUIET_MAX_WAIT QUIET_WINDOW \
         BENCH_TMP PERF PEERS KEEP_DATA; do
  [ -n "${!v+x}" ] && CMD+="$v=$(printf %q "${!v}") "
done
CMD+="bash $0"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEERS=${PEERS:-$ROOT/../shared/bench/peers}
export REPS=${REPS:-3} BIG_MB=${BIG_MB:-1024} SMALL_N=${SMALL_N:-2000} LIST_N=${LIST_N:-10000}
export WRK_SECS=${WRK_SECS:-10} KURA_BIN=${KURA_BIN:-$ROOT/target/release/kura}
KURA_PORT=${KURA_PORT:-}                        # default: first free of 18090-18109
BENCH_TMP=${BENCH_TMP:-/tmp/kura-bench}
export PERF=${PERF:-$BENCH_TMP/perf}           # servers.sh: nginx config, logs and data live here
export SRC=$BENCH_TMP/src                      # generated test files (made once, reused)
export QUIET_MAX_WAIT=${QUIET_MAX_WAIT:-30} QUIET_WINDOW=${QUIET_WINDOW:-2}
OUT=$HERE/out RAW=$HERE/out/raw.tsv LOG=$BENCH_TMP/log
PY="python3 $HERE/kura_bench.py"
# shellcheck source=/dev/null
source "$PEERS/servers.sh"                     # PORT[], start_server, stop_server, wait_quiet
set -euo pipefail                              # (servers.sh sets only -u)
NURL=http://127.0.0.1:${PORT[nginx]}
BIG_BYTES=$((BIG_MB * 1048576))

die() { echo "bench: ERROR: $*" >&2; exit 1; }
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RAW"; printf 'bench: %-6s %-11s rep %s: %s (%s)\n' "$@"; }
calc() { awk "BEGIN{printf \"%.4f\", $1}"; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
[ "$LIST_N" -le 10000 ] || die "LIST_N must be <= 10000 (Kura's page limit)"
[ -f "$PEERS/servers.sh" ] && [ -f "$PEERS/rss_sampler.py" ] || die "peer scripts not found in $PEERS"

# ---- tools: nginx + dav-ext, wrk, curl (apt, as servers.sh's ensure_installed does, but only these)
need=()
command -v nginx >/dev/null || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_http_dav_ext_module.so ] || need+=(libnginx-mod-http-dav-ext)
command -v wrk >/dev/null || need+=(wrk)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
if [ ! -x "$KURA_BIN" ]; then
  [ "$KURA_BIN" = "$ROOT/target/release/kura" ] || die "KURA_BIN=$KURA_BIN is not an executable"
  (cd "$ROOT" && cargo build --release -p kura)
fi

# ---- processes: everything started here is stopped by PID on exit
KPID="" KS="" NS=""                           # kura, its RSS sampler, nginx's RSS sampler
cleanup() {
  set +e
  for p in "$KS" "$NS"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; done
  if [ -n "$KPID" ] && kill -0 "$KPID" 2>/dev/null; then
    kill -TERM "$KPID"
    for _ in $(seq 1 100); do kill -0 "$KPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$KPID" 2>/dev/null
  fi
  stop_server nginx
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- test data
mkdir -p "$SRC/small" "$OUT" "$LOG"
: > "$RAW"
BIG=$SRC/big-${BIG_MB}m.bin
if [ "$(stat -c %s "$BIG" 2>/dev/null || echo 0)" != "$BIG_BYTES" ]; then
  echo "bench: generating $BIG"; head -c "$BIG_BYTES" /dev/urandom > "$BIG"
fi
python3 - "$SRC" "$SMALL_N" <<'EOF'
import os, sys
src, n = sys.argv[1], int(sys.argv[2])
for i in range(1, n + 1):
    p = os.path.join(src, "small", "f%05d.bin" % i)
    if not os.path.exists(p) or os.path.getsize(p) != 4096:
        with open(p, "wb") as f:
            f.write(os.urandom(4096))
for name, data in (("get4k.bin", None), ("entry100.bin", b"x" * 100)):
    p = os.path.join(src, name)
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(data or os.urandom(4096))
EOF
NROOT=$PERF/data/nginx
rm -rf "$NROOT"; mkdir -p "$NROOT/list"
python3 -c 'import sys
for i in range(int(sys.argv[2])): open(sys.argv[1] + "/entry-%05d.txt" % i, "wb").write(b"x" * 100)' "$NROOT/list" "$LIST_N"
cp "$SRC/get4k.bin" "$NROOT/get4k.bin"
cat "$BIG" > /dev/null   # source file in page cache
sync

# ---- servers
port_free "${PORT[nginx]}" || die "port ${PORT[nginx]} is already in use"
if [ -z "$KURA_PORT" ]; then               # first free port of 18090-18109
  for p in $(seq 18090 18109); do port_free "$p" && { KURA_PORT=$p; break; }; done
fi
[ -n "$KURA_PORT" ] && port_free "$KURA_PORT" || die "port ${KURA_PORT:-18090-18109} is already in use"
KURL=http://127.0.0.1:$KURA_PORT
NPID=$(start_server nginx "$NROOT") || die "nginx did not start (see $PERF/run/nginx.*)"
KDATA=$BENCH_TMP/data
rm -rf "$KDATA"; mkdir -p "$KDATA"
# Detection off by default: one token moving 3 GiB out of a project first used minutes ago is
# exactly what the bulk-download rules contain (its cost is bench/detect_bench.py's subject).
KURA_DETECTION=${KURA_DETECTION:-false} KURA_LOG=${KURA_LOG:-warn} "$KURA_BIN" serve --data-dir "$KDATA" --listen "127.0.0.1:$KURA_PORT" \
  > "$LOG/kura.stdout" 2> "$LOG/kura.stderr" &
KPID=$!
for _ in $(seq 1 600); do
  grep -q '^kura: listening on' "$LOG/kura.stdout" && break
  kill -0 "$KPID" 2>/dev/null || die "kura exited during startup: $(tail -5 "$LOG/kura.stderr")"
  sleep 0.1
done
grep -q '^kura: listening on' "$LOG/kura.stdout" || die "kura did not announce its listener in 60 s"
sleep 1; KFRESH=$(awk '/^VmRSS/{printf "%.1f", $2/1024}' "/proc/$KPID/status")   # before any request
BOOT=$(awk '$2=="bootstrap-token"{print $3}' "$LOG/kura.stdout")
[ -n "$BOOT" ] || die "no bootstrap token in kura's output"
$PY setup "$KURL" "$BOOT" "$KURA_BIN" "$KDATA" > "$LOG/ids.env" || die "kura setup failed"
source "$LOG/ids.env"                          # TOKEN PROJECT ROOT_FOLDER
AUTH="Authorization: Bearer $TOKEN"
kfolder() { $PY mkdir "$KURL" "$TOKEN" "$PROJECT" "$ROOT_FOLDER" "$1" || die "mkdir $1"; }
kupload_url() { echo "$KURL/api/projects/$PROJECT/folders/$1/files?name=$2"; }
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# curl one file to Kura: name src -> echoes node id (fails unless 201)
kput() {
  local code
  code=$(curl -sS --max-time 60 -o "$LOG/put.json" -w '%{http_code}' -X POST -H "$AUTH" \
    --data-binary "@$2" "$(kupload_url "$ROOT_FOLDER" "$1")") || die "upload $1: curl failed"
  [ "$code" = 201 ] || die "upload $1: HTTP $code $(head -c 300 "$LOG/put.json")"
  json_field "$LOG/put.json" id
}
K4K=$(kput get4k.bin "$SRC/get4k.bin")

# ---- RSS: idle (2 s), then peak during the big uploads/downloads
rss_start() { python3 "$PEERS/rss_sampler.py" "$2" "$3" > /dev/null & printf -v "$1" %s "$!"; }  # VAR PID JSON
rss_stop() { kill -TERM "${!1}"; wait "${!1}" || true; printf -v "$1" %s ""; }                     # VAR
rss_mib() { python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["peak_rss_kib"]/1024, 1))' "$1"; }
sleep 1
rss_start KS "$KPID" "$LOG/kura.idle.json"; rss_start NS "$NPID" "$LOG/nginx.idle.json"; sleep 2
rss_stop KS; rss_stop NS
KIDLE=$(rss_mib "$LOG/kura.idle.json") NIDLE=$(rss_mib "$LOG/nginx.idle.json")
rec kura rss_idle 1 "$KIDLE" "info:fresh_start=${KFRESH}MiB"; rec nginx rss_idle 1 "$NIDLE" ""
rss_start KS "$KPID" "$LOG/kura.big.json"; rss_start NS "$NPID" "$LOG/nginx.big.json"

# ---- big file: upload REPS times, then download the last one REPS times
for i in $(seq 1 "$REPS"); do
  curl -sS -o /dev/null -X DELETE "$NURL/big.bin" || true; rm -f "$NROOT/big.bin"; sync
  bg=$(wait_quiet)
  read -r code t < <(curl -sS --max-time 900 -o /dev/null -T "$BIG" -w '%{http_code} %{time_total}\n' "$NURL/big.bin") || true
  [[ $code =~ ^20[14]$ ]] && [ "$(stat -c %s "$NROOT/big.bin")" = "$BIG_BYTES" ] || die "nginx PUT: HTTP $code"
  rec nginx put_big "$i" "$(calc "$BIG_BYTES/$t/1e9")" "bg=$bg%"
  # As for nginx above: the previous rep's file is removed first (trash, then purge: its blob
  # is deleted), so each rep writes into the same page-cache state. Keeping every rep's
  # 1 GiB made each next write touch memory the VM had never used, up to 3x slower (run 9).
  if [ -n "${KBIG:-}" ]; then
    for path in "nodes/$KBIG" "trash/$KBIG"; do
      code=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE -H "$AUTH" "$KURL/api/projects/$PROJECT/$path")
      [ "$code" = 204 ] || [ "$code" = 200 ] || die "kura: DELETE $path: HTTP $code"
    done
  fi
  sync; bg=$(wait_quiet)
  read -r code t < <(curl -sS --max-time 900 -o "$LOG/put.json" -X POST -H "$AUTH" -T "$BIG" \
    -w '%{http_code} %{time_total}\n' "$(kupload_url "$ROOT_FOLDER" "big-$i.bin")") || true
  [ "$code" = 201 ] || die "kura upload: HTTP $code $(head -c 300 "$LOG/put.json")"
  [ "$(json_field "$LOG/put.json" size)" = "$BIG_BYTES" ] || die "kura upload: wrong size"
  KBIG=$(json_field "$LOG/put.json" id)
  rec kura put_big "$i" "$(calc "$BIG_BYTES/$t/1e9")" "bg=$bg%"
done
sync
for i in $(seq 1 "$REPS"); do
  for s in nginx kura; do
    if [ $s = nginx ]; then a=("$NURL/big.bin"); else a=(-H "$AUTH" "$KURL/api/projects/$PROJECT/files/$KBIG/content"); fi
    bg=$(wait_quiet)
    read -r code t n < <(curl -sS --max-time 900 -o /dev/null -w '%{http_code} %{time_total} %{size_download}\n' "${a[@]}") || true
    [ "$code" = 200 ] && [ "$n" = "$BIG_BYTES" ] || die "$s download: HTTP $code, $n bytes"
    rec $s get_big "$i" "$(calc "$n/$t/1e9")" "bg=$bg%"
  done
done
curl -sS --max-time 900 -H "$AUTH" "$KURL/api/projects/$PROJECT/files/$KBIG/content" | cmp -s - "$BIG" \
  || die "kura download differs from the uploaded file"
rss_stop KS; rss_stop NS
KPEAK=$(rss_mib "$LOG/kura.big.json") NPEAK=$(rss_mib "$LOG/nginx.big.json")
rec kura rss_growth 1 "$(calc "$KPEAK-$KIDLE")" "info:peak=${KPEAK}MiB"
rec nginx rss_growth 1 "$(calc "$NPEAK-$NIDLE")" "info:peak=${NPEAK}MiB"

# ---- small files: SMALL_N x 4 KiB, one request each, 1 keep-alive connection or 8
LAST=$(printf %05d "$SMALL_N")
small_put() { # server mode rep
  local s=$1 mode=$2 i=$3 dir="small-$2-$3" a=() t0 t1 ok conns fid
  [ "$mode" = par8 ] && a=(--parallel --parallel-max 8)
  if [ "$s" = nginx ]; then
    [ "$(curl -sS -o /dev/null -w '%{http_code}' -X MKCOL "$NURL/$dir/")" = 201 ] || die "MKCOL $dir"
    a+=(-T "$SRC/small/f[00001-$LAST].bin" "$NURL/$dir/")
  else
    fid=$(kfolder "$dir")
    $PY curlcfg "$(kupload_url "$fid" "")" "$SRC/small" "$SMALL_N" > "$LOG/$dir.curl"
    a+=(-X POST -H "$AUTH" -K "$LOG/$dir.curl")
  fi
  bg=$(wait_quiet); t0=$EPOCHREALTIME
  timeout 900 curl -sS --no-progress-meter "${a[@]}" -w '%{stderr}%{http_code} %{num_connects}\n' \
    > /dev/null 2> "$LOG/$s.$dir.log" || die "$s small $mode: curl failed ($(tail -2 "$LOG/$s.$dir.log"))"
  t1=$EPOCHREALTIME
  ok=$(grep -cE '^20[14] ' "$LOG/$s.$dir.log" || true)
  conns=$(awk '/^[0-9]{3} /{s+=$2} END{print s+0}' "$LOG/$s.$dir.log")
  [ "$ok" = "$SMALL_N" ] || die "$s small $mode: only $ok of $SMALL_N uploads succeeded (see $LOG/$s.$dir.log)"
  rec "$s" "small_$mode" "$i" "$(calc "$SMALL_N/($t1-$t0)")" "bg=$bg%;info:conns=$conns"
}
for mode in seq1 par8; do
  for i in $(seq 1 "$REPS"); do small_put nginx $mode "$i"; small_put kura $mode "$i"; done
done

# ---- listing LIST_N entries: nginx PROPFIND Depth:1 (files made on disk above), Kura GET children
KLIST=$(kfolder list)
$PY curlcfg "$(kupload_url "$KLIST" "")" "$SRC" "$LIST_N" "$SRC/entry100.bin" > "$LOG/list.curl"
t0=$EPOCHREALTIME
timeout 1800 curl -sS --no-progress-meter --parallel --parallel-max 8 -X POST -H "$AUTH" -K "$LOG/list.curl" \
  -w '%{stderr}%{http_code}\n' > /dev/null 2> "$LOG/kura.list-fill.log" || die "filling the list folder failed"
ok=$(grep -c '^201$' "$LOG/kura.list-fill.log" || true)
[ "$ok" = "$LIST_N" ] || die "list fill: only $ok of $LIST_N uploads succeeded"
echo "bench: kura list folder filled: $LIST_N x 100 B in $(calc "$EPOCHREALTIME-$t0") s"
for i in $(seq 1 "$REPS"); do
  bg=$(wait_quiet)
  read -r code t n < <(curl -sS --max-time 120 -X PROPFIND -H 'Depth: 1' -o "$LOG/propfind.xml" \
    -w '%{http_code} %{time_total} %{size_download}\n' "$NURL/list/") || true
  c=$(grep -oiE '<([a-z0-9]+:)?response[ >]' "$LOG/propfind.xml" | wc -l)
  [ "$code" = 207 ] && [ "$c" = $((LIST_N + 1)) ] || die "nginx PROPFIND: HTTP $code, $c responses"
  rec nginx list "$i" "$(calc "$t*1000")" "bg=$bg%;info:bytes=$n"
  bg=$(wait_quiet)
  read -r code t n < <(curl -sS --max-time 120 -H "$AUTH" -o "$LOG/list.json" \
    -w '%{http_code} %{time_total} %{size_download}\n' "$KURL/api/projects/$PROJECT/folders/$KLIST/children?limit=10000") || true
  [ "$code" = 200 ] || die "kura list: HTTP $code $(head -c 300 "$LOG/list.json")"
  c=$($PY count "$LOG/list.json"); [ "$c" = "$LIST_N" ] || die "kura list: $c items, want $LIST_N"
  rec kura list "$i" "$(calc "$t*1000")" "bg=$bg%;info:bytes=$n"
done

# ---- the web file browser on the same 10,000-entry folder (first page), Kura only
for i in $(seq 1 "$REPS"); do
  bg=$(wait_quiet)
  read -r code t n < <(curl -sS --max-time 60 -H "Cookie: $COOKIE" -o "$LOG/browser.html" \
    -w '%{http_code} %{time_total} %{size_download}\n' "$KURL/projects/$PROJECT/folders/$KLIST") || true
  [ "$code" = 200 ] || die "kura web page: HTTP $code $(head -c 300 "$LOG/browser.html")"
  rec kura web_list "$i" "$(calc "$t*1000")" "bg=$bg%;info:bytes=$n"
done
rec kura web_bytes 1 "$($PY page-bytes "$KURL" "$COOKIE" "/projects/$PROJECT/folders/$KLIST")" ""

# ---- wrk GET 4 KiB, 2 threads, 64 connections
ERRORS=0
for i in $(seq 1 "$REPS"); do
  for s in nginx kura; do
    if [ $s = nginx ]; then a=("$NURL/get4k.bin"); else a=(-H "$AUTH" "$KURL/api/projects/$PROJECT/files/$K4K/content"); fi
    bg=$(wait_quiet); f=$LOG/$s.wrk.$i.txt
    timeout $((WRK_SECS + 60)) wrk -t2 -c64 -d"${WRK_SECS}s" --latency "${a[@]}" > "$f" 2>&1 || die "$s wrk failed: $(cat "$f")"
    rps=$(awk '/^Requests\/sec/{print $2}' "$f")
    p99=$(awk '$1=="99%"{v=$2; if(v~/us$/){sub(/us/,"",v);v/=1000}else if(v~/ms$/){sub(/ms/,"",v)}else if(v~/s$/){sub(/s/,"",v);v*=1000}; print v}' "$f")
    [ -n "$rps" ] && [ -n "$p99" ] || die "$s wrk: no result in $f"
    bad=$(grep -E 'Non-2xx|Socket errors' "$f" | tr -s ' ' | tr '\n' ' ' || true)
    [ -z "$bad" ] || { ERRORS=$((ERRORS + 1)); bad="WARN $bad"; }
    rec $s wrk_rps "$i" "$rps" "bg=$bg%${bad:+;$bad}"
    rec $s wrk_p99 "$i" "$p99" ""
  done
done

echo
$PY report "$RAW" "$OUT/latest.md" "$CMD"
echo "bench: wrote $OUT/latest.md"
cleanup                                        # stop the servers, then drop GBs of data (sources stay)
[ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$KDATA" "$NROOT/big.bin"
[ "$ERRORS" = 0 ] || die "$ERRORS wrk runs saw errors or non-2xx answers (see warnings above)"
