#!/usr/bin/env bash
# Make sure Debian's Chromium and its WebDriver are present for the live-page
# browser test (host_tests/test_city_page.py). As root with apt-get it installs
# them; otherwise it says how to and the test skips, loudly, naming why.
set -eu
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need[*]} with apt-get (browser test of the live page)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    exit 0
fi
echo "setup: ${need[*]} missing and not root: the browser test will be skipped. Install with:" >&2
echo "    sudo apt-get install chromium chromium-driver" >&2
exit 0
