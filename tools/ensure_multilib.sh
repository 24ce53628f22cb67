#!/usr/bin/env bash
# Make sure gcc can build 32-bit programs (the memory tests' 32-bit MicroPython,
# tools/mp32.py). As root with apt-get it installs gcc-multilib; otherwise it says how to.
set -eu
if echo 'int main(void){return 0;}' | gcc -m32 -x c - -o /dev/null >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing gcc-multilib with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends gcc-multilib >/dev/null
    exit 0
fi
echo "setup: gcc cannot build 32-bit programs. Install the 32-bit C library first, for example:" >&2
echo "    sudo apt-get install gcc-multilib" >&2
exit 1
