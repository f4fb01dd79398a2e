"""What every Conclave process that validates or runs tasks sets up once from its settings: the run kinds
(built-in and the deployment's own), the tool registry, and the extra ensemble folders."""

from __future__ import annotations

from conclave.agents.ensemble.library import configure_dirs
from conclave.agents.kinds import register_builtin_kinds
from conclave.config import Settings
from conclave.core.kinds import register_kind_modules
from conclave.tools import configure as configure_tools

__all__ = ["configure_runtime"]


def configure_runtime(settings: Settings) -> None:
    register_builtin_kinds()
    register_kind_modules(settings.kinds)
    configure_tools(settings.tools)
    configure_dirs([settings.ensembles_dir])
