import io
import json

import pytest
from PIL import Image

from placeholders import write_images
from vlbench.tasks.winoground import WinogroundOptions, WinogroundTask

TAGS = ("Object", "Relation", "Both", "Relation")


def records():
    return [
        {"id": index, "caption_0": f"a {index} above b", "caption_1": f"b above a {index}", "tag": "x", "secondary_tag": "", "num_main_preds": 1, "collapsed_tag": tag}
        for index, tag in enumerate(TAGS)
    ]


def png_bytes(colour, mode="RGBA"):
    buffer = io.BytesIO()
    Image.new(mode, (6, 4), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_jsonl_layout_with_rgba_images(tmp_path):
    lines = [{**record, "image_0": f"ex_{record['id']}_img_0", "image_1": f"ex_{record['id']}_img_1"} for record in records()]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "examples.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    write_images((tmp_path / "data" / "images" / f"ex_{i}_img_{j}.png" for i in range(4) for j in (0, 1)), mode="RGBA")
    examples = WinogroundTask(WinogroundOptions(), tmp_path).examples(seed=0)
    assert [e.id for e in examples] == ["winoground-0", "winoground-1", "winoground-2", "winoground-3"]
    first = examples[0]
    assert first.texts == ("a 0 above b", "b above a 0") and first.positives == ((0, 0), (1, 1))
    assert [e.tags["collapsed_tag"] for e in examples] == list(TAGS)
    image = first.images[0].load()
    assert image.mode == "RGB"
    red, green, blue, alpha = Image.open(first.images[0].path).getpixel((0, 0))
    # The alpha is dropped, as the upstream loaders' convert("RGB") does, not blended with white.
    assert alpha < 255 and image.getpixel((0, 0)) == (red, green, blue)


def test_parquet_layout_with_embedded_images(tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    rows = [{**record, "image_0": {"bytes": png_bytes((10, 20, 30, 255)), "path": None}, "image_1": {"bytes": png_bytes((200, 0, 0), "RGB"), "path": None}} for record in records()]
    (tmp_path / "data").mkdir()
    parquet.write_table(pyarrow.Table.from_pylist(rows), tmp_path / "data" / "test-00000-of-00001.parquet", row_group_size=3)
    examples = WinogroundTask(WinogroundOptions(), tmp_path).examples(seed=0)
    assert len(examples) == 4 and examples[3].texts == ("a 3 above b", "b above a 3")
    assert examples[3].images[0].load().getpixel((0, 0)) == (10, 20, 30)  # second row group
    assert examples[3].images[1].load().getpixel((0, 0)) == (200, 0, 0)


def test_data_check_decodes_the_images_the_parquet_files_embed(tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    from vlbench.datacheck import check_data

    rows = [{**record, "image_0": {"bytes": png_bytes((10, 20, 30, 255)), "path": None}, "image_1": {"bytes": png_bytes((200, 0, 0), "RGB")[:30], "path": None}} for record in records()]
    (tmp_path / "data").mkdir()
    parquet.write_table(pyarrow.Table.from_pylist(rows), tmp_path / "data" / "test-00000-of-00001.parquet")
    report = check_data(WinogroundTask(WinogroundOptions(), tmp_path))
    assert report.counts["embedded images"] == 8 and report.problems == ["4 of 8 embedded images cannot be used"]
    assert report.bad_images[0].startswith("image '0:image_1' (embedded): cannot be decoded (") and "row 0 in row group 0 cannot be read" in report.bad_images[0]


def test_layouts_users_have_name_what_to_do(tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    from vlbench.errors import VlbenchError

    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "data-00000-of-00001.arrow").write_bytes(b"")
    (saved / "state.json").write_text("{}")
    with pytest.raises(VlbenchError, match=r"holds a `datasets` save_to_disk copy \(data-00000-of-00001.arrow\), which vlbench does not read; write it as parquet: datasets.load_from_disk\("):
        WinogroundTask(WinogroundOptions(), saved).examples(seed=0)
    zipped = tmp_path / "zipped"
    (zipped / "data").mkdir(parents=True)
    (zipped / "data" / "examples.jsonl").write_text(json.dumps({**records()[0], "image_0": "ex_0_img_0", "image_1": "ex_0_img_1"}) + "\n")
    (zipped / "data" / "images.zip").write_bytes(b"")
    with pytest.raises(VlbenchError, match=r"data/images not found, but .*data/images.zip is there: unzip it"):
        WinogroundTask(WinogroundOptions(), zipped).examples(seed=0)
    rows = [{**record, "image_0": {"bytes": png_bytes((1, 2, 3, 255)), "path": None}, "image_1": {"bytes": png_bytes((1, 2, 3, 255)), "path": None}} for record in records()]
    for snapshot in ("a", "b"):  # a hub cache holding two snapshots
        (tmp_path / "hub" / snapshot).mkdir(parents=True)
        parquet.write_table(pyarrow.Table.from_pylist(rows), tmp_path / "hub" / snapshot / "test.parquet")
    with pytest.raises(VlbenchError, match=r"example 'winoground-0' is in both .*a/test.parquet and .*b/test.parquet: two copies of the dataset under one data root"):
        WinogroundTask(WinogroundOptions(), tmp_path / "hub").examples(seed=0)


def test_text_image_group_scores_per_collapsed_tag():
    from vlbench.metrics import aggregate

    task = WinogroundTask(WinogroundOptions(), None)
    # all right; text only (image tie); image only (text tie); all wrong
    matrices = [[[1, 0], [0, 1]], [[1, 0], [1, 2]], [[1, 1], [0, 2]], [[0, 1], [1, 0]]]
    outcomes = [task.outcomes(matrix, [[0, 0], [1, 1]]) for matrix in matrices]
    metrics, breakdown = aggregate(outcomes, [{"collapsed_tag": tag} for tag in TAGS])
    assert metrics == {"text": 0.5, "image": 0.5, "group": 0.25}
    assert breakdown["collapsed_tag"]["Relation"] == {"n": 2, "text": 0.5, "image": 0.0, "group": 0.0}
    assert breakdown["collapsed_tag"]["Both"] == {"n": 1, "text": 0.0, "image": 1.0, "group": 0.0}
