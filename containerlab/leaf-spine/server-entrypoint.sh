#!/bin/sh
# Server node of the leaf-spine lab: start the lab TCP service and the sidecar.
#
#   anycast-lab-server NAME CONFIG
#
# The service answers NAME on 10.255.0.1:8080 and [fd00:255::1]:8080; the sidecar
# (anycast-announcer run -c CONFIG) probes it and announces the anycast prefixes.
# It is the image's entrypoint (containerlab/Dockerfile) and the node's `cmd`; a first
# argument that is an executable path is run as the command, the usual Docker idiom,
# so `cmd: /usr/local/bin/anycast-lab-server srv1 ...` works both as the image's CMD
# and, under anycast-netlab, run directly.
# ANYCAST_PYTHON picks the interpreter (default python3, as in the image; anycast-netlab
# sets it to the interpreter running anycast-netlab, i.e. the project's venv).
set -eu

if [ "$#" -gt 0 ] && [ "${1#/}" != "$1" ] && [ -x "$1" ]; then
    exec "$@"
fi
if [ "$#" -ne 2 ]; then
    echo "usage: $0 NAME CONFIG" >&2
    exit 2
fi
name=$1
config=$2
python=${ANYCAST_PYTHON:-python3}

# Under containerlab the node's exec commands (addresses) run after the container
# started: wait for the anycast addresses the service binds to.
tries=0
until ip -o addr show dev lo | grep -q ' 10\.255\.0\.1/32' \
        && ip -o addr show dev lo | grep -q ' fd00:255::1/128'; do
    tries=$((tries + 1))
    if [ "$tries" -gt 300 ]; then
        echo "anycast addresses never appeared on lo" >&2
        exit 1
    fi
    sleep 0.2
done

"$python" -m anycast_announcer.netlab.service --name "$name" \
    --listen 10.255.0.1:8080 --listen '[fd00:255::1]:8080' &
service=$!
"$python" -m anycast_announcer run -c "$config" &
sidecar=$!

# SIGTERM (docker stop, netlab destroy): the sidecar withdraws first, then the service goes.
trap 'kill -TERM "$sidecar" 2>/dev/null; wait "$sidecar"; kill -TERM "$service" 2>/dev/null; wait "$service"; exit 0' TERM INT
# Whichever exits first takes the node down with it, so a crash is visible.
while kill -0 "$service" 2>/dev/null && kill -0 "$sidecar" 2>/dev/null; do
    sleep 1
done
kill -TERM "$sidecar" "$service" 2>/dev/null || true
wait
exit 1
