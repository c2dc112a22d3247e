# syntax=docker/dockerfile:1
# `catdog serve` for an inference platform (KServe: deployments/kserve-inferenceservice.yaml).
#
#   docker build -t catdog-serve .                                  # the registry mounted at run time
#   docker build -t catdog-serve --build-arg MODEL=data/registry .  # the project's registry baked in
#   docker run -p 8080:8080 -e CATDOG_SERVE_TOKEN=... -v $PWD/data/registry:/srv/catdog/data/registry catdog-serve
#
# It serves on 0.0.0.0:8080, so it needs CATDOG_SERVE_TOKEN; /healthz and /v2/health/* answer without it.
ARG PYTHON=3.11

FROM python:${PYTHON}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY deployments/container/requirements-serve.lock /tmp/requirements-serve.lock
RUN python -m venv /venv && /venv/bin/pip install -r /tmp/requirements-serve.lock
COPY pyproject.toml /src/
COPY catdog /src/catdog
COPY tasks /src/tasks
COPY flows /src/flows
RUN /venv/bin/pip install --no-deps /src

FROM python:${PYTHON}-slim
RUN useradd --create-home --uid 10001 catdog && mkdir -p /srv/catdog/data && chown -R catdog /srv/catdog
COPY --from=build /venv /venv
COPY --chown=catdog params.yaml /srv/catdog/params.yaml
ARG MODEL=deployments/container/no-model
COPY --chown=catdog ${MODEL} /srv/catdog/data/registry
USER catdog
WORKDIR /srv/catdog
ENV PATH=/venv/bin:$PATH TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
EXPOSE 8080
ENTRYPOINT ["catdog", "--project", "/srv/catdog", "serve", "--host", "0.0.0.0", "--port", "8080"]
