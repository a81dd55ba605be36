# syntax=docker/dockerfile:1.7
# Feature service. Build from the repository root (`make images` does, with podman):
#   GPU (default): docker build -f deploy/docker/feature.Dockerfile -t hitl/feature:0.1.0-cuda .
#   CPU, lite:     docker build -f deploy/docker/feature.Dockerfile \
#                    --build-arg EXTRACTOR=lite -t hitl/feature:0.1.0-cpu .
# The lite image carries no torch: ONNX Runtime runs its models (requirements/
# feature-lite.txt); torch converts them to ONNX once, during the build, in a venv that
# the same step deletes. The model weights are baked in (deploy/README.md says why).

# Pinned upstream bases. A machine without a registry passes bases made from Debian
# packages instead (`make base-images`): --build-arg BASE_IMAGE=... NODE_IMAGE=...
ARG BASE_IMAGE=python:3.11.13-slim-bookworm
ARG NODE_IMAGE=node:22.17.0-bookworm-slim
# resnext50-frcnn (the GPU image) or lite (the CPU image).
ARG EXTRACTOR=resnext50-frcnn
# Empty: PyPI's torch wheels, which bundle CUDA. Set (PyTorch's CPU wheel index): a CPU
# torch, for a resnext50-frcnn image without CUDA or a lighter lite conversion.
ARG TORCH_INDEX=""

# npm packages: the MediaPipe model files the lite extractor converts.
FROM ${NODE_IMAGE} AS npm
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG EXTRACTOR
ARG TORCH_INDEX
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# The feature service's locks (exact versions and hashes): the lite runtime without torch,
# or the whole lock through feature-torch.sh. protoc (grpcio-tools) lives in a throwaway
# venv.
COPY requirements/protoc.txt requirements/feature.txt requirements/feature-cpu.txt \
     requirements/feature-lite.txt deploy/docker/feature-torch.sh ./
RUN python -m venv /opt/tools \
 && /opt/tools/bin/pip install --require-hashes --no-deps -r protoc.txt \
 && if [ "$EXTRACTOR" = lite ]; then \
      python -m venv /opt/venv \
      && /opt/venv/bin/pip install --require-hashes --no-deps -r feature-lite.txt; \
    else \
      ./feature-torch.sh /opt/venv; \
    fi
COPY protos/ protos/
COPY hitl/ hitl/
COPY feature_service/ feature_service/
# The same protoc command as `make protos` makes what runs (its typed .pyi are for mypy).
RUN rm -rf hitl/v1 \
 && /opt/tools/bin/python -m grpc_tools.protoc -Iprotos --python_out=. --grpc_python_out=. \
      protos/hitl/v1/*.proto \
 && touch hitl/v1/__init__.py

FROM build AS weights
ARG EXTRACTOR
ARG TORCH_INDEX
# torchvision's cache, where the resnext50-frcnn weights are downloaded (checksummed).
ENV TORCH_HOME=/opt/hitl/torch
COPY --from=npm /src/node_modules/ node_modules/
# lite: the converter venv (torch) exists only within this step.
RUN mkdir -p /opt/hitl/models /opt/hitl/torch \
 && venv=/opt/venv \
 && if [ "$EXTRACTOR" = lite ]; then venv=/opt/convert && ./feature-torch.sh "$venv"; fi \
 && "$venv/bin/python" -m feature_service.fetch_models "$EXTRACTOR" \
      --models-dir /opt/hitl/models \
 && rm -rf /opt/convert

FROM build AS slim
# Nothing that installs or compiles goes into the final image.
RUN /opt/venv/bin/python -m pip uninstall --yes pip setuptools \
 && /opt/venv/bin/python -m compileall -q /opt/venv /app/hitl /app/feature_service

FROM ${BASE_IMAGE} AS runtime
ARG EXTRACTOR
RUN rm -rf /usr/local/lib/python3.11/site-packages/pip* /usr/local/bin/pip* \
 && groupadd --system --gid 10001 hitl \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin hitl
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp \
    FEATURE_EXTRACTOR=${EXTRACTOR} FEATURE_MODELS_DIR=/opt/hitl/models \
    TORCH_HOME=/opt/hitl/torch FEATURE_CACHE_DIR=/var/lib/hitl/feature-cache
COPY --from=slim /opt/venv/ /opt/venv/
COPY --from=slim /app/hitl/ /app/hitl/
COPY --from=slim /app/feature_service/ /app/feature_service/
COPY --from=weights /opt/hitl/ /opt/hitl/
WORKDIR /app
USER 10001:10001
EXPOSE 50051 9101
ENTRYPOINT ["python", "-m", "feature_service"]
