#!/usr/bin/env bash
# Debian's chromium for the console's browser tests (tests/console, Playwright drives
# /usr/bin/chromium; Playwright's own browser download is never used). Does nothing when it is
# already installed; needs root or sudo for apt-get otherwise.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
