"""A real one-node Kubernetes cluster on this machine: the ControlPlane (etcd + kube-apiserver) of plane.py plus
kube-controller-manager, kube-scheduler, containerd + runc, kubelet, kube-proxy (iptables), the CNI bridge and
CoreDNS. Pods run in network namespaces the cluster creates, on a bridge that exists only on this machine.

    python -m tests.cluster.node serve    start everything, write WORKDIR/ready, run until SIGTERM, then stop
    python -m tests.cluster.node down     stop a running `serve` and remove whatever is left (idempotent)

`tests/cluster/up.sh` and `down.sh` wrap these. Addresses (nothing here routes anywhere else):

    bridge mrbr0 10.244.0.1/24   node IP, kubelet, CoreDNS (cluster DNS), apiserver's advertised address
    pods 10.244.0.0/24 (cluster CIDR 10.244.0.0/16), Services 10.96.0.0/16 (10.96.0.1 = the apiserver)

Pods get routes to 10.244.0.0/16 and 10.96.0.0/16 only (no default route), the host routes both ranges to the
bridge, and a FORWARD rule drops anything from the bridge to another interface, so pod traffic never leaves
the machine. CoreDNS serves only cluster.local and the reverse zone; it forwards nothing.
"""
from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.cluster.plane import ControlPlane, ControlPlaneError, _spawn, _tail, _terminate

WORKDIR = Path(os.environ.get("MODELROLLOUT_NODE_DIR", "/tmp/modelrollout-node"))
LOGS_KEPT = WORKDIR.with_name(WORKDIR.name + "-logs")  # the last run's logs, kept by `down`
BRIDGE = "mrbr0"
NODE_IP = "10.244.0.1"
POD_SUBNET = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
API_SERVICE_IP = "10.96.0.1"
NODE_NAME = "modelrollout-node"
PAUSE_IMAGE = "modelrollout.test/pause:3.10"
FORWARD_RULE = ["FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-m", "comment", "--comment",
                "modelrollout-node: pod traffic stays on this machine", "-j", "DROP"]
SYSCTLS = {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}


def log(msg: str) -> None:
    print(f"node: {msg}", file=sys.stderr, flush=True)


def run(*cmd: str, check: bool = True, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise ControlPlaneError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}{proc.stdout.strip()}")
    return proc


def dns_query(name: str, server: str = NODE_IP, timeout: float = 2.0) -> list[str]:
    """A records for `name` from `server`:53 (empty list on NXDOMAIN/no answer); raises OSError on no reply."""
    qid = random.randrange(1 << 16)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, (server, 53))
        data = s.recv(4096)
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", data[:12])
    if flags & 0xF:
        return []
    pos = 12
    for _ in range(qd):
        while data[pos]:
            pos += data[pos] + 1
        pos += 5
    out = []
    for _ in range(an):
        if data[pos] & 0xC0 == 0xC0:
            pos += 2
        else:
            while data[pos]:
                pos += data[pos] + 1
            pos += 1
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        if rtype == 1:
            out.append(socket.inet_ntoa(data[pos:pos + 4]))
        pos += rdlen
    return out


class Node:
    def __init__(self, k8s_bin: Path, node_bin: Path, images: list[Path]):
        self.k8s_bin, self.bin, self.images = Path(k8s_bin), Path(node_bin), images
        self.w = WORKDIR
        self.plane: ControlPlane | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.kubeconfig = self.w / "admin.kubeconfig"
        self.env = dict(os.environ, PATH=f"{self.bin}:{self.k8s_bin}:{os.environ.get('PATH', '')}")
        for var in ("NO_PROXY", "no_proxy"):
            self.env[var] = ",".join(filter(None, [self.env.get(var), "127.0.0.1", "localhost", NODE_IP,
                                                   CLUSTER_CIDR, SERVICE_CIDR, ".svc", ".cluster.local"]))

    # ---- start -----------------------------------------------------------------------------------

    def start(self) -> None:
        t0 = time.monotonic()
        self.w.mkdir(parents=True, exist_ok=True)
        (self.w / "logs").mkdir(exist_ok=True)
        self._network_up()
        self._control_plane()
        self._containerd()
        self._controllers()
        self._kubelet()
        self._kube_proxy()
        self._coredns()
        self._wait_cluster()
        log(f"cluster ready in {time.monotonic() - t0:.0f}s")

    def _network_up(self) -> None:
        orig = {}
        for key, value in SYSCTLS.items():
            path = Path("/proc/sys") / key.replace(".", "/")
            orig[key] = path.read_text().strip()
            path.write_text(value)
        (self.w / "sysctl.orig.json").write_text(json.dumps(orig))
        if run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
            run("ip", "link", "add", BRIDGE, "type", "bridge")
        run("ip", "addr", "replace", f"{NODE_IP}/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        # Both ranges go to the bridge: without kube-proxy's rules a Service address answers nowhere
        # instead of following the default route off the machine.
        run("ip", "route", "replace", CLUSTER_CIDR, "dev", BRIDGE, "src", NODE_IP)
        run("ip", "route", "replace", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP)
        if run("iptables", "-C", *FORWARD_RULE, check=False).returncode != 0:
            run("iptables", "-I", *FORWARD_RULE)
        (self.w / "resolv.conf").write_text("# pods resolve cluster names only\n")

    def _control_plane(self) -> None:
        self.plane = ControlPlane(self.k8s_bin, startup_timeout=120, extra_sans=(NODE_IP, API_SERVICE_IP),
                                  extra_apiserver_args=lambda pki: [
                                      "--bind-address=0.0.0.0", f"--advertise-address={NODE_IP}",
                                      f"--service-cluster-ip-range={SERVICE_CIDR}",
                                      "--disable-admission-plugins=", "--endpoint-reconciler-type=lease",
                                      f"--kubelet-client-certificate={pki / 'admin.crt'}",
                                      f"--kubelet-client-key={pki / 'admin.key'}",
                                      "--kubelet-preferred-address-types=InternalIP"])
        self.plane.start()
        shutil.copy(self.plane.kubeconfig, self.kubeconfig)
        self.pki = self.plane.workdir / "pki"
        (self.w / "plane.workdir").write_text(str(self.plane.workdir))
        log(f"control plane up at {self.plane.server}")

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        proc = _spawn(cmd, self.w / "logs" / f"{name}.log")  # dies with this process (PR_SET_PDEATHSIG)
        self.procs[name] = proc
        (self.w / f"{name}.pid").write_text(str(proc.pid))
        return proc

    def _wait(self, name: str, ok, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        err = "not yet"
        while time.monotonic() < deadline:
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise ControlPlaneError(f"{name} exited {proc.returncode}; log:\n{_tail(self.w / 'logs' / f'{name}.log')}")
            try:
                if ok():
                    return
            except Exception as e:  # noqa: BLE001 - keep polling until the deadline, report the last error
                err = repr(e)
            time.sleep(0.5)
        raise ControlPlaneError(f"{name} not ready after {timeout:.0f}s ({err}); log:\n"
                                f"{_tail(self.w / 'logs' / f'{name}.log')}")

    def ctr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return run(str(self.bin / "ctr"), "--address", str(self.w / "containerd.sock"), "-n", "k8s.io", *args,
                   timeout=timeout)

    def _containerd(self) -> None:
        c = self.w / "containerd"
        cni = self.w / "cni" / "net.d"
        cni.mkdir(parents=True, exist_ok=True)
        (cni / "10-modelrollout.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "modelrollout",
            "plugins": [{"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                         "hairpinMode": True,
                         "ipam": {"type": "host-local", "subnet": POD_SUBNET, "rangeStart": "10.244.0.10",
                                  "gateway": NODE_IP, "dataDir": str(self.w / "cni" / "ipam"),
                                  "routes": [{"dst": CLUSTER_CIDR}, {"dst": SERVICE_CIDR}]}},
                        {"type": "loopback"}]}, indent=1))
        cfg = f"""version = 3
root = "{c}/root"
state = "{c}/state"
[grpc]
  address = "{self.w}/containerd.sock"
[ttrpc]
  address = "{self.w}/containerd.sock.ttrpc"
[plugins.'io.containerd.internal.v1.opt']
  path = "{c}/opt"
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # this machine's root lacks CAP_SYS_RESOURCE: runc cannot lower the sandbox's oom_score_adj otherwise
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{self.bin}/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{self.bin}/cni"]
    conf_dir = "{cni}"
[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"
"""
        (self.w / "containerd.toml").write_text(cfg)
        self._spawn("containerd", [str(self.bin / "containerd"), "--config", str(self.w / "containerd.toml")])
        self._wait("containerd", lambda: self.ctr("version", timeout=10).returncode == 0, 60)
        for tar in self.images:
            t = time.monotonic()
            self.ctr("images", "import", str(tar))
            log(f"imported {tar.name} into containerd in {time.monotonic() - t:.0f}s")

    def _controllers(self) -> None:
        pki, kc = self.pki, str(self.kubeconfig)
        self._spawn("kube-controller-manager", [
            str(self.bin / "kube-controller-manager"), f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=true", f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cluster-cidr={CLUSTER_CIDR}", "--allocate-node-cidrs=false", "--controllers=*"])
        self._spawn("kube-scheduler", [
            str(self.bin / "kube-scheduler"), f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}", "--bind-address=127.0.0.1", "--secure-port=0",
            "--leader-elect=false"])

    def _kubelet(self) -> None:
        k = self.w / "kubelet"
        k.mkdir(exist_ok=True)
        sock = f"unix://{self.w}/containerd.sock"
        cfg = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "failCgroupV1": False, "cgroupDriver": "cgroupfs", "failSwapOn": False,
            "containerRuntimeEndpoint": sock, "imageServiceEndpoint": sock,
            "address": NODE_IP, "port": 10250, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.pki / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "clusterDomain": "cluster.local", "clusterDNS": [NODE_IP],
            "resolvConf": str(self.w / "resolv.conf"),
            "podLogsDir": str(self.w / "pod-logs"),
            # the images were imported, not pulled: never garbage-collect them
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
            "serializeImagePulls": False, "maxPods": 60,
        }
        (self.w / "kubelet.yaml").write_text(yaml.safe_dump(cfg))
        self._spawn("kubelet", [
            str(self.bin / "kubelet"), f"--config={self.w / 'kubelet.yaml'}", f"--kubeconfig={self.kubeconfig}",
            f"--root-dir={k}", f"--cert-dir={k / 'pki'}", f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}", "--v=1"])

        def node_ready() -> bool:
            out = self.kubectl("get", "node", NODE_NAME, "-o",
                               "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
            return out.stdout.strip() == "True"
        self._wait("kubelet", node_ready, 180)
        log("kubelet: node Ready")

    def _kube_proxy(self) -> None:
        cfg = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
               "mode": "iptables", "clusterCIDR": CLUSTER_CIDR, "hostnameOverride": NODE_NAME,
               "clientConnection": {"kubeconfig": str(self.kubeconfig)},
               "healthzBindAddress": "127.0.0.1:10256",
               "metricsBindAddress": "127.0.0.1:10249", "nodePortAddresses": [f"{NODE_IP}/32"],
               "conntrack": {"maxPerCore": 0}}
        (self.w / "kube-proxy.yaml").write_text(yaml.safe_dump(cfg))
        self._spawn("kube-proxy", [str(self.bin / "kube-proxy"), f"--config={self.w / 'kube-proxy.yaml'}"])

        def synced() -> bool:
            return "KUBE-SERVICES" in run("iptables-save", "-t", "nat").stdout and \
                API_SERVICE_IP in run("iptables-save", "-t", "nat").stdout
        self._wait("kube-proxy", synced, 90)

    def _coredns(self) -> None:
        corefile = f"""cluster.local:53 in-addr.arpa:53 {{
    bind {NODE_IP}
    errors
    kubernetes cluster.local in-addr.arpa {{
        kubeconfig {self.kubeconfig} modelrollout-test
        pods insecure
        ttl 5
    }}
    cache 5
}}
"""
        (self.w / "Corefile").write_text(corefile)
        self._spawn("coredns", [str(self.bin / "coredns"), "-conf", str(self.w / "Corefile")])
        self._wait("coredns", lambda: dns_query("kubernetes.default.svc.cluster.local") == [API_SERVICE_IP], 60)

    def _wait_cluster(self) -> None:
        def sa_ready() -> bool:
            return self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0 \
                and self.kubectl("get", "configmap", "kube-root-ca.crt", "-n", "default", check=False).returncode == 0
        self._wait("kube-controller-manager", sa_ready, 90)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(self.env, KUBECONFIG=str(self.kubeconfig), KUBECACHEDIR=str(self.w / "kube-cache"))
        return run(str(self.k8s_bin / "kubectl"), *args, check=check, env=env, timeout=60)

    # ---- stop ------------------------------------------------------------------------------------

    def stop(self) -> None:
        for name in ("kubelet", "kube-scheduler", "kube-controller-manager"):
            _terminate(self.procs.pop(name, None))
        teardown_pods(self.bin)
        for name in ("kube-proxy", "coredns", "containerd"):
            _terminate(self.procs.pop(name, None))
        if self.plane is not None:
            self.plane.stop()
        sweep(self.bin)


# ---- teardown (also used by `down` when the supervisor is gone) ------------------------------------------

def teardown_pods(bin_dir: Path | None) -> None:
    """Stop and remove every pod sandbox through the CRI, so CNI DEL removes the veths, netns and IPs."""
    sock = WORKDIR / "containerd.sock"
    if bin_dir is None or not sock.exists():
        return
    crictl = [str(bin_dir / "crictl"), "--runtime-endpoint", f"unix://{sock}", "--timeout", "30s"]
    try:
        subprocess.run([*crictl, "rmp", "--all", "--force"], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        log(f"crictl rmp: {e}")


def _pids_mentioning(text: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if text.encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _with_descendants(pids: set[int]) -> set[int]:
    """`pids` and all their descendants (containers are children of their containerd shim)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = set(), list(pids)
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(children.get(p, []))
    return out


def _in_kubepods() -> set[int]:
    """Processes in the cgroups kubelet made for pods (orphaned containers after a crash)."""
    out = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if "/kubepods" in (d / "cgroup").read_text():
                    out.add(int(d.name))
            except OSError:
                pass
    return out


def sweep(bin_dir: Path | None) -> None:
    """Remove what a crashed or stopped cluster may have left: processes of ours, mounts, netns, iptables
    rules, cgroups, the bridge, sysctls. Idempotent; does nothing that is not ours."""
    # processes started by us: their command line names our workdir or our binaries' dir (shims included)
    marks = [str(WORKDIR)] + ([str(bin_dir)] if bin_dir else [])
    pids = sorted(_with_descendants({p for m in marks for p in _pids_mentioning(m)}) | _in_kubepods())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            time.sleep(0.2)
    # mounts under the workdir (pod volumes, rootfs, shm, netns bind mounts), deepest first
    plane_dir = (WORKDIR / "plane.workdir").read_text().strip() if (WORKDIR / "plane.workdir").exists() else None
    for _ in range(3):
        mounts = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mp = line.split()[4].replace("\\040", " ")
            if mp.startswith(str(WORKDIR) + "/") or (plane_dir and mp.startswith(plane_dir + "/")):
                mounts.append(mp)
        if not mounts:
            break
        for mp in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], capture_output=True)
    # network namespaces named by containerd's CNI (only used if it put them under /run/netns)
    netns = Path("/run/netns")
    if netns.is_dir():
        for ns in netns.iterdir():
            if ns.name.startswith("cni-") and (WORKDIR / "containerd").exists():
                subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)
    # iptables: kube-proxy's chains, then our FORWARD rule
    if bin_dir and (bin_dir / "kube-proxy").exists():
        subprocess.run([str(bin_dir / "kube-proxy"), "--cleanup", "--proxy-mode=iptables"], capture_output=True,
                       timeout=60)
    while subprocess.run(["iptables", "-D", *FORWARD_RULE], capture_output=True).returncode == 0:
        pass
    _remove_chains()
    # the bridge and the host routes through it
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
    # cgroups kubelet created (cgroupfs driver): kubepods.* under every v1 hierarchy, leaves first
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for top in ("kubepods", "kubepods.slice"):
            root = hierarchy / top
            if root.is_dir():
                for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                                reverse=True):
                    try:
                        d.rmdir()
                    except OSError:
                        pass
                try:
                    root.rmdir()
                except OSError:
                    pass
    orig = WORKDIR / "sysctl.orig.json"
    if orig.exists():
        for key, value in json.loads(orig.read_text()).items():
            try:
                (Path("/proc/sys") / key.replace(".", "/")).write_text(value)
            except OSError:
                pass
    # keep the last run's logs for a post-mortem, then delete the rest
    if (WORKDIR / "logs").is_dir():
        shutil.rmtree(LOGS_KEPT, ignore_errors=True)
        shutil.copytree(WORKDIR / "logs", LOGS_KEPT)
        for extra in ("failed",):
            if (WORKDIR / extra).exists():
                shutil.copy(WORKDIR / extra, LOGS_KEPT / extra)
        if plane_dir:
            for f in Path(plane_dir).glob("*.log"):
                shutil.copy(f, LOGS_KEPT / f.name)
    if plane_dir:
        shutil.rmtree(plane_dir, ignore_errors=True)
    shutil.rmtree(WORKDIR, ignore_errors=True)


def _remove_chains() -> None:
    """Every KUBE-* chain (kubelet's KUBE-FIREWALL/-CANARY/-IPTABLES-HINT, whatever kube-proxy --cleanup
    left) and CNI-* chain (none with ipMasq off; this is for a crash in between), with the rules jumping to
    them, in every table, IPv4 and IPv6. `serve` refuses to start when such chains exist before it, so
    these are ours."""
    for save, tool in (("iptables-save", "iptables"), ("ip6tables-save", "ip6tables")):
        for table in ("filter", "nat", "mangle", "raw"):
            dump = subprocess.run([save, "-t", table], capture_output=True, text=True).stdout
            chains = [l[1:].split()[0] for l in dump.splitlines() if l.startswith((":KUBE-", ":CNI-"))]
            if not chains:
                continue
            for line in dump.splitlines():
                if line.startswith("-A ") and any(f"-j {c}" in line for c in chains) \
                        and line.split()[1] not in chains:
                    subprocess.run([tool, "-t", table, "-D", *shlex.split(line[3:])], capture_output=True)
            for c in chains:
                subprocess.run([tool, "-t", table, "-F", c], capture_output=True)
            for c in chains:
                subprocess.run([tool, "-t", table, "-X", c], capture_output=True)


def _foreign_chains() -> list[str]:
    dump = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    dump += subprocess.run(["ip6tables-save"], capture_output=True, text=True).stdout
    return [l for l in dump.splitlines() if "KUBE-" in l or "CNI-" in l or "modelrollout-node" in l]


def leftovers() -> list[str]:
    """What `down` should have removed but is still there (empty when clean)."""
    out = []
    procs = _with_descendants(set(_pids_mentioning(str(WORKDIR)))) | _in_kubepods()
    if procs:
        out.append(f"processes: {sorted(procs)}")
    mounts = [l.split()[4] for l in Path("/proc/self/mountinfo").read_text().splitlines()
              if l.split()[4].startswith(str(WORKDIR))]
    if mounts:
        out.append(f"mounts: {mounts[:5]}")
    if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode == 0:
        out.append(f"link {BRIDGE}")
    ours = _foreign_chains()
    if ours:
        out.append(f"iptables: {ours[:5]}")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    if any(n.startswith("cni-") for n in netns):
        out.append(f"netns: {netns}")
    return out


# ---- entry points ----------------------------------------------------------------------------------------

def serve() -> int:
    k8s_bin = Path(os.environ["MODELROLLOUT_K8S_BIN"])
    node_bin = Path(os.environ["MODELROLLOUT_NODE_BIN"])
    images = [Path(p) for p in os.environ.get("MODELROLLOUT_NODE_IMAGES", "").split(":") if p]
    if (WORKDIR / "serve.pid").exists():
        pid = int((WORKDIR / "serve.pid").read_text())
        if Path(f"/proc/{pid}").exists():
            log(f"a cluster is already running (pid {pid}); run tests/cluster/down.sh first")
            return 1
    if WORKDIR.exists():
        sweep(node_bin)  # leftovers of a crashed run
    elif _foreign_chains():
        log("iptables has KUBE-/CNI- rules that are not this cluster's (another Kubernetes node on this "
            f"machine?); refusing to start: {_foreign_chains()[:5]}")
        return 1
    os.environ["PATH"] = f"{node_bin}:{k8s_bin}:{os.environ.get('PATH', '')}"  # containerd finds its shim
    WORKDIR.mkdir(parents=True)
    (WORKDIR / "serve.pid").write_text(str(os.getpid()))
    (WORKDIR / "node-bin").write_text(str(node_bin))
    node = Node(k8s_bin, node_bin, images)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    try:
        node.start()
        (WORKDIR / "ready").write_text(f"export KUBECONFIG={node.kubeconfig}\n")
        while not stopping:
            for name, proc in node.procs.items():
                if proc.poll() is not None:
                    log(f"{name} exited with {proc.returncode}; see {WORKDIR}/logs/{name}.log")
                    stopping.append(1)
            time.sleep(0.5)
    except BaseException as e:
        (WORKDIR / "failed").write_text(str(e))
        log(f"start failed: {e}")
        node.stop()
        return 1
    log("stopping")
    node.stop()
    return 0


def down() -> int:
    if not WORKDIR.exists():
        log(f"nothing to stop ({WORKDIR} does not exist)")
        return 0
    pid_file = WORKDIR / "serve.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 120
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.3)
        except ProcessLookupError:
            pass
    node_bin = Path((WORKDIR / "node-bin").read_text()) if (WORKDIR / "node-bin").exists() else None
    teardown_pods(node_bin)
    sweep(node_bin)
    left = leftovers()
    if left:
        log("left behind: " + "; ".join(left))
        return 1
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "serve":
        raise SystemExit(serve())
    if cmd == "down":
        raise SystemExit(down())
    print(__doc__, file=sys.stderr)
    raise SystemExit(2)
