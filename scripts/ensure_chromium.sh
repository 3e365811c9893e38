#!/usr/bin/env bash
# Make sure the browser tests have a browser: Debian's chromium and a CJK font (fonts-wqy-microhei),
# installed with apt-get when /usr/bin/chromium is missing and we are root. Never downloads a browser
# any other way (no `playwright install`). Without root or apt-get it only says what is missing:
# the browser tests then skip, or fail under KEFU_REQUIRE_SERVICES=1 (CI).
set -euo pipefail

CHROMIUM="${KEFU_CHROMIUM:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ] && fc-list 2>/dev/null | grep -qi -E "wqy|noto.*cjk|source han"; then
    exit 0
fi

if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: $CHROMIUM or a CJK font is missing; as root run:" >&2
    echo "  apt-get update && apt-get install -y chromium fonts-wqy-microhei" >&2
    exit 0
fi

echo "ensure_chromium: installing chromium and fonts-wqy-microhei with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei >/dev/null
"$CHROMIUM" --version
