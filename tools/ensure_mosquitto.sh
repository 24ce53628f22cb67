#!/usr/bin/env bash
# Make sure the Mosquitto broker (and openssl for test certificates) is present.
# As root with apt-get it installs them; otherwise it says how to.
set -eu
. "$(dirname "${BASH_SOURCE[0]}")/ensure_lib.sh"
need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
install_missing "" "${need[@]}"
echo "setup: missing ${need[*]}. Install it first, for example:" >&2
echo "    sudo apt-get install ${need[*]}" >&2
exit 1
