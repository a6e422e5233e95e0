#!/usr/bin/env bash
# make run-split: every component as its own process, with two replicas of the order service,
# the store service and the BFF, on one machine. Ctrl-C stops them all (gracefully).
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/pizza ./cmd/pizza
PIZZA_LOG_LEVEL=${PIZZA_LOG_LEVEL:-warn} bin/pizza migrate

export ORDER_URL=http://127.0.0.1:8081,http://127.0.0.1:9081
export STORE_URL=http://127.0.0.1:8082,http://127.0.0.1:9082
export DELIVERY_URL=http://127.0.0.1:8083 CUSTOMERCENTER_URL=http://127.0.0.1:8084

pids=()
start() { # name, then VAR=value ... for its environment
  local name=$1; shift
  env "$@" bin/pizza serve "$name" > >(sed -u "s/^/[$name $*] /") 2>&1 &
  pids+=($!) # the pizza process itself, so that stop reaches it
}
stop() { kill -TERM "${pids[@]}" 2>/dev/null; wait; }
trap stop INT TERM EXIT

start order ORDER_ADDR=127.0.0.1:8081
start order ORDER_ADDR=127.0.0.1:9081
start store STORE_ADDR=127.0.0.1:8082
start store STORE_ADDR=127.0.0.1:9082
start delivery DELIVERY_ADDR=127.0.0.1:8083
start customercenter CUSTOMERCENTER_ADDR=127.0.0.1:8084
start bff PIZZA_HTTP_ADDR=:8080
start bff PIZZA_HTTP_ADDR=:8090

echo "GraphQL playgrounds: http://localhost:8080/ and http://localhost:8090/ (two BFF replicas)"
for r in "customer --customer 1" "agent" "master --store 1" "admin"; do
  printf '  %-8s %s\n' "${r%% *}" "$(bin/pizza token --role $r 2>/dev/null)"
done
wait
