#!/usr/bin/env bash
# Stops the cluster tests/cluster/up.sh started and removes everything it made: processes (containerd's
# shims included), mounts, pod network namespaces, the bridge, iptables rules (kube-proxy's and the node's),
# kubelet's cgroups, the state dir; sysctls go back to their values from before. Exits 1, naming them, if
# anything is left. Safe to run when nothing is up. The last run's logs stay in ${MODELROLLOUT_NODE_DIR}-logs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py="$repo/.venv/bin/python"
[[ -x "$py" ]] || py=python3
cd "$repo"
exec "$py" -m tests.cluster.node down
