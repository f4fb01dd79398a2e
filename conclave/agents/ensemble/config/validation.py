"""Validating config files and folders: one verdict per file, never an exception for a bad config."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .loading import ConfigFileError, load_file
from .plan import plan

__all__ = ["EnsembleCheck", "validate_file", "validate_paths"]


class EnsembleCheck(BaseModel):
    """The verdict on one config file (what ``conclave ensemble validate`` prints a line for)."""

    model_config = ConfigDict(extra="forbid")

    path: str
    ok: bool
    error: str | None = None
    name: str | None = None
    warnings: list[str] = Field(default_factory=list)
    layers: int = 0
    total_model_calls: int = Field(default=0, description="Completions drawn; Archon makes each a call in turn.")
    requests: int = Field(default=0, description="Requests Conclave sends (same-prompt samples share one).")
    critical_path_rounds: int = Field(default=0, description="Calls one after another when layers run concurrently.")


def validate_file(path: str | Path) -> EnsembleCheck:
    """Load one file and report; never raises for a bad config."""
    p = Path(path)
    try:
        cfg, warnings = load_file(p)
    except ConfigFileError as e:
        return EnsembleCheck(path=str(p), ok=False, error=str(e))
    pl = plan(cfg)
    return EnsembleCheck(
        path=str(p),
        ok=True,
        name=cfg.name,
        warnings=warnings,
        layers=len(cfg.layers),
        total_model_calls=pl.total_model_calls,
        requests=pl.total_requests,
        critical_path_rounds=pl.critical_path_rounds,
    )


_SUFFIXES = (".json", ".yaml", ".yml")


def validate_paths(paths: Iterable[str | Path]) -> list[EnsembleCheck]:
    """Validate files and folders (recursed for ``.json``/``.yaml``/``.yml``), in sorted order."""
    out: list[EnsembleCheck] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in _SUFFIXES)
            out += [validate_file(f) for f in files]
        elif p.exists():
            out.append(validate_file(p))
        else:
            out.append(EnsembleCheck(path=str(p), ok=False, error=f"{p}: no such file or folder"))
    return out
