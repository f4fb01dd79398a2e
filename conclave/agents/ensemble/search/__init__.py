"""Architecture search (Archon's ITAS): find a good ensemble for a task from a small dev set.

One module a job: ``space`` (the layer choices and a point of them, ``Arch``, as an ensemble
config), ``proposer`` (uniform draws, then a Gaussian process with expected improvement, in
numpy), ``scorer`` (exact match, a Python checker or an LLM judge), ``results`` (the records, the
best and the Pareto front), ``driver`` (``architecture_search``: propose, evaluate as a durable step,
stop) and ``kind`` (the ``ensemble_search`` run kind).
"""

from .driver import architecture_search
from .kind import KIND, SearchOptions
from .proposer import Proposer
from .results import CandidateResult, FrontPoint, SearchReport, cost_of, pareto_front
from .scorer import ScorerSpec
from .space import Arch, SearchSpace

__all__ = [
    "KIND",
    "Arch",
    "CandidateResult",
    "FrontPoint",
    "Proposer",
    "ScorerSpec",
    "SearchOptions",
    "SearchReport",
    "SearchSpace",
    "architecture_search",
    "cost_of",
    "pareto_front",
]
