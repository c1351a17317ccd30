"""The data plane: split, mirror or interleave prediction requests between model versions and record outcomes.

Run it with `modelrollout router --config FILE --port P` (`router.server.main`), or embed it:
`create_app(source, settings)` returns an ASGI app serving the rollouts a `RoutingSource` yields
(`FileSource`, `StaticSource`, or `router.kube_source.KubeSource`). Rollouts with `spec.service` are also
served in transparent mode (`router.transparent`): a request whose Host names their Service, any path.
"""
from router.app import create_app
from router.recorder import Recorder
from router.routing import Routing, choose, pick, sticky_bucket
from router.settings import RouterSettings
from router.source import FileSource, RoutingSource, StaticSource

__all__ = ["create_app", "RouterSettings", "RoutingSource", "FileSource", "StaticSource", "Routing",
           "sticky_bucket", "choose", "pick", "Recorder"]
