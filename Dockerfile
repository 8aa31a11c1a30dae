# One image per service from a shared base: `docker build --target rest` or `--target grpc`.
# docker-compose.yml builds both. The headless OpenCV wheel: no GUI libraries needed.
FROM python:3.11-slim-bookworm AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY docker/constraints.txt ./docker/constraints.txt
COPY pyproject.toml README.md ./
COPY facewire ./facewire
COPY rest_service ./rest_service
COPY grpc_service ./grpc_service
COPY client ./client
RUN pip install --no-cache-dir --constraint docker/constraints.txt ".[headless]" \
    && useradd --system --uid 10001 --no-create-home facewire \
    && mkdir -p /data \
    && chown facewire /data

USER 10001
# Inside a container the services listen on every interface; outside, 127.0.0.1.
ENV FACEWIRE_HOST=0.0.0.0 \
    FACEWIRE_STORAGE_DIR=/data
VOLUME ["/data"]

FROM base AS rest
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "rest_service.healthcheck"]
CMD ["python", "-m", "rest_service"]

FROM base AS grpc
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "grpc_service.healthcheck", "127.0.0.1:50051"]
CMD ["python", "-m", "grpc_service"]
