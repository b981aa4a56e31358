#!/usr/bin/env bash
# Instructions per request of a proxy, counted by callgrind (deterministic where req/s on a
# shared VM is not; kernel time is not counted). The bench upstream on two free ports, the
# proxy under valgrind, WARM requests, the counters zeroed, N requests 10 at a time, a dump.
#   bash bench/instructions.sh ficus   [NEW_PERCENT=0 SHADOW_PERCENT=0 SIZE=1k WARM=4000 N=2000]
#   bash bench/instructions.sh undici
#   bash bench/instructions.sh undici-required   (the limit plus the headers, log line and metrics Ficus must make)
#   CONFIG=bench/ficus-bench-stages.yaml bash bench/instructions.sh ficus   (every later stage on, elsewhere)
# Needs: npm run build, valgrind (apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-ficus}
free() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
LP=$(free); NP=$(free); PP=$(free)
out=$(mktemp -d)
PORTS=$LP,$NP node dist/bench/upstream.js & UP=$!
disown $UP
case $which in
  ficus) cmd=(node dist/src/cli.js start --config "${CONFIG:-bench/ficus-bench.yaml}") ;;
  undici) cmd=(node dist/bench/baseline-undici.js) ;;
  undici-required) cmd=(node dist/bench/baseline-undici.js); export REQUIRED=1 ;;
  undici-shadow) cmd=(node dist/bench/baseline-undici-shadow.js) ;;
  *) echo "ficus, undici, undici-required or undici-shadow" >&2; exit 2 ;;
esac
PORT=$PP LEGACY_URL=http://127.0.0.1:$LP NEW_URL=http://127.0.0.1:$NP FICUS_LOG_LEVEL=${FICUS_LOG_LEVEL:-info} FICUS_STORE="$out/ficus.lmdb" \
  NEW_PERCENT=${NEW_PERCENT:-0} SHADOW_PERCENT=${SHADOW_PERCENT:-0} \
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" "${cmd[@]}" > /dev/null 2> "$out/valgrind.txt" & PX=$!
disown $PX
trap 'kill -9 $PX $UP 2>/dev/null || true; rm -rf "$out"' EXIT
url=http://127.0.0.1:$PP/${SIZE:-1k}.json
for _ in $(seq 300); do curl -s -o /dev/null "$url" && break; sleep 0.5; done
load() {
  node --input-type=module -e "
    import { Agent, request } from 'undici'
    const agent = new Agent({ connections: 10 })
    let left = $1
    await Promise.all(Array.from({ length: 10 }, async () => {
      while (left-- > 0) {
        const r = await request('$url', { dispatcher: agent, headers: { 'x-user-id': 'u' + (left % 10000) } })
        await r.body.dump()
        if (r.statusCode !== 200) throw new Error('status ' + r.statusCode)
      }
    }))
    await agent.close()"
}
load "${WARM:-4000}"
callgrind_control -z $PX > /dev/null 2>&1
start=$(date +%s%N)
load "${N:-2000}"
callgrind_control -d $PX > /dev/null 2>&1
took=$(( ($(date +%s%N) - start) / 1000000 ))
sleep 1
ir=$(cat "$out"/cg.$PX.* | awk '/^summary:/ { s += $2 } END { print s }')
echo "$which: $((ir / ${N:-2000})) instructions per request ($ir over ${N:-2000}, ${SIZE:-1k}, in $took ms)"
# What the process does on its own (timers: the ramp's rounds, the sync store's watch): under
# valgrind requests are ~50 times slower, so this weighs ~50 times more per request than at speed.
if [ "${IDLE:-0}" != 0 ]; then
  rm -f "$out"/cg.$PX.*
  callgrind_control -z $PX > /dev/null 2>&1
  sleep "$IDLE"
  callgrind_control -d $PX > /dev/null 2>&1
  sleep 1
  [ -n "${KEEP:-}" ] && cat "$out"/cg.$PX.* > "$KEEP"
  idle=$(cat "$out"/cg.$PX.* | awk '/^summary:/ { s += $2 } END { print s }')
  echo "$which: idle $((idle / IDLE)) instructions per second; of the requests' count, $((idle * took / 1000 / IDLE / ${N:-2000})) per request would be idle work"
fi
