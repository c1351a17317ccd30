"""The ModelRollout API's names, in one place: group, version, plural, kind, short name, the annotations
the controller reads, condition types, phases and verdicts.

The CRD generator (`modelrollout.plugin.crd`), the spec parser, the state machine, the controller, the
Kubernetes list/watch (`kubeio`), the router's routing, the kubectl plugin and the local runtime all take
these from here rather than spelling them; `docs/contracts.md` ("ModelRollout resource") describes the
resource.
"""
from __future__ import annotations

from enum import Enum

GROUP = "modelrollout.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelRollout"
PLURAL = "modelrollouts"
SINGULAR = "modelrollout"
SHORT_NAME = "mro"
CRD_NAME = f"{PLURAL}.{GROUP}"

COMMAND_ANNOTATION = f"{GROUP}/command"
"""A manual command for the controller: `{"verb": "promote", "full": false, "id": "…"}`; each id runs once."""


class Condition(str, Enum):
    """Condition types the controller sets in `status.conditions`, in the order they are listed."""
    PROGRESSING = "Progressing"
    ANALYZING = "Analyzing"
    PAUSED = "Paused"
    COMPLETED = "Completed"
    DEGRADED = "Degraded"
    INVALID_SPEC = "InvalidSpec"


class Phase(str, Enum):
    PENDING = "Pending"
    VERIFYING = "Verifying"
    """The golden step: both versions answer the golden set; no user traffic reaches the candidate."""
    SHADOWING = "Shadowing"
    PROGRESSING = "Progressing"
    INTERLEAVING = "Interleaving"
    PAUSED = "Paused"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"
    STABLE = "Stable"
    """Steady state: the spec names no candidate, or its candidate is the stable; 100% to the stable."""

    @property
    def is_terminal(self) -> bool:
        """No step runs and nothing is analysed; only a new candidate revision (or a command) moves on."""
        return self in (Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED, Phase.STABLE)

    @property
    def is_active(self) -> bool:
        """Running a step: traffic is shifting and analysis may advance it."""
        return self in (Phase.VERIFYING, Phase.SHADOWING, Phase.PROGRESSING, Phase.INTERLEAVING)


class Verdict(str, Enum):
    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"

    @property
    def severity(self) -> int:
        return {"Pass": 0, "Inconclusive": 1, "Fail": 2}[self.value]

    @staticmethod
    def worst(verdicts) -> "Verdict":
        """Fail beats Inconclusive beats Pass; no verdicts at all is Inconclusive (no data never passes)."""
        vs = list(verdicts)
        return max(vs, key=lambda v: v.severity) if vs else Verdict.INCONCLUSIVE
