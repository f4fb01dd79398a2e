"""Ensemble configurations: Archon's JSON format as published, and Conclave's validated superset.

One module a job: ``spec`` (the schema: components, layers, strategies, the config), ``loading``
(files and dicts → a validated config, errors naming their path), ``plan`` (calls and rounds a config
makes, before it runs) and ``validation`` (a verdict per file, for ``conclave ensemble validate``).
"""

from .loading import ConfigFileError, format_errors, load_config, load_file, parse_config
from .plan import MAX_N, LayerPlan, Plan, plan
from .spec import (
    CALL_FREE,
    COMPONENT_TYPES,
    PROVIDERS,
    ComponentSpec,
    ComponentType,
    EnsembleConfig,
    LayerBudget,
    LayerSpec,
    StrategySpec,
)
from .validation import EnsembleCheck, validate_file, validate_paths

__all__ = [
    "CALL_FREE",
    "COMPONENT_TYPES",
    "MAX_N",
    "PROVIDERS",
    "ComponentSpec",
    "ComponentType",
    "ConfigFileError",
    "EnsembleCheck",
    "EnsembleConfig",
    "LayerBudget",
    "LayerPlan",
    "LayerSpec",
    "Plan",
    "StrategySpec",
    "format_errors",
    "load_config",
    "load_file",
    "parse_config",
    "plan",
    "validate_file",
    "validate_paths",
]
