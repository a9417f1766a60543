# syntax=docker/dockerfile:1
# The sidecar: `sentinel monitor` on a slim Python 3.11, without torch/ONNX (it reads metrics, the
# repository's configs and golden sets, and talks HTTP to Triton).
#   docker build -f docker/sidecar.Dockerfile -t sentinel/sidecar:0.1.0 .
FROM python:3.11.10-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/sentinel
COPY docker/requirements/sidecar.txt /tmp/sidecar.txt
RUN pip install --no-cache-dir --no-deps -r /tmp/sidecar.txt && rm /tmp/sidecar.txt

COPY pyproject.toml README.md ./
COPY sentinel/ sentinel/
COPY monitor/ monitor/
# No build_scripts/ or python_backend/: the sidecar imports neither (the Triton config model it
# shares with the build is sentinel/triton_config.py).
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/sentinel sentinel

COPY --chmod=0755 docker/sidecar/entrypoint.sh /usr/local/bin/sentinel-sidecar
USER 10001
WORKDIR /var/lib/sentinel
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["sentinel-sidecar"]
CMD ["--config", "/etc/sentinel/sentinel.toml"]
