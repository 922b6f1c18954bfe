#!/bin/sh
# Installs Victor's runtime into a virtualenv, in the steps the Dockerfile's build stages run
# as layers, so that a code change does not reinstall the dependencies:
#
#   sh scripts/image_install.sh dependencies VENV SRC [EXTRA]   # SRC holds requirements.lock,
#                                      # pyproject.toml and README.md (and, later, the packages)
#   sh scripts/image_install.sh application VENV SRC            # SRC now holds the packages too
#   sh scripts/image_install.sh exporter VENV SRC               # a throwaway venv that can export
#   sh scripts/image_install.sh model VENV MODEL DEST           # the embedding model, exported to
#                                      # ONNX with the exporter venv
#   sh scripts/image_install.sh finish VENV SRC                 # pip removed
#
# build-core runs dependencies and application (the core: no torch, no LanceDB);
# build-embeddings adds `dependencies ... embeddings` and `finish` (no torch); export-model runs
# `exporter` (the embeddings and torch extras in a venv of its own) and `model`, whose output alone
# the image keeps.
# tests/contract/test_dockerfile.py replays the same Dockerfile steps, running this very
# script into a clean directory, so the test exercises exactly the images' install.
# Runtime dependencies only (no dev extras), every version pinned by requirements.lock.
# The lock pins torch==2.13.0; a real build takes its CPU-only build (2.13.0+cpu) from
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu (a build arg of build-embeddings).
set -eu
STEP="$1"
VENV="$2"
SRC="$3"
PYTHON="${PYTHON:-python3}"
PIP_OPTIONS="--quiet --no-cache-dir --disable-pip-version-check --no-compile"

compile() {
    # Compiled at build time: the container's root filesystem is read-only, and
    # unchecked-hash .pyc files stay valid whatever timestamps the image layers carry.
    # torch ships one Python 3.12-only test helper, which 3.11 cannot compile.
    "$VENV/bin/python" -m compileall -q -j 0 -x 'py312_intrinsics\.py$' \
        --invalidation-mode unchecked-hash "$@"
}

case "$STEP" in
dependencies)
    EXTRA="${4:-}"
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    # With no packages in SRC yet this installs only the pinned dependencies (and an
    # empty victor-functions distribution that the application step replaces).
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install $PIP_OPTIONS --prefer-binary --constraint "$SRC/requirements.lock" \
        "$SRC${EXTRA:+[$EXTRA]}"
    SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    # Not needed at run time: C/C++ headers and torch's compiled C++ test binaries.
    rm -rf "$SITE/torch/include" "$SITE/torch/test" "$SITE/pyarrow/include"
    compile "$SITE"
    ;;
application)
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install $PIP_OPTIONS --no-deps --force-reinstall "$SRC"
    SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    compile "$SITE/common" "$SITE/eventing" "$SITE/functions"
    ;;
exporter)
    # Victor with the embeddings and torch extras, for `model` only: nothing of it reaches an image,
    # so nothing is compiled or trimmed.
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    # shellcheck disable=SC2086
    "$VENV/bin/pip" install $PIP_OPTIONS --prefer-binary --constraint "$SRC/requirements.lock" \
        "$SRC[embeddings,torch]"
    ;;
finish)
    # pip has no job in the running container.
    "$VENV/bin/python" -m pip uninstall --quiet --yes pip
    ;;
model)
    # The model (a hub name, or a directory) exported to ONNX where the embeddings image reads it,
    # without the torch weights the image cannot use.
    VICTOR_EMBEDDING_MODEL="$3" "$VENV/bin/victor" embeddings export "$4" --onnx-only
    ;;
*)
    echo "usage: sh scripts/image_install.sh dependencies|application|exporter|finish VENV SRC [EXTRA] | model VENV MODEL DEST" >&2
    exit 2
    ;;
esac
