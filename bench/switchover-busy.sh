#!/usr/bin/env bash
# The busy guest of docs/bench/switchover.md, alternating in one run: QEMU 7.2 pre-copy (its
# TCG guest writing 110,000 random pages/s over 256 MiB of 1 GiB), then livemig's simulated
# guest with the same memory, hot set and rate, once with --switchover best and once with
# first-fit. One JSON line per migration on stdout, medians and ranges at the end.
# Run from the project root after a build:  bench/switchover-busy.sh [REPS] [BUDGET_MS] [QEMU_DIR]
# QEMU_DIR is ../shared/peers/qemu (its README says what to install); "none" skips QEMU.
set -u
reps=${1:-3}; budget=${2:-300}; qemu=${3:-../shared/peers/qemu}
out=$(mktemp /tmp/switchover-busy-XXXX.jsonl)
if [ "$qemu" != none ]; then
  export GUEST_DIR=${GUEST_DIR:-$(mktemp -d /tmp/livemig-qemu-guest-XXXX)}
  sh "$qemu/guest/build.sh" >&2 || exit 1
fi
for i in $(seq "$reps"); do
  if [ "$qemu" != none ]; then
    python3 "$qemu/migrate.py" --guest dirty --rate 110000 --mem 1024 --region-mb 256 --downtime-limit "$budget" \
      --timeout 60 --mode precopy 2>/dev/null | tail -1 \
      | python3 -c 'import json,os,sys; r=json.loads(sys.stdin.read()); print(json.dumps({"who":"qemu-precopy","totalMs":r.get("total_time_ms"),"downtimeMs":r.get("downtime_ms"),"status":r.get("status"),"load":os.getloadavg()[0]}))' \
      | tee -a "$out"
  fi
  for mode in best first-fit; do
    node bin/livemig.js demo --memory 1GiB --workload hotset --hot-set 256MiB --dirty-rate 450MB/s \
      --downtime-budget "${budget}ms" --switchover "$mode" --json 2>/dev/null \
      | node -e 'let t="";process.stdin.on("data",c=>t+=c).on("end",()=>{const r=JSON.parse(t);console.log(JSON.stringify({who:"livemig-"+process.argv[1],totalMs:r.totalMs,downtimeMs:r.downtimeMs,predictedDowntimeMs:r.predictedDowntimeMs,outcome:r.outcome,reason:r.switchoverReason,rounds:r.rounds.length,lastRoundBytes:r.rounds.at(-1)?.bytesRaw,switchover:r.switchover,load:require("node:os").loadavg()[0]}))})' "$mode" \
      | tee -a "$out"
  done
done
python3 - "$out" "$budget" <<'PY'
import json, sys, statistics as st
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"budget {sys.argv[2]} ms")
for w in ("qemu-precopy", "livemig-best", "livemig-first-fit"):
    t = [r["totalMs"] for r in rows if r["who"] == w and r.get("totalMs")]
    d = [r["downtimeMs"] for r in rows if r["who"] == w and r.get("downtimeMs") is not None]
    if t and d:
        print(f"{w:18} total {st.median(t):6.0f} ms ({min(t):.0f}-{max(t):.0f})   pause {st.median(d):6.1f} ms ({min(d):.1f}-{max(d):.1f})   n={len(t)}")
load = [r["load"] for r in rows if r.get("load") is not None]
if load:
    print(f"1-minute load average after each run: {min(load):.1f}-{max(load):.1f} (median {st.median(load):.1f}) on {__import__('os').cpu_count()} cores")
PY
echo "rows: $out"
