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
TEST_PACKAGES="postfix sasl2-bin m4 libwrap0 liblockfile1 libdb5.3 libldap-2.5-0 libnsl2 libsasl2-2 libssl3 mandoc man-db"

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
    # --no-upgrade: never upgrade libraries the machine already has.
    apt-get install -y -q --no-install-recommends --no-upgrade "${missing[@]}" >/dev/null
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
