# Shared by scripts/run and scripts/test: install what the project needs on
# Debian 12 (as root), into the system (apt) and a virtualenv (.venv).
# Sourced, not run.

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$TOP/.venv}
PYTHON=${PYTHON:-python3}

# Packages needed to build and run the milter: pymilter compiles against libmilter.
RUN_PACKAGES="libmilter-dev gcc python3-dev python3-venv"
# Packages the test suite drives: a private Postfix (never configured as the
# system MTA, see apt_install), Cyrus SASL tools for SMTP AUTH tests, and m4
# and the libraries of Sendmail, which the tests download and unpack (never
# install: it would conflict with postfix).
# SpamAssassin and OpenDMARC read our header fields as real downstream
# filters; mandoc lints the man pages, man-db finds them after an install.
TEST_PACKAGES="postfix sasl2-bin m4 libwrap0 liblockfile1 libdb5.3 libldap-2.5-0 libnsl2 libsasl2-2 libssl3 spamassassin opendmarc mandoc man-db"

say() { printf '==> %s\n' "$*" >&2; }

apt_install() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' \
            || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        say "missing Debian packages: ${missing[*]} (run as root to install them)"
        return 1
    fi
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix must not become the system MTA: with "No configuration" it writes
    # no main.cf and starts nothing; tests run their own private instance.
    echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
    apt-get update -q >/dev/null
    # No package may start a service (opendmarc ships one): policy-rc.d's
    # exit 101 forbids every start during this install.
    local guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        guard=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$guard" && chmod 755 "$guard"
    fi
    # --no-upgrade: never upgrade libraries the machine already has.
    local status=0
    apt-get install -y -q --no-install-recommends --no-upgrade "${missing[@]}" >/dev/null \
        || status=$?
    [ -z "$guard" ] || rm -f "$guard"
    # Nor start one at the next boot: the tests run their own OpenDMARC, and
    # SpamAssassin's daily rule update would fetch rules from the network.
    disable_units_of "${missing[@]}"
    return "$status"
}

# Disable the units that the test packages enable, for those just installed.
disable_units_of() {
    local package unit
    for package in "$@"; do
        case $package in
            opendmarc) unit=opendmarc.service ;;
            spamassassin) unit=spamassassin-maintenance.timer ;;
            *) continue ;;
        esac
        systemctl disable --quiet "$unit" >/dev/null 2>&1 || true  # works offline too
    done
}

venv_install() {
    local extras=$1
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating the virtualenv $VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    say "installing spf-milter${extras:+[$extras]} into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$TOP${extras:+[$extras]}"
}
