# One image per service: `docker build --target rest` or `--target grpc`; compose builds both.
# The base is any Debian bookworm with python3-venv: the official python image (the
# default) or the one `make docker-base` builds where no registry can be reached.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# A virtual environment of exactly docker/constraints.txt, then facewire itself. Its own
# venv and `python -m pip`, so Debian's python (PEP 668) and the official one both work.
FROM ${BASE_IMAGE} AS venv
LABEL org.facewire.stage=venv
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
COPY docker/constraints.txt /tmp/constraints.txt
# The dependencies only: this layer is rebuilt when the pins change, not the code.
RUN /opt/venv/bin/python -m pip install --no-deps --requirement /tmp/constraints.txt \
    && /opt/venv/bin/python -m pip check
COPY pyproject.toml README.md /src/
COPY facewire /src/facewire
COPY rest_service /src/rest_service
COPY grpc_service /src/grpc_service
# setuptools from the pins builds facewire (no isolated build: nothing unpinned enters);
# then the installers leave: the services never run them (22 MB).
RUN /opt/venv/bin/python -m pip install --no-deps --no-build-isolation /src \
    && /opt/venv/bin/python -m pip check \
    && /opt/venv/bin/python -m pip uninstall --yes --quiet setuptools pip

FROM ${BASE_IMAGE} AS base
LABEL org.opencontainers.image.title=facewire \
      org.opencontainers.image.description="facewire's REST or gRPC face-detection service"
# The user and group compose runs as by default (FACEWIRE_UID, FACEWIRE_GID: 10001).
RUN groupadd --system --gid 10001 facewire \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin facewire \
    && mkdir /data \
    && chown 10001:10001 /data
COPY --from=venv /opt/venv /opt/venv
# Inside a container the services listen on every interface; outside, 127.0.0.1.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FACEWIRE_HOST=0.0.0.0 \
    FACEWIRE_STORAGE_DIR=/data
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]

# The health checks read the same FACEWIRE_* settings as the services (port, TLS).
FROM base AS rest
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "rest_service.healthcheck"]
CMD ["python", "-m", "rest_service"]

FROM base AS grpc
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "grpc_service.healthcheck"]
CMD ["python", "-m", "grpc_service"]
