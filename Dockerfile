# syntax=docker/dockerfile:1
# rightsizer operator image.
#   docker build -t ghcr.io/rightsizer/rightsizer:0.1.0 .
# The Deployment in deploy/operator.yaml runs it as `rightsizer operator --prometheus-url ...`.

# BASE_IMAGE: any image with Python 3.11, its venv module and useradd, for both stages.
# hack/images/operator.sh builds on a local Debian one where nothing can be pulled.
ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- builder
# Installs the package and its dependencies into a self-contained venv.
FROM ${BASE_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what the wheel needs (see .dockerignore): the metadata, then the source.
COPY pyproject.toml README.md ./
COPY operator/rightsizer ./operator/rightsizer
RUN pip install . \
    && python -m compileall -q /opt/venv

# ---------------------------------------------------------------- runtime
# Same base image as the builder, so the venv's python symlink resolves.
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="rightsizer" \
      org.opencontainers.image.description="Kubernetes right-sizing operator" \
      org.opencontainers.image.source="https://github.com/rightsizer/rightsizer" \
      org.opencontainers.image.licenses="Apache-2.0"

# An unprivileged user with a fixed numeric id (matches runAsUser in deploy/operator.yaml,
# so runAsNonRoot can verify it without a passwd lookup).
RUN groupadd --system --gid 65532 rightsizer \
    && useradd --system --uid 65532 --gid 65532 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin rightsizer

COPY --from=builder /opt/venv /opt/venv

# Bytecode was compiled in the builder; the root filesystem is read-only at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 65532:65532
WORKDIR /tmp
EXPOSE 8080

# Exec form: `rightsizer` is PID 1 and receives SIGTERM itself (Kopf handles it),
# no shell in between. The Deployment's args replace CMD.
ENTRYPOINT ["rightsizer"]
CMD ["operator", "--help"]
