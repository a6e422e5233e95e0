#!/usr/bin/env bash
# Counts PostgreSQL's system calls per order while `pizza bench` runs: the machine-independent
# measure BENCHMARKS.md calls round trips per order (one `sendto` per answered round trip).
#
#   scripts/roundtrips.sh BINARY RATE DURATION    e.g. scripts/roundtrips.sh bin/pizza 200 25s
#
# RATE 0 is the closed loop. It waits for the baseline phase to end, lets the system phase warm
# up for 8 s, then counts with `perf stat` for 10 s on the children of the PostgreSQL postmaster
# of $PGDATA (default Debian's /var/lib/postgresql/15/main) and divides by the phase's mean rate
# times 10 s. Only the backends that exist when the count starts are counted: the bench's pools
# are open by then. Needs perf with the syscalls tracepoints, and root. Prints one line; the
# bench's own output is kept in $OUT (default a temporary directory).
set -euo pipefail
bin=$1 rate=$2 dur=$3
PGDATA=${PGDATA:-/var/lib/postgresql/15/main}
OUT=${OUT:-$(mktemp -d)}
out=$OUT/bench-r$rate-$(date +%H%M%S)
"$bin" bench --duration "$dur" --rate "$rate" >"$out.txt" 2>"$out.err" &
bp=$!
trap 'kill $bp 2>/dev/null || true' EXIT
until grep -q '^baseline' "$out.txt" 2>/dev/null; do
  sleep 0.5
  kill -0 $bp 2>/dev/null || { cat "$out.err" >&2; exit 1; }
done
sleep 8
pm=$(head -1 "$PGDATA/postmaster.pid")
perf stat -x, -e syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_fdatasync \
  -p "$(pgrep -d, -P "$pm")" -- sleep 10 2>"$out.perf"
grep -q sys_enter_sendto "$out.perf" || { echo "roundtrips: perf counted nothing:" >&2; cat "$out.perf" >&2; exit 1; }
wait $bp
ops=$(grep -o 'ours (GraphQL placeOrder, whole system in one process): [0-9]*' "$out.txt" | grep -o '[0-9]*$')
ratio=$(grep -o 'ratio ours / baseline: [0-9.]*' "$out.txt" | grep -o '[0-9.]*$')
awk -F, -v ops="$ops" -v rate="$rate" -v ratio="$ratio" '
  {split($3, a, ":"); n[a[2]] = $1}
  END {o = ops * 10; printf "rate=%s orders/s=%s ratio=%s sendto/order=%.2f recvfrom/order=%.2f fdatasync/order=%.2f\n",
       rate, ops, ratio, n["sys_enter_sendto"]/o, n["sys_enter_recvfrom"]/o, n["sys_enter_fdatasync"]/o}' "$out.perf"
