#!/usr/bin/env bash
# Everything docker-compose.yaml needs, without a registry; idempotent and quick when
# nothing changed:
#   1. a Docker engine: the one at DOCKER_HOST when set, else a private one
#      (scripts/docker-daemon.sh, under SNOOP_DOCKER_DIR), started when not running;
#   2. the base image the Dockerfiles' FROM names (debian:bookworm-slim), when the engine
#      lacks it: a debootstrap'ed bookworm minbase (cached under /var/cache/snoop-test by
#      tests/slim/debootstrap_cache.py) brought in with `docker import`;
#   3. Snoop's image, tagged snoop:<content hash> and snoop:latest, and the example app
#      snoop-example-app:latest. With SNOOP_IMAGE_CACHE set to a directory, Snoop's image
#      is also saved there by content hash and loaded from there into a fresh engine.
#
# The last line printed is `DOCKER_HOST=...`: `export "$(scripts/docker-up.sh | tail -1)"`,
# then `docker-compose up -d`.
#
# Builds use the host's network (`--network host`: the private engine has no bridge) and
# trust the host's extra CA certificates (/usr/local/share/ca-certificates/*.crt, or the
# files in SNOOP_BUILD_CA_CERTS), which are streamed into the build context, never
# written to the repository, and stay in the build stage (see the Dockerfile).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKER="${DOCKER:-docker}"
BASE_IMAGE="${SNOOP_BASE_IMAGE:-debian:bookworm-slim}"
SNOOP_IMAGE="${SNOOP_IMAGE:-snoop}"
APP_IMAGE="${SNOOP_APP_IMAGE:-snoop-example-app:latest}"
BUILD_NETWORK="${SNOOP_BUILD_NETWORK:-host}"
IMAGE_CACHE="${SNOOP_IMAGE_CACHE:-}"
CACHED_IMAGES_KEPT=3
# The build context: what the Dockerfile COPYs (keep in step with .dockerignore).
CONTEXT=(Dockerfile .dockerignore pyproject.toml snoop_pkg cli common tracer processor
         reporter receiver slim deploy/ca-certificates)
# Classic builder: a tar context on stdin and --network host on a 20.10 engine, no buildx.
export DOCKER_BUILDKIT=0

say() { echo "docker-up: $*" >&2; }
docker_() { "$DOCKER" "$@"; }

ensure_engine() {
    # The chosen engine: DOCKER_HOST when set (it must answer), else the private one of
    # scripts/docker-daemon.sh, started when it is not running.
    local private="unix://${SNOOP_DOCKER_DIR:-/var/lib/snoop-docker}/docker.sock"
    local chosen="${DOCKER_HOST:-$private}"
    if DOCKER_HOST="$chosen" docker_ version --format '{{.Server.Version}}' >/dev/null 2>&1; then
        echo "$chosen"
        return 0
    fi
    if [ "$chosen" != "$private" ]; then
        say "no Docker engine answers at DOCKER_HOST=$chosen (unset it for a private engine)"
        return 1
    fi
    "$ROOT/scripts/docker-daemon.sh" start >/dev/null
    echo "$private"
}

debootstrap_cache() {
    (cd "$ROOT" && PYTHONPATH="$ROOT" /usr/bin/python3 -c "$1")
}

ensure_base_image() {
    if docker_ image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        return 0
    fi
    local key saved="" rootfs
    key="$(debootstrap_cache 'from tests.slim.debootstrap_cache import SUITE, cache_key
print(f"{SUITE}-minbase-{cache_key()}")')"
    saved="${IMAGE_CACHE:+$IMAGE_CACHE/base-$key.tar}"
    # A saved base keeps its image id from engine to engine, so an older Snoop image
    # loaded from the cache can serve as build cache (--cache-from) below.
    if [ -n "$saved" ] && [ -f "$saved" ] && docker_ load -q -i "$saved" >/dev/null 2>&1 \
            && docker_ image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        return 0
    fi
    say "importing a debootstrap'ed bookworm minbase as $BASE_IMAGE (debootstrap takes minutes unless cached)"
    rootfs="$(debootstrap_cache 'from tests.slim.debootstrap_cache import minbase_rootfs
print(minbase_rootfs())')"
    # --numeric-owner and a stable file order: the same tree gives the same layer digest,
    # which is part of Snoop's image content hash below.
    tar --numeric-owner --sort=name -C "$rootfs" -c . \
        | docker_ import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    if [ -n "$saved" ]; then
        mkdir -p "$IMAGE_CACHE"
        docker_ save -o "$saved.$$.part" "$BASE_IMAGE" && mv "$saved.$$.part" "$saved" \
            || rm -f "$saved.$$.part"
    fi
}

ca_certs() {
    local spec="${SNOOP_BUILD_CA_CERTS-/usr/local/share/ca-certificates/*.crt}" file
    for file in $spec; do
        [ -f "$file" ] && echo "$file"
    done
    return 0
}

content_hash() {
    # Everything that decides the image: the context, the extra CAs, the base's layers.
    {
        (cd "$ROOT" && find "${CONTEXT[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
            -print0 | sort -z | xargs -0 sha256sum)
        ca_certs | while read -r file; do sha256sum < "$file"; done
        docker_ image inspect -f '{{.RootFS.Layers}}' "$BASE_IMAGE"
    } | sha256sum | cut -c1-16
}

build_context_tar() {
    # The repository's context plus the host's extra CAs under deploy/ca-certificates/,
    # as one tar stream (nothing is written to the work tree).
    local extra file
    extra="$(mktemp -d)"
    trap 'rm -rf "$extra"' RETURN
    mkdir -p "$extra/deploy/ca-certificates"
    ca_certs | while read -r file; do
        cp "$file" "$extra/deploy/ca-certificates/host-$(basename "$file")"
    done
    tar --numeric-owner --exclude=__pycache__ --exclude='*.pyc' -c \
        -C "$ROOT" "${CONTEXT[@]}" -C "$extra" deploy/ca-certificates
}

prune_cache() {
    # Keep the newest few saved images: each is ~600 MB.
    local old
    find "$IMAGE_CACHE" -maxdepth 1 -name 'snoop-*.tar' -printf '%T@ %p\n' | sort -rn \
        | tail -n "+$((CACHED_IMAGES_KEPT + 1))" | while read -r _ old; do rm -f "$old"; done
}

ensure_snoop_image() {
    local hash tag cached log
    hash="$(content_hash)"
    tag="$SNOOP_IMAGE:$hash"
    cached="${IMAGE_CACHE:+$IMAGE_CACHE/snoop-$hash.tar}"
    if ! docker_ image inspect "$tag" >/dev/null 2>&1 && [ -n "$cached" ] && [ -f "$cached" ]; then
        say "loading $tag from $cached"
        # touch: prune_cache keeps the most recently used.
        docker_ load -q -i "$cached" >/dev/null && touch "$cached" || rm -f "$cached"
    fi
    if ! docker_ image inspect "$tag" >/dev/null 2>&1; then
        local cache_from=()
        if [ -n "$IMAGE_CACHE" ] && ! docker_ image inspect "$SNOOP_IMAGE:latest" >/dev/null 2>&1; then
            # A fresh engine has no build cache: an older saved image still holds the
            # runtime stage (the Debian packages, most of the build time).
            local previous
            previous="$(find "$IMAGE_CACHE" -maxdepth 1 -name 'snoop-*.tar' -printf '%T@ %p\n' \
                2>/dev/null | sort -rn | head -1 | cut -d' ' -f2-)"
            if [ -n "$previous" ] && docker_ load -q -i "$previous" >/dev/null 2>&1; then
                previous="$(basename "$previous" .tar)"
                cache_from=(--cache-from "$SNOOP_IMAGE:${previous#snoop-}")
            fi
        fi
        say "building $tag"
        log="$(mktemp)"
        if ! build_context_tar | docker_ build --network "$BUILD_NETWORK" "${cache_from[@]}" \
                --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$tag" - >"$log" 2>&1; then
            tail -30 "$log" >&2
            say "building $tag failed (full log: $log)"
            return 1
        fi
        rm -f "$log"
        if [ -n "$cached" ]; then
            mkdir -p "$IMAGE_CACHE"
            docker_ save -o "$cached.$$.part" "$tag" && mv "$cached.$$.part" "$cached" \
                || rm -f "$cached.$$.part"
            prune_cache
        fi
    fi
    docker_ tag "$tag" "$SNOOP_IMAGE:latest"
    echo "$tag"
}

ensure_app_image() {
    # Two small layers on the base: rebuilt every time, in seconds.
    local log
    log="$(mktemp)"
    if ! docker_ build --network "$BUILD_NETWORK" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
            -t "$APP_IMAGE" "$ROOT/deploy/example-app" >"$log" 2>&1; then
        tail -30 "$log" >&2
        say "building $APP_IMAGE failed (full log: $log)"
        return 1
    fi
    rm -f "$log"
}

main() {
    local host tag
    host="$(ensure_engine)"
    export DOCKER_HOST="$host"
    ensure_base_image
    tag="$(ensure_snoop_image)"
    ensure_app_image
    say "images ready: $tag ($SNOOP_IMAGE:latest), $APP_IMAGE, base $BASE_IMAGE"
    echo "DOCKER_HOST=$DOCKER_HOST"
}

main "$@"
