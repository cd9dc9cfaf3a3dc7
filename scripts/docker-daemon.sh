#!/usr/bin/env bash
# A private Docker engine for Snoop's images and tests, beside any other engine on this
# host: its own data root, exec root, pid file and socket; no iptables rules and no
# default bridge (containers use `network_mode: none` or `host`; builds use the host's
# network). cgroupfs driver, so a container's cgroup v2 directory is
# `<v2 root>/docker/<id>`, or `<v2 root>/<cgroup_parent>/<id>`.
#
#   scripts/docker-daemon.sh start          # prints DOCKER_HOST=unix://.../docker.sock
#   scripts/docker-daemon.sh status
#   scripts/docker-daemon.sh stop [--purge] # --purge also removes its images and state
#
# SNOOP_DOCKER_DIR (default /var/lib/snoop-docker) holds everything: data/, exec/,
# dockerd.pid, dockerd.log and docker.sock. Only the dockerd whose pid is in that
# directory's pid file is ever stopped.
set -euo pipefail

DIR="${SNOOP_DOCKER_DIR:-/var/lib/snoop-docker}"
SOCK="$DIR/docker.sock"
PIDFILE="$DIR/dockerd.pid"
LOG="$DIR/dockerd.log"
START_TIMEOUT="${SNOOP_DOCKER_START_TIMEOUT:-60}"
DOCKER="${DOCKER:-docker}"

say() { echo "docker-daemon: $*" >&2; }

reachable() {
    [ -S "$SOCK" ] && "$DOCKER" -H "unix://$SOCK" version --format '{{.Server.Version}}' \
        >/dev/null 2>&1
}

running_pid() {
    local pid
    [ -f "$PIDFILE" ] || return 1
    pid="$(cat "$PIDFILE")"
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -q dockerd "/proc/$pid/comm" 2>/dev/null \
        && echo "$pid"
}

start() {
    if reachable; then
        echo "DOCKER_HOST=unix://$SOCK"
        return 0
    fi
    command -v dockerd >/dev/null || {
        say "dockerd not found: apt-get install docker.io"
        return 1
    }
    [ "$(id -u)" = 0 ] || { say "dockerd needs root"; return 1; }
    mkdir -p "$DIR/data" "$DIR/exec"
    local pid waited=0
    if ! pid="$(running_pid)"; then
        # setsid: the engine outlives this script and is not in its process group.
        setsid dockerd \
            --data-root "$DIR/data" --exec-root "$DIR/exec" --pidfile "$PIDFILE" \
            -H "unix://$SOCK" --iptables=false --ip-masq=false --bridge=none \
            --storage-driver=overlay2 --exec-opt native.cgroupdriver=cgroupfs \
            --containerd-namespace snoop --containerd-plugins-namespace snoop-plugins \
            >>"$LOG" 2>&1 </dev/null &
        pid=$!
    fi
    until reachable; do
        if [ ! -d "/proc/$pid" ] || [ "$waited" -ge "$((START_TIMEOUT * 4))" ]; then
            if [ -d "/proc/$pid" ]; then
                say "dockerd (pid $pid) not answering at $SOCK after ${START_TIMEOUT}s"
            else
                say "dockerd exited before answering at $SOCK"
            fi
            say "last lines of $LOG:"
            tail -20 "$LOG" >&2 || true
            return 1
        fi
        sleep 0.25
        waited=$((waited + 1))
    done
    echo "DOCKER_HOST=unix://$SOCK"
}

unmount_below() {
    # Mounts the engine left behind (overlay, shm, netns), deepest first.
    local root="$1" point
    awk -v root="$root" '$5 == root || index($5, root "/") == 1 { print $5 }' \
        /proc/self/mountinfo | sort -r | while read -r point; do
        umount -l "$point" 2>/dev/null || true
    done
}

kill_leftovers() {
    # After a SIGKILL the engine could not stop its containers: end their processes (by
    # their cgroups, named by the container ids in our data root) and the shims serving
    # our containerd.
    local id procs shim
    for id in $(ls "$DIR/data/containers" 2>/dev/null); do
        for procs in $(find /sys/fs/cgroup -type d -name "$id" 2>/dev/null); do
            xargs -r kill -KILL < "$procs/cgroup.procs" 2>/dev/null || true
        done
    done
    for shim in /proc/[0-9]*; do
        if tr '\0' ' ' < "$shim/cmdline" 2>/dev/null | grep -q "containerd-shim.*$DIR/exec/"; then
            kill -KILL "${shim#/proc/}" 2>/dev/null || true
        fi
    done
}

stop() {
    local pid waited=0
    if pid="$(running_pid)"; then
        kill -TERM "$pid"
        while [ -d "/proc/$pid" ] && [ "$waited" -lt 120 ]; do
            sleep 0.25
            waited=$((waited + 1))
        done
        if [ -d "/proc/$pid" ]; then
            say "dockerd $pid still running after 30s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            kill_leftovers
        fi
    fi
    unmount_below "$DIR"
    if [ "${1:-}" = "--purge" ]; then
        rm -rf "$DIR"
    else
        rm -f "$PIDFILE" "$SOCK"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) shift; stop "$@" ;;
    status)
        if reachable; then echo "running: DOCKER_HOST=unix://$SOCK"; else echo "stopped"; exit 1; fi ;;
    *) echo "usage: $0 start | status | stop [--purge]" >&2; exit 2 ;;
esac
