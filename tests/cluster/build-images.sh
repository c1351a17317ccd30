#!/usr/bin/env bash
# Builds the images the test node runs; no registry is needed, every image is made here:
#   pause.tar         the pod sandbox: the pause program from build-node.sh in a one-layer OCI archive
#   with --product:
#   (base)            Python 3.11 on Debian bookworm from Debian's packages (debootstrap --variant=minbase),
#                     without documentation, man pages and locales as Debian's slim images (the base of the
#                     official python:3.11-slim-bookworm) leave them out; imported into a private dockerd as
#                     modelrollout.test/python:3.11-slim-bookworm
#   modelrollout.tar  the project's Dockerfile built FROM that base (build argument PYTHON_IMAGE); its size and
#                     the base's are printed, `modelrollout --help` is run in it as its non-root user and
#                     image_smoke.py checks what it carries (statistics, imports) and leaves out (pyarrow)
# The archives are what `ctr -n k8s.io images import` loads into the node's containerd (tests/cluster/node.py).
#
# Usage: tests/cluster/build-images.sh [--product]   prints the image dir as its last stdout line
# Env:   MODELROLLOUT_IMAGE_CACHE (default ~/.cache/modelrollout/images; dockerd's data root is beside it)
#        MODELROLLOUT_IMAGE       product image name (default modelrollout:0.1.0, as manifests/kustomization.yaml)
# Needs: debootstrap and docker.io (dockerd 20.10) for --product; the private dockerd runs only during the
#        build, with --iptables=false --bridge=none, and is stopped afterwards.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${MODELROLLOUT_IMAGE_CACHE:-$HOME/.cache/modelrollout/images}"
docker_root="$(dirname "$cache")/docker"
product="${MODELROLLOUT_IMAGE:-modelrollout:0.1.0}"
base="modelrollout.test/python:3.11-slim-bookworm"
pause_name="modelrollout.test/pause:3.10"

log() { echo "build-images.sh: $*" >&2; }

want_product=0
case "${1:-}" in
    --product) want_product=1 ;;
    "") ;;
    *) log "error: unknown argument '$1' (expected --product or nothing)"; exit 2 ;;
esac

mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock 9

node_bin="${MODELROLLOUT_NODE_BIN:-$(bash "$here/build-node.sh" | tail -n 1)}"
if [[ ! -s "$cache/pause.tar" || "$node_bin/pause" -nt "$cache/pause.tar" ]]; then
    (cd "$repo" && python3 -m tests.cluster.ociimage "$cache/pause.tar.tmp" "$pause_name" \
        "$node_bin/pause:/pause" -- /pause)
    mv "$cache/pause.tar.tmp" "$cache/pause.tar"
    log "wrote $cache/pause.tar ($pause_name)"
fi

if [[ $want_product == 1 ]]; then
    command -v dockerd >/dev/null || { log "error: dockerd missing (Debian: apt-get install docker.io)"; exit 1; }
    command -v debootstrap >/dev/null || { log "error: debootstrap missing (Debian: apt-get install debootstrap)"; exit 1; }
    exec_root=/run/modelrollout-docker
    sock="$exec_root/docker.sock"
    export DOCKER_HOST="unix://$sock" DOCKER_BUILDKIT=0
    docker=/usr/bin/docker  # Debian's CLI, the same release as its dockerd
    [[ -x $docker ]] || docker="$(command -v docker)"
    mkdir -p "$exec_root" "$docker_root"
    stop_docker() {
        local pid
        pid="$(cat "$exec_root/dockerd.pid" 2>/dev/null || true)"
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        fi
        # dockerd leaves its netns bind mount (exec-root/netns/default) and, after a crash, overlay mounts
        awk -v r="$exec_root" -v d="$docker_root" '$5 ~ "^(" r "|" d ")/" {print $5}' /proc/self/mountinfo |
            sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
        rm -rf "$exec_root"
    }
    trap stop_docker EXIT
    # Debian's dockerd with its own containerd 1.6 from /usr/bin: keep the node's binaries off its PATH.
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin setsid dockerd \
        --data-root "$docker_root" --exec-root "$exec_root" --pidfile "$exec_root/dockerd.pid" -H "$DOCKER_HOST" \
        --iptables=false --ip6tables=false --ip-masq=false --ip-forward=false --bridge=none --storage-driver=overlay2 \
        >"$cache/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 150); do $docker version >/dev/null 2>&1 && break; sleep 0.2; done
    $docker version >/dev/null 2>&1 || { log "error: dockerd did not start; $cache/dockerd.log:"; tail -20 "$cache/dockerd.log" >&2; exit 1; }

    if ! $docker image inspect "$base" >/dev/null 2>&1; then
        rootfs_tar="$cache/base-bookworm-python3-slim.tar"
        if [[ ! -s "$rootfs_tar" ]]; then
            # The mirror the host's apt uses (debootstrap's built-in default otherwise).
            mirror="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null |
                grep -v security | head -n 1 || true)"
            [[ -n "$mirror" ]] || mirror="$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
            root="$(mktemp -d "$cache/.rootfs.XXXXXX")"
            log "debootstrap bookworm (minbase + python3, python3-venv, ca-certificates) ${mirror:+from $mirror}"
            debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" $mirror \
                >"$cache/debootstrap.log" 2>&1 || { log "error: debootstrap failed; see $cache/debootstrap.log"; rm -rf "$root"; exit 1; }
            ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
            # What Debian's slim images leave out (debuerreotype --slimify): docs but their copyright files,
            # man and info pages, locales; the same dpkg excludes keep later `apt-get install`s slim too.
            printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
                'path-exclude /usr/share/info/*' 'path-exclude /usr/share/linda/*' \
                'path-exclude /usr/share/lintian/overrides/*' 'path-exclude /usr/share/locale/*' \
                'path-exclude /usr/share/man/*' >"$root/etc/dpkg/dpkg.cfg.d/docker-slim"
            find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
            find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
            rm -rf "$root"/usr/share/{info,linda,locale,man}/* "$root"/usr/share/lintian/overrides/*
            # pip inside the build reaches the package index only if the image trusts what this host trusts.
            cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
            rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
            tar -C "$root" -cf "$rootfs_tar.tmp" .
            mv "$rootfs_tar.tmp" "$rootfs_tar"
            rm -rf "$root"
        fi
        $docker import --change 'CMD ["python3"]' "$rootfs_tar" "$base" >/dev/null
        log "imported $base"
    fi

    old_id="$($docker image inspect -f '{{.Id}}' "$product" 2>/dev/null || true)"
    log "docker build $product (FROM $base)"
    $docker build --network host --build-arg "PYTHON_IMAGE=$base" -t "$product" "$repo" >"$cache/docker-build.log" 2>&1 ||
        { log "error: docker build failed; tail of $cache/docker-build.log:"; tail -30 "$cache/docker-build.log" >&2; exit 1; }
    $docker run --rm --network none "$product" --help >/dev/null
    user="$($docker run --rm --network none --entrypoint id "$product" -u)"
    [[ "$user" != 0 ]] || { log "error: $product runs as root"; exit 1; }
    $docker run -i --rm --network none --entrypoint python "$product" - <"$here/image_smoke.py" ||
        { log "error: $here/image_smoke.py failed in $product"; exit 1; }
    id="$($docker image inspect -f '{{.Id}}' "$product")"
    if [[ ! -s "$cache/modelrollout.tar" || "$(cat "$cache/modelrollout.id" 2>/dev/null)" != "$id" ]]; then
        $docker save "$product" -o "$cache/modelrollout.tar.tmp"
        mv "$cache/modelrollout.tar.tmp" "$cache/modelrollout.tar"
        echo "$id" >"$cache/modelrollout.id"
    fi
    size="$($docker image inspect -f '{{.Size}}' "$product")"
    base_size="$($docker image inspect -f '{{.Size}}' "$base")"
    echo "$product" >"$cache/modelrollout.name"
    log "image $product: $((size / 1000000)) MB ($((base_size / 1000000)) MB of it the base $base), runs as uid $user, \`modelrollout --help\` and image_smoke.py ok"
    # drop the previous build's image but keep the build stage's layers: they are the next build's cache
    if [[ -n "$old_id" && "$old_id" != "$id" ]]; then $docker rmi --no-prune "$old_id" >/dev/null 2>&1 || true; fi
fi
echo "$cache"
