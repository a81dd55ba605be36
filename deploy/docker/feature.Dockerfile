# syntax=docker/dockerfile:1.7
# Feature service. Build from the repository root:
#   GPU (default): docker build -f deploy/docker/feature.Dockerfile -t hitl/feature:dev-cuda .
#   CPU, lite:     docker build -f deploy/docker/feature.Dockerfile \
#                    --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu \
#                    --build-arg EXTRACTOR=lite -t hitl/feature:dev-cpu .
# The model weights are baked in at build time (deploy/README.md says why).

# npm packages: the MediaPipe model files the lite extractor converts.
FROM node:22.17.0-bookworm-slim AS npm
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11.13-slim-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Empty: PyPI's Linux torch wheels, which bundle CUDA. A CPU-only build points this at
# PyTorch's CPU wheel index instead.
ARG TORCH_INDEX=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# The feature service's lock (requirements/feature.txt: exact versions and hashes). A
# CPU build takes torch and torchvision at the same versions from TORCH_INDEX and the
# rest from feature-cpu.txt (tools/locks.py says why). protoc (grpcio-tools) lives in a
# throwaway venv.
COPY requirements/protoc.txt requirements/feature.txt requirements/feature-cpu.txt ./
RUN python -m venv /opt/tools \
 && /opt/tools/bin/pip install --require-hashes --no-deps -r protoc.txt \
 && python -m venv /opt/venv \
 && if [ -z "$TORCH_INDEX" ]; then \
      /opt/venv/bin/pip install --require-hashes --no-deps -r feature.txt; \
    else \
      grep -E '^(torch|torchvision)==' feature.txt | cut -d' ' -f1 \
        | xargs /opt/venv/bin/pip install --no-deps --index-url "$TORCH_INDEX" \
      && /opt/venv/bin/pip install --require-hashes --no-deps -r feature-cpu.txt; \
    fi
COPY protos/ protos/
COPY hitl/ hitl/
COPY feature_service/ feature_service/
# The same protoc command as `make protos`.
RUN rm -rf hitl/v1 \
 && /opt/tools/bin/python -m grpc_tools.protoc -Iprotos --python_out=. --grpc_python_out=. \
      --pyi_out=. protos/hitl/v1/*.proto \
 && touch hitl/v1/__init__.py

FROM build AS weights
ARG EXTRACTOR=resnext50-frcnn
# torchvision's cache, where the resnext50-frcnn weights are downloaded (checksummed).
ENV TORCH_HOME=/opt/hitl/torch
COPY --from=npm /src/node_modules/ node_modules/
RUN mkdir -p /opt/hitl/models /opt/hitl/torch \
 && /opt/venv/bin/python -m feature_service.fetch_models "$EXTRACTOR" \
      --models-dir /opt/hitl/models

FROM build AS slim
# Nothing that installs or compiles goes into the final image.
RUN /opt/venv/bin/python -m pip uninstall --yes pip setuptools \
 && /opt/venv/bin/python -m compileall -q /opt/venv /app/hitl /app/feature_service

FROM python:3.11.13-slim-bookworm AS runtime
RUN rm -rf /usr/local/lib/python3.11/site-packages/pip* /usr/local/bin/pip* \
 && groupadd --system --gid 10001 hitl \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin hitl
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp \
    FEATURE_MODELS_DIR=/opt/hitl/models TORCH_HOME=/opt/hitl/torch \
    FEATURE_CACHE_DIR=/var/lib/hitl/feature-cache
COPY --from=slim /opt/venv/ /opt/venv/
COPY --from=slim /app/hitl/ /app/hitl/
COPY --from=slim /app/feature_service/ /app/feature_service/
COPY --from=weights /opt/hitl/ /opt/hitl/
WORKDIR /app
USER 10001:10001
EXPOSE 50051 9101
ENTRYPOINT ["python", "-m", "feature_service"]
