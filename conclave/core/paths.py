"""Where Conclave keeps local state: ``$CONCLAVE_HOME``, else ``~/.conclave``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_home"]


def default_home() -> Path:
    return Path(os.environ.get("CONCLAVE_HOME", Path.home() / ".conclave")).expanduser()
