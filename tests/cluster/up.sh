#!/usr/bin/env bash
# Starts a real one-node Kubernetes cluster on this machine and prints `export KUBECONFIG=...` as its last
# line: etcd + kube-apiserver (plane.py), kube-controller-manager, kube-scheduler, containerd + runc, kubelet,
# kube-proxy, the CNI bridge and CoreDNS (node.py). Pods run on the bridge mrbr0 (10.244.0.0/24), Services
# get 10.96.0.0/16; nothing routes off the machine.
#
# Usage: tests/cluster/up.sh           build (or reuse) the binaries and the pause image, start the cluster
#        tests/cluster/up.sh --image   also build the product image from the Dockerfile and load it into the
#                                      node's containerd (as modelrollout:0.1.0, the manifests' image)
# Stop it with tests/cluster/down.sh. Needs root (network namespaces, iptables, mounts, cgroups).
# Env: MODELROLLOUT_NODE_DIR (default /tmp/modelrollout-node): state, logs, the admin kubeconfig.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
workdir="${MODELROLLOUT_NODE_DIR:-/tmp/modelrollout-node}"
log() { echo "up.sh: $*" >&2; }

image=0
case "${1:-}" in
    --image) image=1 ;;
    "") ;;
    *) log "error: unknown argument '$1' (expected --image or nothing)"; exit 2 ;;
esac
[[ $(id -u) == 0 ]] || { log "error: needs root (network namespaces, iptables, mounts)"; exit 1; }
for tool in ip iptables iptables-save mount umount; do
    command -v "$tool" >/dev/null || { log "error: '$tool' missing (Debian: apt-get install iproute2 iptables mount)"; exit 1; }
done
py="$repo/.venv/bin/python"
[[ -x "$py" ]] || py=python3

t0=$SECONDS
k8s_bin="$(bash "$here/build.sh" | tail -n 1)"
node_bin="$(bash "$here/build-node.sh" | tail -n 1)"
img_args=()
[[ $image == 1 ]] && img_args=(--product)
img_dir="$(MODELROLLOUT_NODE_BIN="$node_bin" bash "$here/build-images.sh" "${img_args[@]}" | tail -n 1)"
images="$img_dir/pause.tar"
[[ $image == 1 ]] && images+=":$img_dir/modelrollout.tar"
log "binaries and images ready in $((SECONDS - t0)) s"

serve_log="$workdir-serve.log"
cd "$repo"
# A state dir left by a run that was killed without down.sh holds a stale `ready` (and the old kubeconfig):
# waiting on it would hand the caller a dead apiserver. Refuse if its cluster still runs, else sweep it first.
if [[ -d "$workdir" ]]; then
    if [[ -f "$workdir/serve.pid" ]] && kill -0 "$(cat "$workdir/serve.pid")" 2>/dev/null; then
        log "error: a cluster is already running (pid $(cat "$workdir/serve.pid")); run tests/cluster/down.sh first"
        exit 1
    fi
    log "removing the leftovers of an earlier run in $workdir"
    "$py" -m tests.cluster.node down >&2
fi
# In its own session, holding none of this script's file descriptors (a caller reading our output gets EOF).
MODELROLLOUT_K8S_BIN="$k8s_bin" MODELROLLOUT_NODE_BIN="$node_bin" MODELROLLOUT_NODE_IMAGES="$images" \
    setsid "$py" -m tests.cluster.node serve >"$serve_log" 2>&1 </dev/null &
serve_pid=$!
disown
t1=$SECONDS
for _ in $(seq 1200); do
    [[ -f "$workdir/ready" ]] && break
    if [[ -f "$workdir/failed" ]] || ! kill -0 "$serve_pid" 2>/dev/null; then
        sleep 1
        [[ -f "$workdir/ready" ]] && break
        log "error: the cluster did not start; tail of $serve_log (component logs: $workdir-logs/):"
        tail -n 40 "$serve_log" >&2
        exit 1
    fi
    sleep 0.5
done
[[ -f "$workdir/ready" ]] || { log "error: not ready after 600 s; see $serve_log"; exit 1; }
log "cluster up in $((SECONDS - t1)) s (logs: $workdir/logs, $serve_log); stop it with tests/cluster/down.sh"
echo "export PATH=$k8s_bin:$repo/.venv/bin:\$PATH"
echo "export KUBECONFIG=$workdir/admin.kubeconfig"
