# syntax=docker/dockerfile:1.7
# Trainer service, CPU-only. Build from the repository root:
#   docker build -f deploy/docker/trainer.Dockerfile -t hitl/trainer:dev .

# The pinned upstream base. A machine without a registry passes one made from Debian
# packages instead (`make base-images`): --build-arg BASE_IMAGE=...
ARG BASE_IMAGE=python:3.11.13-slim-bookworm

FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# The trainer's lock, every pin hashed (its model is a scikit-learn logistic regression:
# no torch); protoc (grpcio-tools) lives in a throwaway venv.
COPY requirements/protoc.txt requirements/trainer.txt ./
RUN python -m venv /opt/tools \
 && /opt/tools/bin/pip install --require-hashes --no-deps -r protoc.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r trainer.txt
COPY protos/ protos/
COPY hitl/ hitl/
COPY trainer_service/ trainer_service/
# The same protoc command as `make protos` makes what runs (its typed .pyi are for mypy).
RUN rm -rf hitl/v1 \
 && /opt/tools/bin/python -m grpc_tools.protoc -Iprotos --python_out=. --grpc_python_out=. \
      protos/hitl/v1/*.proto \
 && touch hitl/v1/__init__.py \
 && /opt/venv/bin/python -m pip uninstall --yes pip setuptools \
 && /opt/venv/bin/python -m compileall -q /opt/venv /app/hitl /app/trainer_service

FROM ${BASE_IMAGE} AS runtime
RUN rm -rf /usr/local/lib/python3.11/site-packages/pip* /usr/local/bin/pip* \
 && groupadd --system --gid 10001 hitl \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin hitl
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp \
    TRAINER_DATA_DIR=/var/lib/hitl/trainer
COPY --from=build /opt/venv/ /opt/venv/
COPY --from=build /app/hitl/ /app/hitl/
COPY --from=build /app/trainer_service/ /app/trainer_service/
WORKDIR /app
USER 10001:10001
EXPOSE 50052 9102
ENTRYPOINT ["python", "-m", "trainer_service"]
