# syntax=docker/dockerfile:1.7
# Annotation gateway (HTTP UI and API), CPU-only and without torch. Build from the
# repository root:
#   docker build -f deploy/docker/gateway.Dockerfile -t hitl/gateway:dev .

# Pinned upstream bases. A machine without a registry passes bases made from Debian
# packages instead (`make base-images`): --build-arg BASE_IMAGE=... NODE_IMAGE=...
ARG BASE_IMAGE=python:3.11.13-slim-bookworm
ARG NODE_IMAGE=node:22.17.0-bookworm-slim

# npm packages the browser UI serves locally (uPlot, Swagger UI for /api/docs).
FROM ${NODE_IMAGE} AS npm
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# The gateway's own lock (requirements/gateway.txt: exact versions, hashes, no torch);
# protoc (grpcio-tools) lives in a throwaway venv.
COPY requirements/protoc.txt requirements/gateway.txt ./
RUN python -m venv /opt/tools \
 && /opt/tools/bin/pip install --require-hashes --no-deps -r protoc.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r gateway.txt
COPY protos/ protos/
COPY hitl/ hitl/
COPY annotation_gateway/ annotation_gateway/
# The same protoc command as `make protos` makes what runs (its typed .pyi are for mypy).
RUN rm -rf hitl/v1 \
 && /opt/tools/bin/python -m grpc_tools.protoc -Iprotos --python_out=. --grpc_python_out=. \
      protos/hitl/v1/*.proto \
 && touch hitl/v1/__init__.py \
 && /opt/venv/bin/python -m pip uninstall --yes pip setuptools \
 && /opt/venv/bin/python -m compileall -q /opt/venv /app/hitl /app/annotation_gateway

FROM ${BASE_IMAGE} AS runtime
RUN rm -rf /usr/local/lib/python3.11/site-packages/pip* /usr/local/bin/pip* \
 && groupadd --system --gid 10001 hitl \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin hitl
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
COPY --from=build /opt/venv/ /opt/venv/
COPY --from=build /app/hitl/ /app/hitl/
COPY --from=build /app/annotation_gateway/ /app/annotation_gateway/
# The browser UI, its vendored chart library and API docs renderer, where GATEWAY_WEB_DIR
# and GATEWAY_VENDOR_DIR point by default (/app/web, /app/node_modules).
COPY web/ /app/web/
COPY --from=npm /src/node_modules/uplot/ /app/node_modules/uplot/
COPY --from=npm /src/node_modules/swagger-ui-dist/ /app/node_modules/swagger-ui-dist/
WORKDIR /app
USER 10001:10001
EXPOSE 8080 9103
ENTRYPOINT ["python", "-m", "annotation_gateway"]
