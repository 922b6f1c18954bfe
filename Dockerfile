# Victor Functions: one image for every function. Each Knative Service / compose service
# picks its function with the command, e.g. `victor serve chat`.
#
#   docker build --build-arg VERSION=0.1.0 --build-arg VCS_REF="$(git rev-parse HEAD)" \
#     --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" -t victor-functions .
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# The lock pins the CPU-only torch wheel (torch==2.13.0+cpu), published on PyTorch's CPU index.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL} \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
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
COPY --from=build /opt/venv /opt/venv
# The root filesystem is read-only on Knative: nothing writes bytecode, caches go to /tmp.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    HF_HOME=/tmp/huggingface \
    PORT=8080
WORKDIR /tmp
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd (uid 1000 = victor).
USER 1000:1000
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/health/live', timeout=2)"]
ENTRYPOINT ["victor"]
CMD ["serve", "health"]
