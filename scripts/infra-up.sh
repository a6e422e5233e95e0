#!/usr/bin/env bash
# Brings up PostgreSQL and RabbitMQ for `make run` and `make test`, then waits until both answer.
#
# For each one that is not running (nothing answers at its configured address), in order:
#   1. start the machine's own installation (Debian's postgresql / rabbitmq-server);
#   2. else, where a Docker engine answers, `docker compose up -d` its service from compose.yaml;
#   3. else, as root with apt-get, install Debian's package and start it (PostgreSQL is set to
#      trust local TCP connections, so the default DATABASE_URL works).
# One that is running but does not serve us (PostgreSQL full with "too many clients", starting up,
# or refusing our role; RabbitMQ booting) is never started again: it is reported and waited for.
# Idempotent: when both already answer it does nothing. Fails with one sentence when it cannot,
# saying whether the server is not running or is running and refusing, and why.
set -euo pipefail

DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}
WAIT_SECONDS=${INFRA_WAIT_SECONDS:-90}
cd "$(dirname "$0")/.."

# host and port of a URL like scheme://user:pass@host:port/path
url_host() { local h=${1#*://}; h=${h#*@}; h=${h%%/*}; h=${h%%\?*}; echo "${h%:*}"; }
url_port() { local h=${1#*://}; h=${h#*@}; h=${h%%/*}; h=${h%%\?*}; [[ $h == *:* ]] && echo "${h##*:}" || echo "$2"; }

PG_HOST=$(url_host "$DATABASE_URL"); PG_PORT=$(url_port "$DATABASE_URL" 5432)
MQ_HOST=$(url_host "$AMQP_URL");     MQ_PORT=$(url_port "$AMQP_URL" 5672)

log()  { printf 'infra: %s\n' "$*" >&2; }
fail() { printf 'infra: %s\n' "$*" >&2; exit 1; }

is_local() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 || $1 == "[::1]" ]]; }

# PostgreSQL answers when a real query succeeds (pg_isready when psql is missing). The client's
# complaint, if any, is kept in PG_ERR for pg_state and the final message.
PG_ERR=
pg_ok() {
  if command -v psql >/dev/null; then
    PG_ERR=$(timeout 5 psql "$DATABASE_URL" -XAtqc 'select 1' 2>&1 >/dev/null) && return 0
    PG_ERR=${PG_ERR:-no reply within 5s}
    return 1
  elif command -v pg_isready >/dev/null; then
    timeout 5 pg_isready -q -h "$PG_HOST" -p "$PG_PORT"
  else
    timeout 2 bash -c "exec 3<>/dev/tcp/$PG_HOST/$PG_PORT" 2>/dev/null
  fi
}

# pg_state tells a stopped PostgreSQL from a running one that refuses us, when pg_ok fails:
#   down     nothing answers at the address: it may be started;
#   running  a server answers but does not serve our query: it is full ("sorry, too many clients
#            already"), starting up or shutting down, or it refuses our role, password or
#            database. Starting another server would be wrong, so it is waited for and reported.
# pg_isready says it (0 accepting, 1 rejecting, 2 no response: a full server counts as
# accepting, since it answered); without it, a FATAL from the server in psql's error says it.
pg_state() {
  if command -v pg_isready >/dev/null; then
    local rc=0
    timeout 5 pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || rc=$?
    case $rc in 0 | 1) echo running ;; *) echo down ;; esac
  elif [[ $PG_ERR == *FATAL:* ]]; then
    echo running
  else
    echo down # without psql, pg_ok only fails on a closed port
  fi
}

# pg_why is psql's complaint on one line, without its "psql: error: connection to ... failed:" preamble.
pg_why() {
  local e=${PG_ERR//$'\n'/ }
  e=${e#*failed: }
  e=${e#FATAL:  }
  echo "${e:-it does not answer}"
}

# RabbitMQ answers when it replies to the AMQP 0-9-1 protocol header with a method frame
# (an open port alone is not enough while the node boots).
mq_ok() {
  timeout 5 bash -c "
    exec 3<>/dev/tcp/$MQ_HOST/$MQ_PORT || exit 1
    printf 'AMQP\x00\x00\x09\x01' >&3
    [[ \$(head -c 1 <&3 | od -An -tx1 | tr -d ' ') == 01 ]]
  " 2>/dev/null
}

# A RabbitMQ whose port is open but that does not reply to the header yet is booting (or
# overloaded): running, not to be started again.
mq_state() {
  if timeout 2 bash -c "exec 3<>/dev/tcp/$MQ_HOST/$MQ_PORT" 2>/dev/null; then echo running; else echo down; fi
}
mq_why() { echo "its port is open but it does not reply to AMQP"; }

docker_ok() { command -v docker >/dev/null && timeout 5 docker info >/dev/null 2>&1; }
can_install() { [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; }

start_pg_local() {
  local v
  v=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
  [[ -n $v ]] || return 1
  log "starting the local PostgreSQL $v"
  pg_ctlcluster --skip-systemctl-redirect "$v" main start 2>/dev/null || pg_ctlcluster "$v" main start || true
}

install_pg() {
  log "installing Debian's postgresql (this takes a minute)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  local v hba
  v=$(ls /etc/postgresql | sort -V | tail -1)
  hba=/etc/postgresql/$v/main/pg_hba.conf
  # A development server on loopback: trust local TCP so the password-less default URL works.
  if ! grep -q '^# 1588-pizza' "$hba"; then
    sed -i '1i # 1588-pizza: trust loopback TCP for the development DATABASE_URL\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  start_pg_local
}

start_mq_local() {
  command -v rabbitmq-server >/dev/null || return 1
  log "starting the local RabbitMQ"
  rabbitmq-server -detached >/dev/null 2>&1 || true
}

install_mq() {
  log "installing Debian's rabbitmq-server (this takes a minute)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  start_mq_local
}

bring_up() { # name ok-fn state-fn why-fn local-fn compose-service install-fn host port
  local name=$1 ok=$2 state=$3 why=$4 local_start=$5 svc=$6 install=$7 host=$8 port=$9
  $ok && return 0
  if [[ $($state) == running ]]; then
    log "$name at $host:$port is running but does not serve us yet ($($why)); not starting another, waiting for it"
    return 0
  fi
  log "$name at $host:$port is not running"
  is_local "$host" || fail "$name at $host does not answer and is not on this machine, so it cannot be started here; check its URL."
  if $local_start; then return 0; fi
  if docker_ok; then
    log "starting $name with docker compose"
    docker compose up -d --wait "$svc" >/dev/null 2>&1 || docker compose up -d "$svc" >/dev/null
    return 0
  fi
  if can_install; then $install; return 0; fi
  fail "$name is not reachable at $host, not installed, no Docker engine answers, and installing it needs root with apt-get."
}

bring_up PostgreSQL pg_ok pg_state pg_why start_pg_local postgres install_pg "$PG_HOST" "$PG_PORT"
bring_up RabbitMQ mq_ok mq_state mq_why start_mq_local rabbitmq install_mq "$MQ_HOST" "$MQ_PORT"

deadline=$((SECONDS + WAIT_SECONDS))
until pg_ok; do
  if ((SECONDS >= deadline)); then
    [[ $(pg_state) == running ]] &&
      fail "PostgreSQL at $PG_HOST:$PG_PORT is running but did not serve a query within ${WAIT_SECONDS}s: $(pg_why)."
    fail "PostgreSQL at $PG_HOST:$PG_PORT is not running: it did not answer within ${WAIT_SECONDS}s; see its log (/var/log/postgresql)."
  fi
  sleep 0.5
done
until mq_ok; do
  ((SECONDS < deadline)) || fail "RabbitMQ at $MQ_HOST:$MQ_PORT did not answer within ${WAIT_SECONDS}s; see its log (/var/log/rabbitmq)."
  sleep 0.5
done
log "PostgreSQL and RabbitMQ are up"
