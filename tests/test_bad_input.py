"""The bad-input matrix: every way a run can be asked for wrongly ends in one line on stderr and exit
code 2, never a traceback, before anything is written (the runs directory stays empty) and never
at the cost of a stored score. Cases run in this process for speed; `test_cli_errors.py` checks the
same path in fresh processes."""

import json

import pytest

from placeholders import REAL_COMVG_CSV, comvg_root


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


COLORS = ["run", "--task", "colors", "--runs-dir", "runs"]

# (name, arguments after `vlbench`, files to write {name: text}, start of the message)
RUN_CASES = [
    ("unknown task", ["run", "--task", "colours", "--matcher", "random", "--runs-dir", "runs"], {}, "error: unknown task 'colours'. Did you mean 'colors'?"),
    ("unknown matcher", [*COLORS, "--matcher", "radnom"], {}, "error: unknown matcher 'radnom'. Did you mean 'random'?"),
    ("no task", ["run", "--matcher", "random", "--runs-dir", "runs"], {}, "error: no task given: pass --task or set 'task:' in --config"),
    ("task option out of range", [*COLORS, "--matcher", "random", "--config", "c.yaml"], {"c.yaml": "task_options: {n_examples: 0}\n"}, "error: task_options.n_examples: must be at least 1, got 0"),
    ("task option not allowed", ["run", "--task", "comvg", "--matcher", "random", "--runs-dir", "runs", "--config", "c.yaml"], {"c.yaml": "task_options: {neg_value: adjective}\n"}, "error: task_options.neg_value: 'adjective' is not allowed; choose one of 'subject', 'object', 'verb'"),
    ("task options not a mapping", [*COLORS, "--matcher", "random", "--config", "c.yaml"], {"c.yaml": "task_options: 3\n"}, "error: c.yaml.task_options: expected a mapping, got 3"),
    ("unknown task option", [*COLORS, "--matcher", "random", "--config", "c.yaml"], {"c.yaml": "task_options: {n_exemples: 3}\n"}, "error: task_options: unknown key 'n_exemples'. Did you mean 'n_examples'?"),
    ("mini world too small", ["run", "--task", "mini-comvg", "--matcher", "random", "--runs-dir", "runs", "--config", "c.yaml"], {"c.yaml": "task_options: {image_size: 8}\n"}, "error: task_options.image_size: must be at least 24 pixels"),
    ("negative crop padding", ["run", "--task", "refcocog", "--matcher", "random", "--runs-dir", "runs", "--config", "c.yaml"], {"c.yaml": "task_options: {crop_padding: -0.5}\n"}, "error: task_options.crop_padding: must be a number >= 0, got -0.5"),
    ("unknown matcher option", [*COLORS, "--matcher", "random", "--config", "c.yaml"], {"c.yaml": "matcher_options: {scale: 2}\n"}, "error: matcher_options: unknown key 'scale'. Known keys: none."),
    ("lse lambda", [*COLORS, "--matcher", "dsd", "--model", "mini", "--config", "c.yaml"], {"c.yaml": "matcher_options: {lse_lambda: -1}\n"}, "error: matcher_options.lse_lambda: must be a positive number, got -1.0"),
    ("noise level", [*COLORS, "--matcher", "dsd", "--model", "mini", "--config", "c.yaml"], {"c.yaml": "matcher_options: {noise_levels: [0.5, 1.5]}\n"}, "error: matcher_options.noise_levels: must be a non-empty list of values in (0, 1)"),
    ("layer spec", [*COLORS, "--matcher", "dsd", "--model", "mini", "--config", "c.yaml"], {"c.yaml": "matcher_options: {layers: first-3}\n"}, "error: matcher_options.layers: 'first-3' is not 'all', 'release', 'last-K'"),
    ("heads", [*COLORS, "--matcher", "dsd", "--model", "mini", "--config", "c.yaml"], {"c.yaml": "matcher_options: {heads: max}\n"}, "error: matcher_options.heads: 'max' is not allowed; choose one of"),
    ("unet batch", [*COLORS, "--matcher", "diffusion-itm", "--model", "mini", "--config", "c.yaml"], {"c.yaml": "matcher_options: {unet_batch: 0}\n"}, "error: matcher_options.unet_batch: must be at least 1, got 0"),
    ("sampling steps", [*COLORS, "--matcher", "dsd-release", "--model", "mini", "--config", "c.yaml"], {"c.yaml": "matcher_options: {sampling_steps: 0}\n"}, "error: matcher_options.sampling_steps: must be at least 1, got 0"),
    ("empty timesteps", [*COLORS, "--matcher", "diffusion-itm", "--model", "mini", "--config", "c.yaml"], {"c.yaml": "matcher_options: {timesteps: []}\n"}, "error: matcher_options.timesteps: must be a non-empty list of timesteps >= 0"),
    ("context length", [*COLORS, "--matcher", "cocoop", "--model", "mini", "--config", "c.yaml"], {"c.yaml": "matcher_options: {n_ctx: 0}\n"}, "error: matcher_options.n_ctx: must be at least 1, got 0"),
    ("negative epochs", [*COLORS, "--matcher", "clip-ft", "--model", "mini", "--shots", "5%", "--config", "c.yaml"], {"c.yaml": "train: {epochs: -3}\n"}, "error: train.epochs: must be at least 1, got -3"),
    ("zero batch", [*COLORS, "--matcher", "clip-ft", "--model", "mini", "--shots", "5%", "--config", "c.yaml"], {"c.yaml": "train: {batch_size: -1}\n"}, "error: train.batch_size: must be at least 1, got -1"),
    ("nan learning rate", [*COLORS, "--matcher", "clip-ft", "--model", "mini", "--shots", "5%", "--config", "c.yaml"], {"c.yaml": "train: {lr: .nan}\n"}, "error: train.lr: must be a positive number, got nan"),
    ("zero learning rate", [*COLORS, "--matcher", "clip-ft", "--model", "mini", "--shots", "5%", "--config", "c.yaml"], {"c.yaml": "train: {lr: 0}\n"}, "error: train.lr: must be a positive number, got 0.0"),
    ("negative weight decay", [*COLORS, "--matcher", "clip-ft", "--model", "mini", "--shots", "5%", "--config", "c.yaml"], {"c.yaml": "train: {weight_decay: -0.1}\n"}, "error: train.weight_decay: must be a number >= 0, got -0.1"),
    ("zero clip", [*COLORS, "--matcher", "clip-ft", "--model", "mini", "--shots", "5%", "--config", "c.yaml"], {"c.yaml": "train: {grad_clip: 0}\n"}, "error: train.grad_clip: must be a positive number or null, got 0.0"),
    ("momentum", [*COLORS, "--matcher", "cocoop", "--model", "mini", "--shots", "5%", "--config", "c.yaml"], {"c.yaml": "train: {momentum: 1.5}\n"}, "error: train.momentum: must be in [0, 1), got 1.5"),
    ("warm-up longer than training", [*COLORS, "--matcher", "cocoop", "--model", "mini", "--shots", "5%", "--config", "c.yaml"], {"c.yaml": "train: {warmup_epochs: 11, epochs: 10}\n"}, "error: train.warmup_epochs: must be between 0 and epochs (10), got 11"),
    ("unknown loss", [*COLORS, "--matcher", "clip-ft", "--model", "mini", "--shots", "5%", "--config", "c.yaml"], {"c.yaml": "train: {loss: mse}\n"}, "error: train.loss: 'mse' is not allowed; choose one of 'bce', 'ce', 'hinge'"),
    ("train without training", [*COLORS, "--matcher", "clip", "--model", "mini", "--config", "c.yaml"], {"c.yaml": "train: {epochs: 3}\n"}, "error: 'train:' options given, but matcher 'clip' does not train with --shots 0"),
    ("batch size", [*COLORS, "--matcher", "random", "--batch-size", "0"], {}, "error: --batch-size 0: must be at least 1"),
    ("limit", [*COLORS, "--matcher", "random", "--limit", "-3"], {}, "error: --limit -3: give at least 1 example, or leave it out for all"),
    ("flag value", [*COLORS, "--matcher", "random", "--on-bad-example", "ignore"], {}, "error: --on-bad-example ignore: 'ignore' is not allowed; choose one of 'error', 'skip'"),
    ("limit over the split", [*COLORS, "--matcher", "random", "--limit", "100000"], {}, "error: --limit 100000: seed 0's split of colors has "),
    ("seed twice", [*COLORS, "--matcher", "random", "--seed", "1", "--seed", "1"], {}, "error: seeds [1, 1]: each seed once"),
    ("negative seed", [*COLORS, "--matcher", "random", "--seed", "-1"], {}, "error: seeds [-1]: each seed is a whole number, 0 or more"),
    ("device name", [*COLORS, "--matcher", "random", "--device", "gpu"], {}, "error: --device gpu: choose auto, cpu, cuda or cuda:N"),
    ("shots fraction", [*COLORS, "--matcher", "random", "--shots", "1.5"], {}, "error: --shots 1.5: a fraction must be at least 0 and below 1 (got 1.5)"),
    ("shots negative", [*COLORS, "--matcher", "random", "--shots", "-5"], {}, "error: --shots -5: a count of shots cannot be negative"),
    ("shots words", [*COLORS, "--matcher", "random", "--shots", "many"], {}, "error: --shots 'many': give a fraction (0.05 or 5%) or a count (16)"),
    ("shots too many", [*COLORS, "--matcher", "random", "--shots", "500"], {}, "error: --shots 500: asks for 500 training examples but the evaluation pool has 200 examples; ask for at most 199"),
    ("split protocol", [*COLORS, "--matcher", "random", "--split", "random"], {}, "error: --split random: 'random' is not allowed; choose one of 'grouped', 'paper-release'"),
    ("attention without maps", [*COLORS, "--matcher", "clip", "--model", "mini", "--save-attention"], {}, "error: --save-attention: matcher 'clip' records no attention maps (those that do: dsd)"),
    ("model for a matcher without one", [*COLORS, "--matcher", "random", "--model", "mini"], {}, "error: --model mini: matcher 'random' takes no model"),
    ("data root for a task that makes its own data", ["run", "--task", "mini-comvg", "--matcher", "random", "--runs-dir", "runs", "--data-root", "."], {}, "error: --data-root .: task 'mini-comvg' makes its own data and reads no data root"),
    ("unknown config key", [*COLORS, "--matcher", "random", "--config", "c.yaml"], {"c.yaml": "sheds: [1]\n"}, "error: c.yaml: unknown key 'sheds'. Did you mean 'seeds'?"),
    ("config not YAML", [*COLORS, "--matcher", "random", "--config", "c.yaml"], {"c.yaml": "task: colors\nmatcher: [random\n"}, "error: c.yaml, line 3: not valid YAML"),
    ("config not a mapping", [*COLORS, "--matcher", "random", "--config", "c.yaml"], {"c.yaml": "- a\n- b\n"}, "error: c.yaml: expected a mapping of keys to values at the top level"),
    ("config missing", [*COLORS, "--matcher", "random", "--config", "missing.yaml"], {}, "error: cannot read config file missing.yaml: No such file or directory"),
    ("runs dir is a file", ["run", "--task", "colors", "--matcher", "random", "--runs-dir", "a-file"], {"a-file": "x"}, "error: --runs-dir a-file: "),
    ("runs dir read-only", ["run", "--task", "colors", "--matcher", "random", "--runs-dir", "/proc/vlbench-runs"], {}, "error: --runs-dir /proc/vlbench-runs: /proc is not writable"),
    ("no data root", ["run", "--task", "comvg", "--matcher", "random", "--runs-dir", "runs"], {}, "error: task 'comvg' needs its data: pass --data-root DIR, set VLBENCH_DATA, or set data_root in --config (in a suite: the task entry's data_root, under --data-dir)."),
    ("data root missing", ["run", "--task", "comvg", "--matcher", "random", "--runs-dir", "runs", "--data-root", "nowhere"], {}, "error: task 'comvg': data root nowhere does not exist."),
    ("data root is a file", ["run", "--task", "comvg", "--matcher", "random", "--runs-dir", "runs", "--data-root", "a-file"], {"a-file": "x"}, "error: task 'comvg': data root a-file is a file; pass the directory that holds the data."),
    ("paper-release with a train split", ["run", "--task", "mini-refcocog", "--matcher", "random", "--runs-dir", "runs", "--shots", "5%", "--split", "paper-release"], {}, "error: --split paper-release: task 'mini-refcocog' trains on its train pool with these options"),
    ("paper-release on ComVG", ["run", "--task", "mini-comvg", "--matcher", "random", "--runs-dir", "runs", "--shots", "5%", "--split", "paper-release"], {}, "error: --split paper-release: the released DSD code does not cut the evaluation rows of task 'mini-comvg'"),
    ("paper-release zero-shot", ["run", "--task", "mini-refcocog", "--matcher", "random", "--runs-dir", "runs", "--split", "paper-release", "--config", "run.yaml"], {"run.yaml": "task_options: {eval_split: all}\n"}, "error: --split paper-release: with --shots 0 nothing is cut off"),
]


@pytest.mark.parametrize(("args", "files", "message"), [case[1:] for case in RUN_CASES], ids=[case[0] for case in RUN_CASES])
def test_a_bad_run_is_one_line_and_writes_nothing(tmp_path, vlbench_here, args, files, message):
    for name, text in files.items():
        write(tmp_path / name, text)
    code, out, err = vlbench_here(*args, cwd=tmp_path)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message), err
    assert "Traceback" not in out + err
    assert not (tmp_path / "runs").exists(), "nothing is written before the configuration is valid"


def comvg_with(tmp_path, rows=(1, 2, 3, 4), encoding="utf-8", bom=False, replace=None):
    """A ComVG data root with the header and `rows` of the real csv, written in `encoding`."""
    lines = REAL_COMVG_CSV.read_text(encoding="utf-8").splitlines()
    text = "\n".join([lines[0], *(lines[number] for number in rows)]) + "\n"
    if replace:
        text = text.replace(*replace)
    source = tmp_path / "source.csv"
    source.write_bytes(("\ufeff" if bom else "").encode("utf-8") + text.encode(encoding))
    return comvg_root(tmp_path / "comvg", source)


def test_a_csv_in_another_encoding_says_which_to_convert_from(tmp_path, vlbench_here):
    comvg_with(tmp_path, replace=("a man is sitting", "a café man is sitting"), encoding="latin-1")
    # The first rows of the real csv are "a man is sitting …" sentences.
    code, _, err = vlbench_here("run", "--task", "comvg", "--matcher", "random", "--data-root", "comvg", "--runs-dir", "runs", cwd=tmp_path)
    line = err.strip().splitlines()[-1]
    assert code == 2 and line.startswith("error: comvg/compositional_visual_genome.csv: not UTF-8 text (byte 0xe9 at offset"), err
    assert "it looks like Windows-1252 (Latin-1): convert it to UTF-8, e.g. `iconv -f cp1252 -t utf-8 compositional_visual_genome.csv > converted.csv`" in line
    assert not (tmp_path / "runs").exists()


def test_a_csv_with_a_byte_order_mark_is_read(tmp_path, vlbench_here):
    comvg_with(tmp_path, bom=True)
    code, out, err = vlbench_here("run", "--task", "comvg", "--matcher", "random", "--data-root", "comvg", "--runs-dir", "runs", cwd=tmp_path)
    assert code == 0, err
    record = json.loads(next((tmp_path / "runs").rglob("results.json")).read_text())
    assert record["n"] == 4


def test_an_unwritable_feature_cache_warns_and_scores_without_it(tmp_path, vlbench_here, monkeypatch):
    from pathlib import Path

    monkeypatch.setattr("vlbench.feature_cache.cache_root", lambda: Path("/proc/vlbench-features"))
    code, out, err = vlbench_here("run", "--task", "mini-comvg", "--matcher", "clip", "--model", "mini", "--limit", "5", "--runs-dir", "runs", cwd=tmp_path)
    assert code == 0, err
    assert "warning: the feature cache cannot be written" in err
    assert json.loads(next((tmp_path / "runs").rglob("results.json")).read_text())["n"] == 5


def test_report_and_board_destinations_are_checked_before_writing(tmp_path, vlbench_here):
    code, _, _ = vlbench_here("run", "--task", "colors", "--matcher", "random", "--runs-dir", "runs", "--limit", "5", cwd=tmp_path)
    assert code == 0
    write(tmp_path / "a-file", "x")
    write(tmp_path / "someone" / "notes.txt", "mine")
    cases = [
        (["report", "runs", "--html", "a-file", "--no-plots"], "error: --html a-file: "),
        (["report", "runs", "--html", "someone", "--no-plots"], "error: --html someone: the directory holds other files"),
        (["report", "runs", "--html", "/proc/vlbench-site", "--no-plots"], "error: --html /proc/vlbench-site: /proc is not writable"),
        (["leaderboard", "runs", "--out", "someone"], "error: --out someone: is a directory; give a file name"),
        (["leaderboard", "runs", "--out", "/proc/board.md"], "error: --out /proc/board.md: /proc is not writable"),
        (["score", "nowhere"], "error: nowhere/results.json not found: is nowhere a vlbench run directory?"),
        (["leaderboard", "nowhere"], "error: nowhere: no such run directory or results file"),
    ]
    for args, message in cases:
        code, out, err = vlbench_here(*args, cwd=tmp_path)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith(message), (args, err)
    assert (tmp_path / "someone").exists() and sorted(path.name for path in (tmp_path / "someone").iterdir()) == ["notes.txt"]
