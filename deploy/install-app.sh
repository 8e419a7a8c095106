#!/bin/sh
# The one list of steps that turns this repository into an installed bridge.
#
# The Dockerfile runs it in its builder stage, and tests/deploy/test_wheel_start.py runs the same
# three steps into a fresh virtual environment and then starts `bridge serve` from it: no Docker
# engine runs on the development or CI machines, so that test is how CI proves the image's install
# and start steps.
#
#   install-app.sh wheel SRC DIST    build the project's wheel from SRC into DIST, with the build
#                                    backend pinned by hash (deploy/requirements/build.lock)
#   install-app.sh deps VENV LOCK    create VENV (without pip) and install LOCK into it, every file
#                                    checked against its hash
#   install-app.sh app VENV DIST     install the wheel in DIST into VENV without dependencies, then
#                                    check that the lock satisfies everything the wheel requires
#
# PYTHON names the interpreter that creates the environments (default: python3). Nothing is compiled:
# --only-binary=:all: refuses source distributions, so no compiler is needed anywhere. Whether pip
# keeps a cache is the caller's choice (the Dockerfile sets PIP_NO_CACHE_DIR).
set -eu

PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)

usage() {
    echo "usage: $0 wheel SRC DIST | deps VENV LOCK | app VENV DIST" >&2
    exit 2
}

# pip of $PYTHON, installing into the environment whose interpreter is $1 (pip >= 22.3).
pip_into() {
    target=$1
    shift
    "$PYTHON" -m pip --python "$target" "$@"
}

[ $# -eq 3 ] || usage
step=$1

case $step in
    wheel)
        src=$2
        dist=$3
        build_env=$(mktemp -d)
        "$PYTHON" -m venv --without-pip "$build_env"
        pip_into "$build_env/bin/python" install --quiet --require-hashes --only-binary=:all: \
            -r "$here/requirements/build.lock"
        mkdir -p "$dist"
        pip_into "$build_env/bin/python" wheel --quiet --no-deps --no-build-isolation \
            --wheel-dir "$dist" "$src"
        rm -rf "$build_env"
        ;;
    deps)
        venv=$2
        lock=$3
        "$PYTHON" -m venv --without-pip "$venv"
        pip_into "$venv/bin/python" install --quiet --require-hashes --only-binary=:all: -r "$lock"
        ;;
    app)
        venv=$2
        dist=$3
        set -- "$dist"/*.whl
        if [ $# -ne 1 ] || [ ! -f "$1" ]; then
            echo "$0: expected exactly one wheel in $dist" >&2
            exit 1
        fi
        pip_into "$venv/bin/python" install --quiet --no-deps --no-index "$1"
        # --no-deps trusts the lock: prove it covers every requirement of the wheel.
        pip_into "$venv/bin/python" check
        ;;
    *)
        usage
        ;;
esac
