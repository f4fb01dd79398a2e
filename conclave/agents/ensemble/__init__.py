"""Archon-style layered ensembles and test-time strategies.

Public surface: configs (``EnsembleConfig``, ``load_config``, ``load_named``, ``validate_paths``),
execution (``Executor``, ``run_ensemble``, ``ensemble_chat``). The run kind lives in
``conclave.agents.ensemble.kind`` and is imported by the controller only when needed.
"""

from .components import Candidate, EnsembleState, Tally
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
from .executor import EnsembleError, EnsembleResult, Executor, LayerResult, ModelResolver, run_ensemble
from .library import builtin_names, load_named, resolve_ensemble
from .drafting import draft_with_ensemble
from .serving import ensemble_chat

__all__ = [
    "draft_with_ensemble",
    "Candidate",
    "ComponentSpec",
    "ConfigFileError",
    "EnsembleCheck",
    "EnsembleConfig",
    "EnsembleError",
    "EnsembleResult",
    "EnsembleState",
    "Executor",
    "LayerResult",
    "LayerSpec",
    "ModelResolver",
    "StrategySpec",
    "Tally",
    "builtin_names",
    "ensemble_chat",
    "load_config",
    "load_file",
    "load_named",
    "parse_config",
    "plan",
    "resolve_ensemble",
    "run_ensemble",
    "validate_file",
    "validate_paths",
]
