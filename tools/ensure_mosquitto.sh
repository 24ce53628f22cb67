#!/usr/bin/env bash
# Make sure the Mosquitto broker (and openssl for test certificates) is present.
# As root with apt-get it installs them; otherwise it says how to.
set -eu
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${need[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    exit 0
fi
echo "setup: missing ${need[*]}. Install it first, for example:" >&2
echo "    sudo apt-get install ${need[*]}" >&2
exit 1
