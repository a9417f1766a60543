# syntax=docker/dockerfile:1
# Serving image: NVIDIA's Triton 24.10 (Triton 2.51, the server version the project tests against)
# with the python backend's dependencies, the project's python_backend/ and the model repository's
# committed configs. Model versions are build output: they come from the builder image into the
# volume mounted at /models. Build from the repository root:
#   docker build -f docker/triton.Dockerfile -t sentinel/triton:0.1.0 .
FROM nvcr.io/nvidia/tritonserver:24.10-py3

# The same TensorRT as docker/builder.Dockerfile: an engine only deserialises with the TensorRT
# version (and on the GPU model) it was built with.
ARG TENSORRT_VERSION=10.13.0.35

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# NVIDIA's python backend stub runs the image's own Python: the packages model.py needs go there,
# and the build fails here rather than at serving time if numpy 2 slipped in.
COPY docker/requirements/triton-stub.txt /tmp/triton-stub.txt
RUN python3 -m pip install --no-cache-dir -r /tmp/triton-stub.txt "tensorrt-cu12==${TENSORRT_VERSION}" \
    && python3 -c "import numpy, sys; sys.exit(f'numpy {numpy.__version__}: the stub needs numpy < 2' if int(numpy.__version__.split('.')[0]) >= 2 else 0)" \
    && rm /tmp/triton-stub.txt

# model.py imports python_backend; the stub does not see PYTHONPATH, so a .pth file in the image's
# site-packages puts /opt/sentinel on its sys.path.
COPY python_backend/ /opt/sentinel/python_backend/
RUN echo /opt/sentinel > "$(python3 -c 'import site; print(site.getsitepackages()[0])')/sentinel.pth" \
    && python3 -c "import python_backend.ranker_service, python_backend.seqrec_service, python_backend.search_service, python_backend.recommend_service, tokenizers"

COPY --chown=1000:1000 model_repository/ /models/
COPY --chmod=0755 docker/triton/entrypoint.sh /opt/sentinel/bin/triton-entrypoint
COPY --chmod=0755 docker/triton/golden_probe.py /opt/sentinel/bin/golden-probe

# 1000 = triton-server, NVIDIA's unprivileged user in this image
USER 1000
ENV MODEL_REPOSITORY=/models \
    TRITON_MODELS=ranker \
    TRITON_ADMIN_KEY_FILE=/run/secrets/admin_key
EXPOSE 8000 8001 8002
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "/opt/sentinel/bin/golden-probe", "--timeout", "3"]
ENTRYPOINT ["/opt/sentinel/bin/triton-entrypoint"]
