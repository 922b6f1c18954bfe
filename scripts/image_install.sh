#!/bin/sh
# Installs Victor's runtime into a fresh virtualenv. The Dockerfile's build stage runs
# this script, and tests/contract/test_dockerfile.py runs the very same script into a
# clean directory, so the test exercises exactly the image's install steps.
#
# Usage: sh scripts/image_install.sh VENV_DIR [SOURCE_DIR]
# Runtime dependencies only (no dev extras), every version pinned by requirements.lock.
# The lock pins torch==2.13.0+cpu: a real build finds it through
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu (a Dockerfile build arg).
set -eu
VENV="$1"
SRC="${2:-.}"
PYTHON="${PYTHON:-python3}"

"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check --no-compile \
    --prefer-binary --constraint "$SRC/requirements.lock" "$SRC"
# Not needed at run time: C/C++ headers, torch's compiled C++ test binaries, and pip.
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -rf "$SITE/torch/include" "$SITE/torch/test" "$SITE/pyarrow/include"
"$VENV/bin/python" -m pip uninstall --quiet --yes pip
# Compile once at build time: the container's root filesystem is read-only, and
# unchecked-hash .pyc files stay valid whatever timestamps the image layers carry.
# torch ships one Python 3.12-only test helper, which 3.11 cannot compile.
"$VENV/bin/python" -m compileall -q -j 0 -x 'py312_intrinsics\.py$' \
    --invalidation-mode unchecked-hash "$VENV/lib"
