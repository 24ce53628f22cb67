# Shared by tools/ensure_*.sh (sourced, not run): installing Debian packages
# when this shell may, so each script only says what it needs and what to do
# otherwise.

# True when apt-get may install here: running as root, and apt-get exists.
can_apt() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1
}

# apt_install WHY PKG...: install PKGs quietly, saying so (WHY may be empty).
# Call it outside a condition, so that `set -e` stops the script on a failure.
apt_install() {
    local why=$1
    shift
    echo "setup: installing $* with apt-get${why:+ ($why)}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# install_missing WHY PKG...: with no PKG nothing is missing: exit 0. As root
# with apt-get: install them and exit 0. Otherwise return, and the caller
# says how to install them.
install_missing() {
    local why=$1
    shift
    [ $# -eq 0 ] && exit 0
    can_apt || return 0
    apt_install "$why" "$@"
    exit 0
}
