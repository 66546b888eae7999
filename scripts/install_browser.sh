#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (Playwright's own browser download does not work
# offline). Idempotent: does nothing when /usr/bin/chromium already exists.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "install_browser: /usr/bin/chromium already present ($(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    SUDO="sudo"
fi

echo "install_browser: running '${SUDO:+$SUDO }apt-get update'"
$SUDO apt-get update -q
echo "install_browser: running '${SUDO:+$SUDO }apt-get install -y chromium'"
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium
echo "install_browser: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
