"""Ensemble configs: the Archon corpus, our superset, errors that name their path; the parsers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conclave.agents.ensemble import (
    ConfigFileError,
    EnsembleConfig,
    builtin_names,
    load_named,
    parse_config,
    plan,
    validate_paths,
)
from conclave.agents.ensemble import parsing as P

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "compat" / "archon-configs"
if not CORPUS.is_dir():  # the worktree sits next to /work/shared
    CORPUS = Path("/work/shared/compat/archon-configs")
BROKEN = {"archon-1-110bFuser-1-110bRanker5-8-70BM.json", "archon-1-110bFuser-1-110bRanker3-8-70BM3S.json"}


@pytest.fixture(scope="module")
def checks() -> list:
    if not CORPUS.is_dir():
        pytest.skip("the Archon compat corpus is not available")
    return validate_paths([CORPUS])


def test_all_292_archon_configs_load_except_the_two_broken(checks: list) -> None:
    assert len(checks) == 292
    bad = {Path(c.path).name: c for c in checks if not c.ok}
    assert set(bad) == BROKEN
    assert "line 71, column 40" in bad["archon-1-110bFuser-1-110bRanker5-8-70BM.json"].error
    assert "line 26, column 40" in bad["archon-1-110bFuser-1-110bRanker3-8-70BM3S.json"].error
    for c in bad.values():
        assert c.path in c.error and "invalid JSON" in c.error
    ok = [c for c in checks if c.ok]
    assert len(ok) == 290
    assert all(c.layers >= 1 and c.total_model_calls >= 1 and c.critical_path_rounds >= 1 for c in ok)


def test_misspelt_length_control_is_read_with_a_warning(checks: list) -> None:
    warned = [c for c in checks if any("length_contorl" in w for w in c.warnings)]
    assert warned
    path = next(Path(c.path) for c in warned)
    cfg, warnings = parse_config(json.loads(path.read_text()), str(path))
    fusers = [c for layer in cfg.layers for c in layer.components if c.type == "fuser"]
    assert any(f.length_control for f in fusers)
    assert all("read as length_control" in w for w in warnings if "length_contorl" in w)


def test_old_models_branches_layers_and_single_component_layers_load() -> None:
    cfg, _ = parse_config(
        {
            "name": "old",
            "layers": [
                {"branches": 1, "models": [{"type": "generator", "model": "a", "model_type": "Together_API"}]},
                {"type": "fuser", "model": "b", "model_type": "OpenAI_API", "temperature": 0.7, "max_tokens": 10},
            ],
        }
    )
    assert [len(layer.components) for layer in cfg.layers] == [1, 1]
    assert cfg.layers[0].branches == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tmperature": 1}, "layers[1][0].tmperature: unknown field"),
        ({"type": "fuzer"}, "layers[1][0].type: Input should be"),
        ({"model_type": "Foo_API"}, "unknown provider model_type 'Foo_API'"),
        ({"samples": 0}, "layers[1][0].samples"),
        ({"first_finish": True}, "first_finish applies to generators only"),
        ({"answer_pattern": "("}, "answer_pattern is not a valid regex"),
    ],
)
def test_errors_name_the_path(change: dict, expected: str) -> None:
    fuser = {"type": "fuser", "model": "m", "model_type": "Together_API", **change}
    raw = {"name": "x", "layers": [[{"type": "generator", "model": "m"}], [fuser]]}
    with pytest.raises(ConfigFileError) as e:
        parse_config(raw, "f.json")
    assert expected in str(e.value)
    assert str(e.value).startswith("f.json: ")


def test_not_an_object_and_no_layers_are_errors() -> None:
    with pytest.raises(ConfigFileError, match="JSON object"):
        parse_config([1, 2], "f.json")
    with pytest.raises(ConfigFileError, match="at least one layer"):
        parse_config({"name": "x", "layers": []})
    with pytest.raises(ConfigFileError, match="custom components"):
        parse_config({"name": "x", "layers": [[{"type": "generator", "model": "m"}]], "custom": True})


def test_validate_paths_reports_missing_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\nlayers:\n  - - type: generator\n      model: m\n        bad: [\n")
    (tmp_path / "b.yml").write_text("name: b\nlayers:\n  - - {type: generator, model: m, samples: 3}\n")
    out = validate_paths([tmp_path, tmp_path / "nope.json"])
    by = {Path(c.path).name: c for c in out}
    assert not by["a.yaml"].ok and "invalid YAML at line" in (by["a.yaml"].error or "")
    assert by["b.yml"].ok and by["b.yml"].total_model_calls == 3
    assert not by["nope.json"].ok and "no such file" in (by["nope.json"].error or "")


def test_plan_counts_calls_and_rounds() -> None:
    cfg = EnsembleConfig.model_validate(
        {
            "name": "p",
            "layers": [
                [{"type": "generator", "model": "a", "samples": 4}, {"type": "generator", "model": "a", "samples": 2}],
                [{"type": "critic", "model": "a"}],
                [{"type": "ranker", "model": "a", "top_k": 3}],
                [{"type": "verifier", "model": "a"}],
                [{"type": "fuser", "model": "a"}],
            ],
        }
    )
    p = plan(cfg)
    assert [lp.completions for lp in p.layers] == [6, 1, 1, 6, 1]
    assert [lp.requests for lp in p.layers] == [1, 1, 1, 6, 1]  # six samples of one prompt: one request
    assert [lp.rounds for lp in p.layers] == [1, 1, 1, 2, 1]
    assert p.critical_path_rounds == 6 and p.total_model_calls == 15


def test_strategy_expands_to_layers() -> None:
    bon = EnsembleConfig.model_validate(
        {"name": "b", "strategy": {"type": "best_of_n", "model": "m", "n": 8, "selector": "verifier"}}
    )
    assert [c.type for layer in bon.layers for c in layer.components] == ["generator", "verifier"]
    sc = EnsembleConfig.model_validate({"name": "s", "strategy": {"type": "self_consistency", "model": "m"}})
    assert sc.layers[1].components[0].type == "voter"
    ff = EnsembleConfig.model_validate({"name": "f", "strategy": {"type": "first_finish", "model": "m", "n": 3}})
    assert ff.layers[0].components[0].first_finish and len(ff.layers) == 1
    with pytest.raises(ValueError, match="either layers or strategy"):
        EnsembleConfig.model_validate(
            {
                "name": "x",
                "layers": [[{"type": "generator", "model": "m"}]],
                "strategy": {"type": "first_finish", "model": "m"},
            }
        )


def test_builtins_load_and_names_are_confined(tmp_path: Path) -> None:
    assert {"moa-lite-local", "best-of-n-local", "self-consistency-local"} <= set(builtin_names())
    moa = load_named("ensemble/moa-lite-local")
    assert [c.type for layer in moa.layers for c in layer.components] == ["generator", "critic", "fuser"]
    (tmp_path / "moa-lite-local.json").write_text(
        json.dumps({"name": "mine", "layers": [[{"type": "generator", "model": "x"}]]})
    )
    assert load_named("moa-lite-local", [tmp_path]).name == "mine"  # an extra folder overrides a built-in
    for bad in ("../etc/passwd", "a/b", ""):
        with pytest.raises(ConfigFileError, match="invalid ensemble name"):
            load_named(bad)
    with pytest.raises(ConfigFileError, match="unknown ensemble 'nope'; known ensembles: .*moa-lite-local"):
        load_named("nope")


# -- parsers ---------------------------------------------------------------------------------------


def test_parse_critiques() -> None:
    text = "[1]\nStrengths: a\nWeaknesses: b\n\n[2] Strengths: c. Weaknesses: d"
    assert P.parse_critiques(text, 2) == ["Strengths: a\nWeaknesses: b", "Strengths: c. Weaknesses: d"]
    with pytest.raises(P.ParseError, match=r"\[2\]"):
        P.parse_critiques("[1] Strengths: fine", 2)


@pytest.mark.parametrize(
    ("text", "order", "complete"),
    [
        ("Answer: [2] > [1] > [3]\nbecause", [1, 0, 2], True),
        ("I think\n[3] > [1]", [2, 0, 1], False),
        ("Answer: [2-3] > [1]", [1, 2, 0], True),
        ("Answer: [2] > [2] > [9] > [1]", [1, 0, 2], False),
    ],
)
def test_parse_ranking(text: str, order: list[int], complete: bool) -> None:
    assert P.parse_ranking(text, 3) == (order, complete)


def test_parse_ranking_refuses_nonsense() -> None:
    with pytest.raises(P.ParseError):
        P.parse_ranking("they are all good", 3)


def test_parse_verdict_and_tests() -> None:
    assert P.parse_verdict("fine. [Correct]") is True
    assert P.parse_verdict("no. [incorrect]") is False
    for bad in ("maybe", "[Correct] or [Incorrect]"):
        with pytest.raises(P.ParseError):
            P.parse_verdict(bad)
    assert P.parse_unit_tests("['a', 'b', 'c']", 2) == ["a", "b"]
    assert P.parse_unit_tests("- one\n- two", None) == ["one", "two"]
    with pytest.raises(P.ParseError):
        P.parse_unit_tests("nothing here", None)
    text = "reasoning about Unit Test #1: ...\nUnit Test #1: [Passed]\nUnit Test #2: [Failed]"
    assert P.parse_test_verdicts(text, 2) == [True, False]
    with pytest.raises(P.ParseError, match="#2"):
        P.parse_test_verdicts("Unit Test #1: [Passed]", 2)


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("so \\boxed{1,000}", "1000"),
        ("The answer is 42.", "42"),
        ("Answer: Paris", "paris"),
        ("we get 3 then 7.0", "7"),
        ("No idea", "no idea"),
    ],
)
def test_extract_answer(text: str, answer: str) -> None:
    assert P.extract_answer(text) == answer


def test_majority_tie_goes_to_first_seen() -> None:
    assert P.majority(["b", "a", "a", "b", "c"]) == ("b", 2)
    assert P.extract_answer("id=17 x", r"id=(\d+)") == "17"
