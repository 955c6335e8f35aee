"""Bad input: one line on stderr, exit code 2, no traceback (unless --debug)."""

import pytest

from conftest import vlbench_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--task", "colours", "--matcher", "random"], "error: unknown task 'colours'. Did you mean 'colors'? Known tasks: colors"),
        (["run", "--task", "colors", "--matcher", "radnom"], "error: unknown matcher 'radnom'. Did you mean 'random'?"),
        (["run", "--task", "tiny-files", "--matcher", "random"], "error: task 'tiny-files' needs its data: pass --data-root DIR, set VLBENCH_DATA, or set data_root in --config. Expected layout: <root>/pairs.csv"),
        (["run", "--task", "tiny-files", "--matcher", "random", "--data-root", "nowhere"], "error: task 'tiny-files': data root nowhere does not exist."),
        (["run", "--task", "colors", "--matcher", "random", "--shots", "1.5"], "error: --shots 1.5: a fraction must be at least 0 and below 1 (got 1.5)"),
        (["run", "--task", "colors", "--matcher", "random", "--shots", "500"], "error: --shots 500: asks for 500 training examples but the evaluation pool has 200 examples; ask for at most 199"),
        (["run", "--task", "colors", "--matcher", "random", "--limit", "0"], "error: --limit 0: give at least 1 example, or leave it out for all"),
        (["run", "--task", "colors", "--matcher", "random", "--model", "mini"], "error: --model mini: matcher 'random' takes no model"),
        (["run", "--task", "colors", "--matcher", "random", "--config", "bad-key.yaml"], "error: bad-key.yaml: unknown key 'sheds'. Did you mean 'seeds'?"),
        (["run", "--task", "colors", "--matcher", "random", "--config", "bad-option.yaml"], "error: matcher_options: unknown key 'scale'. Known keys: none."),
        (["score", "not-a-run"], "error: not-a-run/results.json not found: is not-a-run a vlbench run directory?"),
        (["leaderboard", "empty"], "error: no results.json found under empty; run `vlbench run` first"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    (tmp_path / "bad-key.yaml").write_text("sheds: [1]\n")
    (tmp_path / "bad-option.yaml").write_text("matcher_options: {scale: 2}\n")
    (tmp_path / "empty").mkdir()
    result = vlbench_cli(*args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_debug_shows_the_traceback(tmp_path):
    result = vlbench_cli("--debug", "run", "--task", "colours", "--matcher", "random", cwd=tmp_path, check=False)
    assert result.returncode != 0 and "Traceback" in result.stderr


def tiny_files_root(root, images=("p.png", "n.png")):
    from PIL import Image

    (root / "pairs.csv").write_text("id,text,pos_image,neg_image\nfirst,a red square,p.png,n.png\n")
    (root / "images").mkdir()
    for name in images:
        Image.new("RGB", (4, 4)).save(root / "images" / name)


def test_a_missing_image_names_the_example_and_the_file(tmp_path):
    tiny_files_root(tmp_path, images=("p.png",))
    result = vlbench_cli("run", "--task", "tiny-files", "--matcher", "random", "--data-root", ".", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == "error: example 'first': image 'n.png' not found at images/n.png"
    assert "Traceback" not in result.stderr


def test_nan_scores_stop_the_run_and_name_the_example(tmp_path):
    (tmp_path / "nan.yaml").write_text("task_options: {n_examples: 6}\nmatcher_options: {nan_key: 3-0}\n")
    result = vlbench_cli("run", "--task", "colors", "--matcher", "counting", "--config", "nan.yaml", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: matcher 'counting' returned a NaN or infinite score for example 'colors-3'")
    assert "Traceback" not in result.stderr
