"""`python -m tests.cluster`: start a throwaway control plane and keep it up until Ctrl-C, for poking at
it by hand with the printed KUBECONFIG (the same plane the tests get)."""
from __future__ import annotations

import signal
import sys

from tests.cluster.plane import ControlPlane


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run stop() on SIGTERM too, not only Ctrl-C
    with ControlPlane() as plane:
        print(f"server:  {plane.server}")
        print(f"kubectl: {plane.kubectl}")
        print(f"logs:    {plane.workdir}")
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
