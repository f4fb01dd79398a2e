"""Archon-style layered ensembles and test-time strategies.

Public surface: configs (``EnsembleConfig``, ``load_config``, ``load_named``, ``validate_paths``),
execution (``Executor``, ``run_ensemble``, ``ensemble_chat``, ``answer_with_ensemble``), repeated
sampling with a coverage report (``repeated_sampling``) and checkers (``Problem``,
``register_checker``). The run kinds live in ``conclave.agents.ensemble.kind`` (``ensemble``) and
``conclave.agents.ensemble.search`` (``ensemble_search``, with ``architecture_search``) and are
imported by the controller only when needed.
"""

from .answer import answer_with_ensemble, flatten_for_ensemble
from .components import Candidate, EnsembleState
from .config import (
    ComponentSpec,
    ConfigFileError,
    EnsembleCheck,
    EnsembleConfig,
    LayerSpec,
    StrategySpec,
    load_config,
    load_file,
    parse_config,
    plan,
    validate_file,
    validate_paths,
)
from .coverage import CoverageReport, CurvePoint, ProblemResult, pass_at_k, repeated_sampling
from .drafting import draft_with_ensemble
from .executor import EnsembleError, EnsembleResult, Executor, LayerResult, ModelResolver, run_ensemble
from .library import builtin_names, load_named, resolve_ensemble
from .scoring import Checker, CheckerError, Problem, checker_names, exact_match, register_checker
from .serving import ensemble_chat

__all__ = [
    "draft_with_ensemble",
    "Candidate",
    "Checker",
    "CheckerError",
    "ComponentSpec",
    "ConfigFileError",
    "CoverageReport",
    "CurvePoint",
    "EnsembleCheck",
    "EnsembleConfig",
    "EnsembleError",
    "EnsembleResult",
    "EnsembleState",
    "Executor",
    "LayerResult",
    "LayerSpec",
    "ModelResolver",
    "Problem",
    "ProblemResult",
    "StrategySpec",
    "answer_with_ensemble",
    "builtin_names",
    "checker_names",
    "ensemble_chat",
    "exact_match",
    "flatten_for_ensemble",
    "load_config",
    "load_file",
    "load_named",
    "parse_config",
    "pass_at_k",
    "plan",
    "register_checker",
    "repeated_sampling",
    "resolve_ensemble",
    "run_ensemble",
    "validate_file",
    "validate_paths",
]
