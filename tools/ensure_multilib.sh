#!/usr/bin/env bash
# Make sure gcc can build 32-bit programs (the memory tests' 32-bit MicroPython,
# tools/mp32.py). As root with apt-get it installs gcc-multilib; otherwise it says how to.
set -eu
. "$(dirname "${BASH_SOURCE[0]}")/ensure_lib.sh"
if echo 'int main(void){return 0;}' | gcc -m32 -x c - -o /dev/null >/dev/null 2>&1; then
    exit 0
fi
install_missing "" gcc-multilib
echo "setup: gcc cannot build 32-bit programs. Install the 32-bit C library first, for example:" >&2
echo "    sudo apt-get install gcc-multilib" >&2
exit 1
