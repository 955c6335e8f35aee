import pytest

from vlbench.config import Shots
from vlbench.errors import VlbenchError
from vlbench.splits import evaluation_ids, make_split
from vlbench.types import Example, ImageRef


def pair_examples(n_images: int = 40) -> list[Example]:
    """Two-image examples over a shared pool of images, like ComVG."""
    examples = []
    for index in range(n_images * 3):
        first, second = index % n_images, (index * 7 + 3) % n_images
        if first == second:
            continue
        images = (ImageRef(f"img{first}", render=object), ImageRef(f"img{second}", render=object))
        examples.append(Example(f"ex{index}", images, ("text",), ((0, 0),), {}))
    return examples


def test_grouped_split_never_shares_an_image():
    pool = pair_examples()
    split = make_split("t", pool, None, Shots.parse("0.05"), seed=1, protocol="grouped")
    by_id = {example.id: example for example in pool}
    train_images = {key for i in split.train_ids for key in by_id[i].image_keys}
    eval_images = {key for i in split.eval_ids for key in by_id[i].image_keys}
    assert len(split.train_ids) == round(0.05 * len(pool))
    assert not train_images & eval_images
    assert not set(split.train_ids) & set(split.eval_ids)
    assert len(split.train_ids) + len(split.eval_ids) + split.dropped == len(pool)
    assert split.dropped > 0


def test_same_seed_same_split_other_seed_other_split():
    pool = pair_examples()
    first = make_split("t", pool, None, Shots.parse("6"), seed=0, protocol="grouped")
    again = make_split("t", pool, None, Shots.parse("6"), seed=0, protocol="grouped")
    other = make_split("t", pool, None, Shots.parse("6"), seed=1, protocol="grouped")
    assert first == again and first.sha256 == again.sha256
    assert first.train_ids != other.train_ids


def test_official_train_split_is_sampled_and_evaluation_kept_whole():
    pool = pair_examples()
    train_pool = [Example(f"train{i}", (ImageRef(f"t{i}", render=object),), ("x",), ((0, 0),), {}) for i in range(50)]
    split = make_split("t", pool, train_pool, Shots.parse("10%"), seed=3, protocol="grouped")
    assert len(split.train_ids) == 5 and set(split.train_ids) <= {e.id for e in train_pool}
    assert split.eval_ids == tuple(e.id for e in pool)


def test_paper_release_takes_the_first_rows():
    pool = pair_examples()
    split = make_split("t", pool, None, Shots.parse("3"), seed=0, protocol="paper-release")
    assert split.train_ids == tuple(e.id for e in pool[:3])
    assert split.eval_ids == tuple(e.id for e in pool[3:])


def test_zero_shots_evaluates_everything():
    pool = pair_examples()
    split = make_split("t", pool, None, Shots.parse("0"), seed=0, protocol="grouped")
    assert split.train_ids == () and len(split.eval_ids) == len(pool)


def test_too_many_shots_is_an_error():
    with pytest.raises(VlbenchError, match="ask for at most"):
        make_split("t", pair_examples(), None, Shots.parse(str(10_000)), seed=0, protocol="grouped")


@pytest.mark.parametrize(("text", "fraction", "count", "label"), [("0.05", 0.05, None, "5%"), ("5%", 0.05, None, "5%"), ("16", None, 16, "16"), ("0", None, 0, "0")])
def test_shots_parse(text, fraction, count, label):
    shots = Shots.parse(text)
    assert (shots.fraction, shots.count, shots.label()) == (fraction, count, label)


def test_two_spellings_of_one_fraction_are_one_run_and_a_finer_fraction_is_refused():
    """A run is named by its fraction to 6 significant digits; a fraction finer than its name
    would share the name and draw another split."""
    assert Shots.parse("0.0825") == Shots.parse("8.25%") and Shots.parse("33.3333%").label() == "33.3333%"
    # Both spellings are the fraction as its decimal spelling reads (1.4 / 100 in floats is not 0.014).
    assert Shots.parse("1.4%").fraction == Shots.parse("0.014").fraction == 0.014 and Shots.parse("0.014").size(250) == 4
    with pytest.raises(VlbenchError, match=r"^--shots 0.08249999: give a fraction of at most 6 significant digits, as runs are named by them \(e.g. 8.25%\)$"):
        Shots.parse("0.08249999")


@pytest.mark.parametrize("text", ["1.5", "-3", "150%", "many"])
def test_shots_out_of_range(text):
    with pytest.raises(VlbenchError, match="--shots"):
        Shots.parse(text)


def test_limit_samples_of_one_seed_are_nested_and_stored_positional_samples_still_read():
    """A 5% run's --limit sample holds every example of its zero-shot run's sample that it
    evaluates; runs stored before sampled positions in their own pool, and are read that way."""
    everything = [f"ex-{i}" for i in range(600)]
    trained_on = set(everything[::20])
    smaller = [example_id for example_id in everything if example_id not in trained_on]
    for seed in (0, 1):
        full, part = evaluation_ids(everything, 50, seed), evaluation_ids(smaller, 50, seed)
        assert len(full) == len(part) == 50 and full != evaluation_ids(everything, 50, 1 - seed)
        assert {i for i in full if i not in trained_on} <= set(part)
        assert full == [i for i in everything if i in set(full)]  # kept in split order
    import random

    legacy = [everything[i] for i in sorted(random.Random("vlbench-limit:0").sample(range(600), 50))]
    assert evaluation_ids(everything, 50, 0, "positions") == legacy
    with pytest.raises(VlbenchError, match="unknown --limit sample 'shuffled'"):
        evaluation_ids(everything, 50, 0, "shuffled")
