# One image for both long-running parts:
#   docker run IMAGE controller [ARGS...]     docker run IMAGE router --port 8080 [ARGS...]
# Stage 1 builds a wheel-only virtualenv; stage 2 copies it onto a slim runtime, without compilers.
# The base of both stages is the public python:3.11-slim-bookworm unless the build argument PYTHON_IMAGE
# names another (the test node builds one from Debian's packages: tests/cluster/build-images.sh).
ARG PYTHON_IMAGE

FROM ${PYTHON_IMAGE:-python:3.11-slim-bookworm} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/modelrollout
COPY pyproject.toml README.md* ./
COPY policies/ policies/
COPY router/ router/
COPY controller/ controller/
COPY kubeio/ kubeio/
COPY modelrollout/ modelrollout/
RUN /opt/modelrollout/bin/pip install --no-compile . \
 && /opt/modelrollout/bin/python -c "import policies, router, controller, kubeio, modelrollout"

FROM ${PYTHON_IMAGE:-python:3.11-slim-bookworm}
LABEL org.opencontainers.image.title="modelrollout" \
      org.opencontainers.image.description="Safe, statistics-driven rollouts of ML model versions on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/modelrollout/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 modelrollout \
 && useradd --system --uid 10001 --gid modelrollout --home-dir /nonexistent --shell /usr/sbin/nologin modelrollout \
 && mkdir -p /var/log/modelrollout \
 && chown modelrollout:modelrollout /var/log/modelrollout
COPY --from=build /opt/modelrollout /opt/modelrollout
USER 10001:10001
EXPOSE 8080 9090
# The router answers /healthz on 8080; the controller serves /metrics on 9090. Either one up = healthy.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request as u\nfor url in ('http://127.0.0.1:8080/healthz', 'http://127.0.0.1:9090/metrics'):\n    try:\n        u.urlopen(url, timeout=2); sys.exit(0)\n    except Exception:\n        pass\nsys.exit(1)"]
ENTRYPOINT ["modelrollout"]
CMD ["--help"]
