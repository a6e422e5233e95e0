#!/usr/bin/env bash
# make run-split: every component as its own process, with two replicas of the order service,
# the store service and the BFF, on one machine. Addresses follow the variables `make run` reads
# (PIZZA_HTTP_ADDR, PIZZA_OPS_ADDR, ORDER_ADDR, STORE_ADDR, DELIVERY_ADDR, CUSTOMERCENTER_ADDR,
# with the same defaults); a second replica listens on its first's port + 1000. Each process
# logs to its own file in PIZZA_LOG_DIR (default bin/run-split). Once every process is ready it
# prints one summary. Ctrl-C stops them all (gracefully).
set -euo pipefail
cd "$(dirname "$0")/.."

: "${PIZZA_HTTP_ADDR:=127.0.0.1:8080}" "${PIZZA_OPS_ADDR=127.0.0.1:9090}" # PIZZA_OPS_ADDR= serves no BFF metrics
: "${ORDER_ADDR:=127.0.0.1:8081}" "${STORE_ADDR:=127.0.0.1:8082}"
: "${DELIVERY_ADDR:=127.0.0.1:8083}" "${CUSTOMERCENTER_ADDR:=127.0.0.1:8084}"
logdir=${PIZZA_LOG_DIR:-bin/run-split}

# second ADDR: the address of a second replica, on the same host at port + 1000.
second() { echo "${1%:*}:$((${1##*:} + 1000))"; }
# caller ADDR: the URL a process on this machine calls ADDR at.
caller() {
  local host=${1%:*}
  case $host in "" | 0.0.0.0 | "[::]") host=127.0.0.1 ;; esac
  echo "http://$host:${1##*:}"
}
# browse ADDR: the URL a person on this machine opens for ADDR (as `pizza serve` prints it).
browse() {
  local host=${1%:*}
  case $host in "" | 0.0.0.0 | "[::]") host=localhost ;; esac
  echo "http://$host:${1##*:}/"
}

go build -o bin/pizza ./cmd/pizza
PIZZA_LOG_LEVEL=${PIZZA_LOG_LEVEL:-warn} bin/pizza migrate
mkdir -p "$logdir"

ORDER_ADDR2=$(second "$ORDER_ADDR") STORE_ADDR2=$(second "$STORE_ADDR")
HTTP_ADDR2=$(second "$PIZZA_HTTP_ADDR") OPS_ADDR2=""
[[ -z $PIZZA_OPS_ADDR ]] || OPS_ADDR2=$(second "$PIZZA_OPS_ADDR")
export ORDER_URL="$(caller "$ORDER_ADDR"),$(caller "$ORDER_ADDR2")"
export STORE_URL="$(caller "$STORE_ADDR"),$(caller "$STORE_ADDR2")"
export DELIVERY_URL=$(caller "$DELIVERY_ADDR") CUSTOMERCENTER_URL=$(caller "$CUSTOMERCENTER_ADDR")

names=() pids=() ready=()
start() { # name, the address whose /readyz says it is ready, component, then VAR=value ... for its environment
  local name=$1 addr=$2 component=$3
  shift 3
  env "$@" bin/pizza serve "$component" >"$logdir/$name.log" 2>&1 &
  names+=("$name") pids+=($!) ready+=("$(caller "$addr")/readyz")
}
stop() {
  trap - INT TERM EXIT
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait
  exit
}
trap stop INT TERM EXIT

start order-1 "$ORDER_ADDR" order
start order-2 "$ORDER_ADDR2" order ORDER_ADDR="$ORDER_ADDR2"
start store-1 "$STORE_ADDR" store
start store-2 "$STORE_ADDR2" store STORE_ADDR="$STORE_ADDR2"
start delivery "$DELIVERY_ADDR" delivery
start customercenter "$CUSTOMERCENTER_ADDR" customercenter
start bff-1 "$PIZZA_HTTP_ADDR" bff
start bff-2 "$HTTP_ADDR2" bff PIZZA_HTTP_ADDR="$HTTP_ADDR2" PIZZA_OPS_ADDR="$OPS_ADDR2"

echo "Starting ${#pids[@]} processes; logs in $logdir/ ..."
deadline=$((SECONDS + 60))
for i in "${!pids[@]}"; do
  until bin/pizza probe "${ready[$i]}" 2>/dev/null; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null || ((SECONDS > deadline)); then
      echo "${names[$i]} did not become ready ($logdir/${names[$i]}.log):" >&2
      tail -n 20 "$logdir/${names[$i]}.log" >&2
      exit 1
    fi
    sleep 0.2
  done
done

echo
echo "1588-pizza is ready (development), every component its own process; logs in $logdir/."
echo
printf '  %-15s %s  %s\n' GraphiQL "$(browse "$PIZZA_HTTP_ADDR")" "$(browse "$HTTP_ADDR2")"
if [[ -n $PIZZA_OPS_ADDR ]]; then
  printf '  %-15s %s  %s\n' Metrics "$(browse "$PIZZA_OPS_ADDR")metrics" "$(browse "$OPS_ADDR2")metrics"
fi
printf '  %-15s %s\n' order "${ORDER_URL/,/  }" store "${STORE_URL/,/  }" delivery "$DELIVERY_URL" customercenter "$CUSTOMERCENTER_URL"
# On a first run, the store replica that registered the development stores logs it before it is
# ready, and prints which they are just after.
for f in "$logdir"/store-*.log; do
  if grep -q "registered the development stores" "$f"; then
    for _ in {1..50}; do grep -q "^Stop with\|^Registered two stores" "$f" && break; sleep 0.1; done
    echo
    awk '/^Registered two stores/,/^$/' "$f" | sed '/^$/d'
  fi
done
echo
echo 'Tokens, valid 24h: paste one in GraphiQL'"'"'s Headers as {"Authorization": "Bearer <token>"}'
for r in "customer 1:--role customer --customer 1" "agent:--role agent" "master of store 1:--role master --store 1" "admin:--role admin"; do
  # shellcheck disable=SC2086 # the flags are meant to split
  printf '  %-18s %s\n' "${r%%:*}" "$(PIZZA_LOG_LEVEL=error bin/pizza token ${r#*:})"
done
echo
echo "Stop with Ctrl-C."
wait -n || true # Ctrl-C goes to the trap instead
echo "A process stopped; stopping the others. Its log is in $logdir/." >&2
