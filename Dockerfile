# The grading service's image (issue 20): the `serve` extra only (no torch), the bundled model, a
# non-root user, a health check on /readyz. Build from the checkout:
#
#   docker build -t refurbgrade:latest .
#
# and run it alone (SQLite and blobs in the volume) or with docker-compose.yml (PostgreSQL, MinIO, two
# replicas behind nginx). Settings are REFURBGRADE_* environment variables: docs/operations.md.
# scripts/check_image_entrypoint.sh runs this image's CMD and HEALTHCHECK on a fresh virtualenv with
# only the serve extra, without Docker.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/refurbgrade
# Dependencies first (a layer that changes only with them), then the package itself, not editable.
COPY pyproject.toml constraints.txt README.md ./
COPY model ./model
COPY serving ./serving
COPY refurbgrade ./refurbgrade
COPY training ./training
RUN /opt/refurbgrade/bin/pip install -c constraints.txt '.[serve]'

FROM python:3.11-slim
ENV PATH=/opt/refurbgrade/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    REFURBGRADE_MODEL_PATH=/opt/refurbgrade-models/default.onnx \
    REFURBGRADE_DATA_DIR=/var/lib/refurbgrade
RUN groupadd --system --gid 10001 refurbgrade \
    && useradd --system --uid 10001 --gid refurbgrade --home-dir /var/lib/refurbgrade --shell /usr/sbin/nologin refurbgrade \
    && mkdir -p /var/lib/refurbgrade \
    && chown refurbgrade:refurbgrade /var/lib/refurbgrade
COPY --from=build /opt/refurbgrade /opt/refurbgrade
# The bundled model, its INT8 sibling (served where its card says it passed parity) and its fine network
# (the fine pass, docs/fine-pass.md). A wheel does not carry models/, hence REFURBGRADE_MODEL_PATH; other
# models go in a volume under models_dir.
COPY models/default.onnx models/default.int8.onnx models/default.fine.onnx /opt/refurbgrade-models/
USER refurbgrade
WORKDIR /var/lib/refurbgrade
VOLUME ["/var/lib/refurbgrade"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status == 200 else 1)"]
CMD ["refurbgrade", "serve", "--host", "0.0.0.0", "--port", "8000"]
