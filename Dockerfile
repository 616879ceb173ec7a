# relay container image: a wheel built in one stage (compiled with mypyc: gcc and python3-dev
# are there only), installed into a venv in the next, and only that venv plus Debian's python3
# in the runtime stage. The install stage fails the build unless relay runs compiled.
#
#   docker build -t relay .
#   docker run --rm -p 6380:6380 -p 9100:9100 -v $PWD/my.toml:/etc/relay/relay.toml:ro relay
#
# Wheels placed in dist/wheels/ before the build (as .ci/run does) are used instead of
# downloading dependencies, for machines whose build containers have no package index.

FROM debian:bookworm-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY relay ./relay
COPY dist/ ./dist/
RUN python3 -m venv /opt/build \
    && if ls dist/wheels/*.whl >/dev/null 2>&1; then \
         /opt/build/bin/pip install --no-cache-dir --no-index --find-links dist/wheels setuptools wheel mypy \
         && /opt/build/bin/pip wheel --no-cache-dir --no-index --find-links dist/wheels --no-build-isolation \
              --wheel-dir /wheels . ; \
       else \
         /opt/build/bin/pip wheel --no-cache-dir --wheel-dir /wheels . ; \
       fi

FROM debian:bookworm-slim AS install
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN python3 -m venv /opt/relay \
    && /opt/relay/bin/pip install --no-cache-dir --no-index --find-links /wheels relay \
    && /opt/relay/bin/python -c "from relay.build import flavour; assert flavour() == 'compiled', flavour()" \
    && /opt/relay/bin/python -c "from relay.net import sysio; assert sysio.NATIVE, 'no relay.net._sysio'" \
    && /opt/relay/bin/pip uninstall -y pip \
    && find /opt/relay -name __pycache__ -prune -exec rm -rf {} +

FROM debian:bookworm-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="relay" \
      org.opencontainers.image.description="A resilient TCP proxy: epoll + splice, health checks, failover and failback" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/relay-proxy/relay"
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin relay
COPY --from=install /opt/relay /opt/relay
COPY conf/container.toml /etc/relay/relay.toml
ENV PATH=/opt/relay/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    RELAY_CONFIG=/etc/relay/relay.toml
USER 10001:10001
# the example config's listener and admin ports
EXPOSE 6380 9100
# relay probe reads the admin address from the mounted config, so it follows a moved port
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["relay", "probe", "-c", "/etc/relay/relay.toml"]
STOPSIGNAL SIGTERM
# relay is PID 1 itself: it handles SIGTERM/SIGINT (drain, then exit 0); with workers > 1 the
# supervisor reaps its workers and forwards signals to them, so no separate init is needed
ENTRYPOINT ["relay", "run"]
CMD ["-c", "/etc/relay/relay.toml"]
