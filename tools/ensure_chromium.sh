#!/usr/bin/env bash
# Make sure Debian's Chromium and its WebDriver are present for the live-page
# browser test (host_tests/test_city_page.py). As root with apt-get it installs
# them; otherwise it says how to and the test skips, loudly, naming why.
set -eu
. "$(dirname "${BASH_SOURCE[0]}")/ensure_lib.sh"
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
install_missing "browser test of the live page" "${need[@]}"
echo "setup: ${need[*]} missing and not root: the browser test will be skipped. Install with:" >&2
echo "    sudo apt-get install chromium chromium-driver" >&2
exit 0
