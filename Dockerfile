# One image for both long-running parts:
#   docker run IMAGE controller [ARGS...]     docker run IMAGE router --port 8080 [ARGS...]
# Stage 1 builds a wheel-only virtualenv; stage 2 copies it onto a slim runtime, without compilers.
# The base of both stages is the public python:3.11-slim-bookworm unless the build argument PYTHON_IMAGE
# names another (the test node builds one from Debian's packages: tests/cluster/build-images.sh).
ARG PYTHON_IMAGE

FROM ${PYTHON_IMAGE:-python:3.11-slim-bookworm} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# binutils for `strip` below; this stage only, nothing of it reaches the image
# hadolint ignore=DL3008
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends binutils >/dev/null \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python -m venv /opt/modelrollout
COPY pyproject.toml README.md* ./
COPY policies/ policies/
COPY router/ router/
COPY controller/ controller/
COPY kubeio/ kubeio/
COPY modelrollout/ modelrollout/
# The image carries only what the controller and the router import (docs/install.md "The image"):
#   - no extras: pyarrow (Parquet in `modelrollout analyze`) is `modelrollout[parquet]`;
#   - no pip or setuptools (nothing is installed at run time);
#   - not the test suites numpy, scipy and scikit-learn ship, nor C headers, Cython sources and type stubs;
#   - not the kubernetes client's asyncio copy (kubernetes.aio: nothing here imports it);
#   - extension modules without their symbol tables (strip --strip-unneeded); the vendored libraries in
#     numpy.libs/ and scipy.libs/ are left alone: auditwheel rewrote them with patchelf, and strip breaks
#     such files ("ELF load command address/offset not page-aligned").
# The import at the end fails the build if a dependency ever needs what was removed.
ARG SITE=/opt/modelrollout/lib/python3.11/site-packages
RUN /opt/modelrollout/bin/pip install --no-compile . \
 && /opt/modelrollout/bin/python -m pip uninstall -q -y pip setuptools \
 && rm -rf "$SITE/kubernetes/aio" \
 && find "$SITE/numpy" "$SITE/scipy" "$SITE/sklearn" -depth -type d -name tests -exec rm -rf {} + \
 && find "$SITE" -type f \( -name '*.pyi' -o -name '*.pxd' -o -name '*.pyx' -o -name '*.h' -o -name '*.c' \
         -o -name '*.cpp' \) -delete \
 && find "$SITE" -path "$SITE/*.libs" -prune -o -type f -name '*.so' -exec strip --strip-unneeded {} + \
 && /opt/modelrollout/bin/python -c "import policies, router, controller, kubeio, modelrollout, \
controller.kube.controller, router.server, router.kube_source, router.worker, modelrollout.cli, \
modelrollout.models.scorer, scipy.stats, scipy.spatial.distance, sklearn.ensemble, uvloop"

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
