# Victor Functions: two images from one Dockerfile.
#
#   core (the default target): chat, tools, health and the broker; no torch, no LanceDB; git for
#     the git tools. Each Knative Service / compose service picks its function with the command.
#   embeddings: the core plus onnxruntime, tokenizers and LanceDB, serving the embedding model
#     exported to ONNX at build time (/opt/model); no torch at run time, the hub off.
#     Only the export-model stage installs torch (CPU) and sentence-transformers, to export it.
#
#   docker build --target core -t victor-functions .
#   docker build --target embeddings --build-arg EMBEDDING_MODEL=BAAI/bge-small-en-v1.5 \
#     -t victor-functions-embeddings .
# Add --build-arg VERSION=... VCS_REF="$(git rev-parse HEAD)" BUILD_DATE=... for the labels.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build-core
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY scripts/image_install.sh scripts/image_install.sh
# Dependencies first, from the lock alone: this layer is rebuilt only when the lock changes.
COPY requirements.lock pyproject.toml README.md ./
RUN sh scripts/image_install.sh dependencies /opt/venv /src
COPY common common
COPY eventing eventing
COPY functions functions
RUN sh scripts/image_install.sh application /opt/venv /src

# The core's venv without pip, which has no job in a running container.
FROM build-core AS core-venv
RUN sh scripts/image_install.sh finish /opt/venv /src

FROM build-core AS build-embeddings
# The embeddings runtime: the core plus the embeddings extra (onnxruntime, tokenizers, LanceDB).
RUN sh scripts/image_install.sh dependencies /opt/venv /src embeddings \
    && sh scripts/image_install.sh finish /opt/venv /src

FROM build-core AS export-model
# torch lives only in this stage's own venv: it exports the model, and nothing of it is copied on.
# The lock pins torch==2.13.0; PyTorch's CPU index serves its CPU-only build (2.13.0+cpu),
# which pip prefers to PyPI's CUDA build of the same release: the index chooses, not a label.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
# Downloaded once, here; the image never reaches a model hub.
ARG EMBEDDING_MODEL=BAAI/bge-small-en-v1.5
ENV PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
RUN sh scripts/image_install.sh exporter /opt/export /src \
    && sh scripts/image_install.sh model /opt/export "${EMBEDDING_MODEL}" /opt/model

FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
ARG BUILD_DATE=unknown
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="victor-functions" \
      org.opencontainers.image.description="Victor AI coding-assistant backend as Knative functions" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 1000 victor \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin victor
# The root filesystem is read-only on Knative: nothing writes bytecode, caches go to /tmp.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HOME=/tmp/huggingface \
    PORT=8080
WORKDIR /tmp
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/health/live', timeout=2)"]
ENTRYPOINT ["victor"]

FROM runtime AS embeddings
COPY --from=build-embeddings /opt/venv /opt/venv
COPY --from=export-model /opt/model /opt/model
ENV VICTOR_EMBEDDING_MODEL=/opt/model \
    VICTOR_EMBEDDING_BACKEND=onnx \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd (uid 1000 = victor).
USER 1000:1000
CMD ["serve", "embeddings"]

FROM runtime AS core
# git for the git tools (run hardened, see functions/tools/toolset/git.py). Debian's security
# updates replace the version, so it is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*
COPY --from=core-venv /opt/venv /opt/venv
USER 1000:1000
CMD ["serve", "health"]
