"""Policy-as-code with Cedar: load, validate, decide, explain.

``loader`` reads a directory of ``.cedar`` files into an immutable :class:`PolicyBundle`
(checked against ``schema``, annotations parsed by ``annotations``, errors as FILE:LINE);
``engine`` turns a :class:`~proctor.context.RequestContext` plus a risk assessment into a
:class:`Decision` (allow, deny or step_up, with determining policies, reasons, obligations
and the bundle's revision); ``cases`` runs YAML policy tests.
"""

from proctor.policy.engine import Decision, EngineConfig, PolicyEngine
from proctor.policy.loader import Policy, PolicyBundle, PolicyError, load_policies

__all__ = [
    "Decision",
    "EngineConfig",
    "Policy",
    "PolicyBundle",
    "PolicyEngine",
    "PolicyError",
    "load_policies",
]
