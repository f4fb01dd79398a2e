"""One python-docs corpus for the whole test run (and the next ones on this machine).

Building it embeds a few thousand passages (about a minute on two free cores), so the tests that need
the real corpus share this cache instead of building it each in its own tmp_path. The cache is keyed
by content (the corpus file by format version and Python version, the vectors by text hash), so a
stale one is never used; the pydoc fallback is pinned so the tests read the same corpus on every
machine, with or without python3-doc.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from conclave.tools import SearchSettings

SHARED_CORPORA = Path(tempfile.gettempdir()) / "conclave-test-corpora"


def shared_python_docs() -> SearchSettings:
    return SearchSettings(cache_dir=SHARED_CORPORA, python_docs="pydoc")
