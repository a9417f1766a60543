# syntax=docker/dockerfile:1
# Build image: runs `sentinel build` (train/export/validate/publish) into the model repository
# mounted at /models. It is run, not built, with a GPU (`docker compose run builder`, or the
# Kubernetes Job in docker/k8s/builder-job.yaml): TensorRT engines are built on the GPU model they
# will serve on, and image builds get no GPU. Python 3.11 with the project's locked dependencies;
# TensorRT comes as NVIDIA's wheels, the same version the serving image installs.
#   docker build -f docker/builder.Dockerfile -t sentinel/builder:0.1.0 .
FROM python:3.11.10-slim-bookworm

ARG TENSORRT_VERSION=10.13.0.35

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1

WORKDIR /opt/sentinel
COPY requirements.lock requirements-nodeps.txt ./
# nvidia-pytriton carries a Triton server for local runs; the builder does not serve.
RUN pip install --no-cache-dir -r requirements.lock \
    && grep -v '^nvidia-pytriton' requirements-nodeps.txt > /tmp/nodeps.txt \
    && pip install --no-cache-dir --no-deps -r /tmp/nodeps.txt \
    && pip install --no-cache-dir "tensorrt-cu12==${TENSORRT_VERSION}" \
    && rm /tmp/nodeps.txt

COPY pyproject.toml README.md ./
COPY sentinel/ sentinel/
COPY monitor/ monitor/
COPY build_scripts/ build_scripts/
COPY python_backend/ python_backend/
COPY model_repository/ model_repository/
# /models owned by uid 1000: a fresh named volume mounted there takes this ownership, so the
# builder can write into it.
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --uid 1000 --create-home --home-dir /home/builder builder \
    && mkdir /models && chown 1000:1000 /models

# uid 1000 is triton-server in NVIDIA's image: the versions it writes are readable there.
USER 1000
ENTRYPOINT ["sentinel", "build"]
CMD ["ranker", "--repository", "/models"]
