#!/usr/bin/env bash
# Makes sure the console's browser tests have a Chromium: Debian's `chromium` package (and a font
# with Hangul, fonts-nanum), which `make test` installs (as root, with apt-get) when missing, as
# infra-up.sh does for PostgreSQL. No
# test tool downloads a browser of its own. PIZZA_CHROMIUM names another binary to use instead.
# Prints the binary's path.
set -euo pipefail

log()  { printf 'browser: %s\n' "$*" >&2; }
fail() { printf 'browser: %s\n' "$*" >&2; exit 1; }

# Korean text (the console's default language) needs a font with Hangul, or chromium draws boxes.
korean_font() { command -v fc-list >/dev/null && fc-list :lang=ko family | grep -q .; }
if ! korean_font && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  log "installing Debian's fonts-nanum so the console's Korean text renders"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-nanum >/dev/null
fi

if [[ -n ${PIZZA_CHROMIUM:-} ]]; then
  [[ -x $PIZZA_CHROMIUM ]] || fail "PIZZA_CHROMIUM=$PIZZA_CHROMIUM is not an executable file."
  echo "$PIZZA_CHROMIUM"
  exit 0
fi
for b in chromium chromium-browser; do
  if command -v "$b" >/dev/null; then command -v "$b"; exit 0; fi
done
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  log "installing Debian's chromium for the console's browser tests (this takes a minute)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  command -v chromium
  exit 0
fi
fail "no chromium on PATH, and installing it needs root with apt-get: install your distribution's chromium, or set PIZZA_CHROMIUM to a Chromium or Chrome binary."
