"""`kubeio.watch.ListWatcher` on a real kube-apiserver: the LIST and the WATCH stream it reads raw (orjson,
one decode per event) report every created, modified and deleted ModelRollout, with the version before
and after; a watch the apiserver refuses is an error the `run` loop relists after."""
from __future__ import annotations

import threading

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubeio.watch import ListWatcher, _Gone
from policies.api import GROUP, PLURAL, VERSION

from .conftest import wait_for

pytestmark = pytest.mark.usefixtures("mro_crd")


def doc(name: str, namespace: str) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelRollout",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"baseline": {"version": "v1", "url": "http://b:1"}, "candidate": {"version": "v2", "url": "http://c:1"},
                     "strategy": {"steps": [{"canary": {"weight": 10, "duration": "1h"}}]}}}


def test_list_then_watch_reports_adds_status_writes_and_deletes(k8s_api, namespace):
    co = client.CustomObjectsApi(k8s_api)
    co.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, doc("before", namespace))
    seen: list[tuple[str, str | None, str | None]] = []
    lock = threading.Lock()

    def on_event(key, old, new):
        with lock:
            seen.append((key, (old or {}).get("metadata", {}).get("resourceVersion"),
                         (new or {}).get("metadata", {}).get("resourceVersion")))

    w = ListWatcher(k8s_api, namespace, on_event=on_event, resync=300, watch_timeout=5)
    stop = threading.Event()
    t = threading.Thread(target=w.run, args=(stop,), daemon=True)
    t.start()
    try:
        wait_for(w.synced.is_set, 20, "the first LIST")
        listed = w.get(f"{namespace}/before")
        assert listed["kind"] == "ModelRollout" and listed["spec"]["candidate"]["version"] == "v2"
        created = co.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, doc("after", namespace))
        wait_for(lambda: w.get(f"{namespace}/after") is not None, 20, "the ADDED event")
        body = dict(created, status={"phase": "Progressing", "message": "ünïcode ✓"})
        written = co.replace_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, "after", body)
        rv = written["metadata"]["resourceVersion"]
        wait_for(lambda: (w.get(f"{namespace}/after") or {}).get("metadata", {}).get("resourceVersion") == rv, 20,
                 "the MODIFIED event")
        assert w.get(f"{namespace}/after")["status"] == {"phase": "Progressing", "message": "ünïcode ✓"}
        co.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "before")
        wait_for(lambda: w.get(f"{namespace}/before") is None, 20, "the DELETED event")
        with lock:
            keys = [(k, old is not None, new is not None) for k, old, new in seen]
        assert keys == [(f"{namespace}/before", False, True), (f"{namespace}/after", False, True),
                        (f"{namespace}/after", True, True), (f"{namespace}/before", True, False)]
        assert seen[2][1] == created["metadata"]["resourceVersion"] and seen[2][2] == rv
    finally:
        stop.set()
        w.stop()
        t.join(15)
    assert not t.is_alive()


def test_a_watch_from_an_unknown_resource_version_is_an_api_error(k8s_api, namespace):
    w = ListWatcher(k8s_api, namespace, resync=300, watch_timeout=5)
    with pytest.raises((ApiException, _Gone)):
        w._watch_until(threading.Event(), "not-a-version", float("inf"))  # noqa: SLF001 - the watch itself
