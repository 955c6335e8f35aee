"""The Python API: the README's example runs as written, and `vlbench.evaluate` gives the metrics the
CLI gives for the same configuration."""

import json
import re

import pytest

import vlbench
from conftest import TESTS, vlbench_cli


def test_the_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    readme = (TESTS.parent / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (Python API)", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(list((tmp_path / "runs").rglob("results.json"))) == 2
    assert float(printed[0].split()[0]) > 0.75  # the mini CLIP on mini ComVG (50 examples; chance 0.5)


def test_the_readme_s_example_run_yaml_is_a_valid_configuration(tmp_path):
    """Built-in names and valid options only, checked as `vlbench run --config` checks them before it runs."""
    from vlbench.config import load_run_config
    from vlbench.runner import prepare

    readme = (TESTS.parent / "README.md").read_text()
    block = readme.split("Example `run.yaml`:", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "run.yaml").write_text(block)
    prepared = prepare(load_run_config(tmp_path / "run.yaml", {"runs_dir": str(tmp_path / "runs")}))
    assert prepared.train is not None and prepared.config.seeds == [0, 1, 2] and prepared.task.options.world_seed == 7


def test_evaluate_gives_the_cli_metrics(tmp_path):
    options = {"task_options": {"n_examples": 40}, "train": {"epochs": 3}}
    evaluation = vlbench.evaluate(task="colors", matcher="clip-ft", model="mini", shots="10%", seeds=[0, 1], runs_dir=tmp_path / "api", **options)
    (tmp_path / "run.yaml").write_text(json.dumps(options))
    vlbench_cli("run", "--task", "colors", "--matcher", "clip-ft", "--model", "mini", "--shots", "10%", "--seed", "0", "--seed", "1", "--config", "run.yaml", "--runs-dir", "cli", cwd=tmp_path)
    for seed in (0, 1):
        (cli,) = (tmp_path / "cli").rglob(f"seed-{seed}/results.json")
        record = json.loads(cli.read_text())
        assert evaluation.metrics[seed] == record["metrics"]
        assert evaluation.run_dirs[seed].relative_to(tmp_path / "api") == cli.parent.relative_to(tmp_path / "cli")
    mean, half_width = evaluation.mean("accuracy")
    assert mean == pytest.approx(sum(run.metrics["accuracy"] for run in evaluation.runs) / 2) and half_width is not None


def test_evaluate_refuses_an_unknown_key(tmp_path):
    with pytest.raises(vlbench.errors.VlbenchError, match="vlbench.evaluate: unknown key 'sheds'. Did you mean 'seeds'?"):
        vlbench.evaluate(task="colors", matcher="random", sheds=[1])
