#!/usr/bin/env bash
# Stop what start-control-plane.sh DIR started (pids from DIR/pids), newest first so the
# controller-manager and apiserver do not spew errors about a vanished etcd.
# Usage: stop-control-plane.sh DIR   (DIR's logs and data are kept for post-mortems)
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
PIDS="$1/pids"
[ -f "$PIDS" ] || exit 0
# Checking the cmdline guards against pid reuse, and is empty for an unreaped zombie.
alive() { grep -qa -- "$1" "/proc/$2/cmdline" 2>/dev/null; }
tac "$PIDS" | while read -r name pid; do
    alive "$name" "$pid" || continue
    kill "$pid" 2>/dev/null || continue
    # Give it 10 s to exit cleanly (etcd flushes), then force.
    for _ in $(seq 50); do alive "$name" "$pid" || break; sleep 0.2; done
    alive "$name" "$pid" && kill -9 "$pid" 2>/dev/null && echo "killed -9 $name ($pid)" >&2 || true
done
rm -f "$PIDS"
