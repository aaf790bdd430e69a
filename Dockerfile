# syntax=docker/dockerfile:1
#
# blobgate container image.
#
#   docker build -t blobgate:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp -p 5080:5080 -p 9102:9102 \
#     -v "$PWD/token.crt:/etc/blobgate/token.crt:ro" \
#     -e BLOBGATE_UPSTREAM_URL=http://registry:5000 \
#     -e BLOBGATE_STORAGE_S3_BUCKET=registry -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
#     blobgate:0.1.0
#
# The builder stage installs exactly the locked runtime set (requirements/runtime.txt, an
# export of uv.lock: every package pinned and hash-checked, wheels only) into a virtual
# environment at /opt/blobgate, then the project wheel without dependencies, built with
# the locked setuptools (requirements/build.txt). It writes the image's SBOM
# (CycloneDX JSON, by the locked cyclonedx-bom of requirements/sbom.txt, the same tool
# and command as ./dev sbom) to /opt/blobgate/sbom.cdx.json. The final stage copies only
# that environment: no compilers, no installer, no pip cache, no source tree. The image
# runs as a numeric non-root user and writes nothing outside /tmp, so it works with a
# read-only root filesystem.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements ./requirements
COPY src ./src

# /opt/build holds the build tools; /opt/blobgate gets nothing but the runtime set.
# pip compiles the installed modules to bytecode here, so nothing is written at run time.
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --only-binary :all: -r requirements/build.txt \
 && /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/blobgate \
 && /opt/build/bin/pip --python /opt/blobgate/bin/python install --require-hashes --only-binary :all: -r requirements/runtime.txt \
 && /opt/build/bin/pip --python /opt/blobgate/bin/python install --no-deps /wheels/blobgate-*.whl \
 && /opt/build/bin/pip install --require-hashes --only-binary :all: -r requirements/sbom.txt \
 && /opt/build/bin/cyclonedx-py environment --of JSON --output-file /opt/blobgate/sbom.cdx.json /opt/blobgate/bin/python


FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="blobgate" \
      org.opencontainers.image.description="Registry blob-offload gateway: authorized 307 redirects to presigned S3, Azure Blob and GCS URLs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"

# The installers are not needed at run time: blobgate lives in its own environment.
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel

COPY --from=builder /opt/blobgate /opt/blobgate
COPY config/blobgate.yaml /etc/blobgate/blobgate.yaml

ENV PATH=/opt/blobgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp

USER 10001:10001

# 5080: registry traffic; 9102: /metrics, /healthz and /readyz.
EXPOSE 5080 9102

HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9102/healthz', timeout=4)"]

ENTRYPOINT ["blobgate"]
CMD ["serve", "--config", "/etc/blobgate/blobgate.yaml"]
