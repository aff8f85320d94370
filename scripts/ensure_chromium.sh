#!/usr/bin/env bash
# Make Debian's Chromium available for the browser tests (tests/serving/test_review_browser.py drives it
# with Playwright at /usr/bin/chromium; Playwright's own browser download is not reachable from CI).
# Installs the `chromium` package with apt-get (as root) when /usr/bin/chromium is absent. Messages go
# to stderr; exits non-zero when it cannot provide the browser.
set -euo pipefail

log() { echo "ensure_chromium: $*" >&2; }

if [[ -x /usr/bin/chromium ]]; then
    log "found $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
    log "/usr/bin/chromium is absent and we are not root: cannot install it (apt-get install -y chromium)"
    exit 1
fi
log "installing chromium (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq chromium >&2
log "installed $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
