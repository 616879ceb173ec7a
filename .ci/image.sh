#!/usr/bin/env bash
# Build the relay image on a machine without a container registry (CI):
#   1. start dockerd (no bridge, no iptables changes: the tests use the host network),
#   2. make debian:bookworm-slim from debootstrap --variant=minbase if it is missing,
#   3. put the project's wheels in dist/wheels (build containers may have no package index;
#      mypy among them: the image compiles relay with mypyc),
#   4. docker build the unmodified Dockerfile as relay:ci.
# The image's size is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! docker info >/dev/null 2>&1; then
    dockerd --bridge=none --iptables=false --ip6tables=false >/tmp/relay-ci-dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null
fi

if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    rootfs=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/tmp/relay-ci-debootstrap.log 2>&1
    # trim it as Debian's own -slim images are: no docs, man pages or locales, no apt caches
    cat > "$rootfs"/etc/dpkg/dpkg.cfg.d/slim <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
SLIM
    find "$rootfs"/usr/share/doc -mindepth 2 ! -name copyright -delete 2>/dev/null || true
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin
    tar -C "$rootfs" -c . | docker import - debian:bookworm-slim
    rm -rf "$rootfs"
fi

rm -rf dist/wheels
# mypy: the image's build stage compiles relay with mypyc (pyproject's build requirement);
# relay's own wheel here is only for its dependencies' sake (the image builds relay from
# source), so it is built pure: no minute of mypyc on the host
RELAY_PURE=1 .venv/bin/pip wheel --quiet --wheel-dir dist/wheels . setuptools wheel 'mypy>=1.10,<3'
docker build --network host --tag relay:ci .
docker image inspect relay:ci --format 'relay:ci image size: {{.Size}} bytes'
