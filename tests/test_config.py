from dataclasses import dataclass
from typing import Literal

import pytest

from vlbench.config import load_run_config
from vlbench.errors import VlbenchError
from vlbench.options import build


@dataclass
class Example:
    heads: Literal["mean", "dynamic"] = "mean"
    lam: float = 1.0
    layers: list[int] | None = None


def test_build_converts_and_validates():
    assert build(Example, {"lam": 2, "layers": [1, 2]}, "opts") == Example("mean", 2.0, [1, 2])
    with pytest.raises(VlbenchError, match=r"opts: unknown key 'lamda'. Did you mean 'lam'\? Known keys: heads, lam, layers"):
        build(Example, {"lamda": 2}, "opts")
    with pytest.raises(VlbenchError, match=r"opts.heads: 'max' is not allowed; choose one of 'mean', 'dynamic'"):
        build(Example, {"heads": "max"}, "opts")
    with pytest.raises(VlbenchError, match=r"opts.lam: expected float"):
        build(Example, {"lam": "big"}, "opts")


@dataclass
class TypeCheckedOnly:
    weights: "Unimported | None" = None  # noqa: F821 - named only under TYPE_CHECKING, as with `from __future__ import annotations`


def test_options_whose_annotations_cannot_be_resolved_name_the_class_and_the_fix():
    with pytest.raises(VlbenchError, match=r"^opts: the annotations of test_config\.TypeCheckedOnly cannot be resolved \(name 'Unimported' is not defined\): .* not only under TYPE_CHECKING$"):
        build(TypeCheckedOnly, {}, "opts")


def test_cli_overrides_yaml_and_environment_gives_data_root(tmp_path, monkeypatch):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("task: colors\nmatcher: random\nseeds: [1, 2]\nbatch_size: 4\ndata_root: /from/yaml\n")
    monkeypatch.setenv("VLBENCH_DATA", "/from/env")
    config = load_run_config(config_file, {"batch_size": 8, "seeds": []})
    assert (config.seeds, config.batch_size, config.data_root) == ([1, 2], 8, "/from/env")
    assert load_run_config(config_file, {"data_root": "/from/flag"}).data_root == "/from/flag"


def test_a_data_root_from_the_environment_is_named_as_such_when_it_is_missing(tmp_path, monkeypatch, vlbench_here):
    """VLBENCH_DATA overrides a config file's data_root: an error about it says where it came from."""
    (tmp_path / "run.yaml").write_text(f"data_root: {tmp_path}\n")
    monkeypatch.setenv("VLBENCH_DATA", str(tmp_path / "stale"))
    code, _, err = vlbench_here("run", "--task", "comvg", "--matcher", "random", "--config", "run.yaml", cwd=tmp_path)
    assert code == 2 and f"error: task 'comvg': data root {tmp_path / 'stale'} (from VLBENCH_DATA, which --data-root overrides and which overrides data_root in --config) does not exist." in err, err


def test_yaml_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: colors\nmatcher: [random\n")
    with pytest.raises(VlbenchError, match=r"bad.yaml, line 3: not valid YAML"):
        load_run_config(bad, {})
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("task: colors\nmatcher: random\nsheds: 3\n")
    with pytest.raises(VlbenchError, match=r"unknown key 'sheds'. Did you mean 'seeds'\?"):
        load_run_config(unknown, {})


@pytest.mark.parametrize(("matcher", "default"), [("clip", "ViT-B-16:openai"), ("cocoop", "ViT-B-16:openai"), ("dsd", "stabilityai/stable-diffusion-2-1-base")])
def test_a_run_naming_its_matcher_s_default_model_is_the_run_naming_none(tmp_path, matcher, default):
    """One configuration, one run directory and one board row, however the model was asked for."""
    from vlbench.runner import prepare, run_path

    prepared = [prepare(load_run_config(None, {"task": "mini-comvg", "matcher": matcher, "runs_dir": str(tmp_path), **model})) for model in ({}, {"model": default})]
    assert run_path(prepared[0], 0) == run_path(prepared[1], 0) and prepared[0].config.model == default
    assert prepare(load_run_config(None, {"task": "mini-comvg", "matcher": "random", "runs_dir": str(tmp_path)})).config.model is None
