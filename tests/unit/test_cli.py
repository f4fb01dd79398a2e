"""The CLI as a package of command modules, and its output when piped."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conclave.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = ROOT / "conclave" / "agents" / "ensemble" / "builtin"


def _leaves(
    p: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, p)]
    return [leaf for a in subs for name, sp in a.choices.items() for leaf in _leaves(sp, (*path, name))]


def test_every_command_module_registers_commands_that_each_name_their_function() -> None:
    assert all(callable(getattr(m, "register", None)) for m in COMMANDS)
    leaves = dict(_leaves(build_parser()))
    assert {
        ("up",),
        ("submit",),
        ("runs", "ls"),
        ("workspace", "pull"),
        ("keys", "revoke"),
        ("ensemble", "validate"),
    } <= leaves.keys()
    for path, parser in leaves.items():
        assert callable(parser.get_default("fn")), " ".join(path)


def test_piped_ensemble_validate_keeps_each_long_path_on_one_line(tmp_path: Path) -> None:
    # Deep enough that the lines pass 80 columns; brackets in a name are text, not markup.
    folder = tmp_path / "ensembles[v2]" / ("a-rather-long-folder-name-for-configs-" * 3) / "nested"
    folder.mkdir(parents=True)
    good = folder / "moa-lite-local-with-a-long-file-name.json"
    shutil.copy(BUILTIN / "moa-lite-local.json", good)
    bad = folder / "broken-config-with-a-long-file-name.json"
    bad.write_text("{not json")
    p = subprocess.run(
        [sys.executable, "-m", "conclave.cli", "ensemble", "validate", str(good), str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80"},
        cwd=ROOT,
    )
    assert p.returncode == 2, p.stderr
    lines = p.stdout.splitlines()
    assert len(str(good)) > 120
    assert any(line.startswith("ok ") and str(good) in line for line in lines), p.stdout
    assert any(line.startswith("fail ") and str(bad) in line for line in lines), p.stdout
    assert lines[-1] == "1 valid, 1 invalid"
