#!/usr/bin/env bash
# Install everything the tests need and run them, on a fresh Debian/Ubuntu machine or again
# on a set-up one:
#   1. Debian packages Qt and OpenGL need under a virtual display (apt-get, only if missing;
#      sudo only when not root),
#   2. a virtual environment in .venv with the project and its [test] extra (editable),
#   3. pytest under xvfb-run. Extra arguments go to pytest: bash tools/test.sh -m "not slow"
# Environment: PYTHON (default python3, must be >= 3.10), VENV (default .venv).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

say() { printf '\n== %s\n' "$*"; }

# --- 1. system packages --------------------------------------------------------------------
APT_PACKAGES=(
    xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libdbus-1-3 libxcb-icccm4
    libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0
    libxcb-xfixes0 libxcb-shape0 libxcb-cursor0
    # Qt's xcb platform plugin also links these; most images have them, minimal ones do not
    libglib2.0-0 libfontconfig1
)
# `python3 -m venv` on Debian's own Python needs python3-venv (ensurepip).
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    APT_PACKAGES+=(python3-venv)
fi

if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        [ "$status" = "install ok installed" ] || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        say "Installing system packages: ${missing[*]}"
        SUDO=()
        if [ "$(id -u)" -ne 0 ]; then
            command -v sudo >/dev/null 2>&1 || {
                echo "tools/test.sh: need root or sudo to apt-get install ${missing[*]}" >&2
                exit 1
            }
            SUDO=(sudo)
        fi
        export DEBIAN_FRONTEND=noninteractive
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
else
    echo "tools/test.sh: not a Debian-like system; install the equivalents of" \
        "${APT_PACKAGES[*]} yourself." >&2
fi
command -v xvfb-run >/dev/null 2>&1 || { echo "tools/test.sh: xvfb-run not found" >&2; exit 1; }

# --- 2. virtual environment ----------------------------------------------------------------
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
    echo "tools/test.sh: $PYTHON is $("$PYTHON" --version 2>&1); napari-niche needs >= 3.10" >&2
    exit 1
}
if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
then
    say "Creating $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv --clear "$VENV"
fi
say "Installing napari-niche[test] into $VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[test]"

# --- 3. tests ------------------------------------------------------------------------------
say "Running the tests under a virtual display"
exec xvfb-run -a -s "-screen 0 1920x1080x24" "$VENV/bin/python" -m pytest "$@"
