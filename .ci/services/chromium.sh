#!/usr/bin/env bash
# Headless Chromium and ChromeDriver for the dashboard's browser tests
# (crates/omniq-cli/tests/browser.rs). Idempotent: installs Debian's `chromium` and
# `chromium-driver` only when either binary is missing.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ci: chromium: apt-get not found; install chromium and chromedriver by hand" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" != "0" ]; then
  sudo="sudo"
fi
echo "ci: installing chromium and chromium-driver"
export DEBIAN_FRONTEND=noninteractive
for attempt in 1 2 3; do
  if $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium chromium-driver; then
    break
  fi
  if [ "$attempt" = 3 ]; then
    echo "ci: chromium: apt-get install failed" >&2
    exit 1
  fi
  sleep $((attempt * 5))
done
chromium --version
chromedriver --version
