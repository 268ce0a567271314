"""Risk: an explained 0–100 score for every request.

``signals`` are small functions, each returning points and one line of evidence;
``freeman`` scores a session's features statistically (how unlike this user, how like the
population); ``baselines`` keeps what is normal per user and for everyone (SQLite), learned
only from allowed, successful activity; ``network`` labels addresses and finds their geo;
``engine`` puts them together: :class:`RiskEngine` ``.assess(ctx) -> Risk``.
"""

from proctor.risk.baselines import Baselines
from proctor.risk.engine import MODEL_VERSION, RiskEngine
from proctor.risk.network import GeoTable, NetworkClassifier
from proctor.risk.signals import RiskConfig

__all__ = [
    "MODEL_VERSION",
    "Baselines",
    "GeoTable",
    "NetworkClassifier",
    "RiskConfig",
    "RiskEngine",
]
