"""Named ensembles: the built-in configs shipped with the package and those in extra folders.

A name is a file stem (``moa-lite-local`` → ``moa-lite-local.json``/``.yaml``/``.yml``). Extra
folders (``ensembles_dir`` in settings) are searched first, so a deployment can override a built-in.
Names are confined to plain file names: ``../x`` or ``a/b`` never reach outside the folders.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from .config import ConfigFileError, EnsembleConfig, load_config, parse_config

__all__ = ["builtin_names", "configure_dirs", "configured_dirs", "load_named", "resolve_ensemble"]

#: Extra folders of this deployment (``Settings.ensembles_dir``), set once at start-up.
_EXTRA_DIRS: list[Path] = []


def configure_dirs(dirs: Iterable[str | Path | None]) -> None:
    """Set the deployment's extra ensemble folders (searched before the built-ins)."""
    _EXTRA_DIRS[:] = [Path(d) for d in dirs if d]


def configured_dirs() -> list[Path]:
    return list(_EXTRA_DIRS)


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_SUFFIXES = (".json", ".yaml", ".yml")


def _builtin_dir() -> Path:
    return Path(str(resources.files("conclave.agents.ensemble").joinpath("builtin")))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in _builtin_dir().iterdir() if p.suffix in _SUFFIXES)


def load_named(name: str, extra_dirs: Iterable[str | Path | None] = ()) -> EnsembleConfig:
    """The ensemble called ``name`` (``ensemble/`` prefix allowed) from ``extra_dirs``, then the
    built-ins. An unknown name is an error listing the known ones."""
    bare = name.removeprefix("ensemble/")
    if not _NAME.match(bare):
        raise ConfigFileError(f"invalid ensemble name {name!r}: use letters, digits, '-', '_' or '.'")
    dirs = [Path(d) for d in extra_dirs if d] + [_builtin_dir()]
    known: set[str] = set()
    for d in dirs:
        if not d.is_dir():
            continue
        for suffix in _SUFFIXES:
            path = d / f"{bare}{suffix}"
            if path.is_file():
                return load_config(path)
        known.update(p.stem for p in d.iterdir() if p.suffix in _SUFFIXES)
    raise ConfigFileError(f"unknown ensemble {bare!r}; known ensembles: {', '.join(sorted(known)) or 'none'}")


def resolve_ensemble(
    ensemble: str | dict[str, Any] | EnsembleConfig, extra_dirs: Iterable[str | Path | None] = ()
) -> EnsembleConfig:
    """A config from a name, an inline dict (validated) or a config object."""
    if isinstance(ensemble, EnsembleConfig):
        return ensemble
    if isinstance(ensemble, dict):
        return parse_config(ensemble, "inline ensemble")[0]
    return load_named(ensemble, extra_dirs)
