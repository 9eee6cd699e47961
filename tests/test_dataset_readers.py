"""A built dataset as its readers see it: Hugging Face ``datasets`` on the folder as it is
(map-style and streaming), the README's DataLoader example with ``collate``, wids without Pillow,
and the dataset moved to another folder."""

import json
import os
import re
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from voxmesh.cli import main
from voxmesh.pipelines.demo import make_demo_input
from voxmesh.schemas import collate, committed_stats, decode_members, load_samples, read_manifest, validate_dataset
from voxmesh.schemas.sample import encode_npy

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The demo input built in one folder, then the dataset moved to another."""
    root = tmp_path_factory.mktemp("build_here")
    make_demo_input(str(root / "input"))
    assert main(["-q", "build", "--input", str(root / "input"), "--output", str(root / "dataset"),
                 "--workers", "1", "--inputs-per-part", "1", "--license", "cc-by-4.0"]) == 0
    moved = tmp_path_factory.mktemp("moved_there") / "dataset"
    shutil.move(str(root / "dataset"), str(moved))
    return str(root), str(moved)


def test_a_moved_dataset_reads_back_and_holds_no_build_machine_path(built):
    root, dataset = built
    problems, counts = validate_dataset(dataset)
    assert problems == [] and counts["samples"] == 3
    manifest, failures = read_manifest(dataset), pq.read_table(os.path.join(dataset, "failures.parquet"))
    assert {row["source_uri"] for row in manifest} == {f"id0000{i}/demo/00001.mp4" for i in (1, 2, 3)}
    assert {f["input_id"] for f in failures.to_pylist()} == {"id00004/demo/00001"}
    assert {row["input_id"] for row in manifest} == {f"id0000{i}/demo/00001" for i in (1, 2, 3)}
    for name in ("manifest.parquet", "failures.parquet"):
        assert pq.read_schema(os.path.join(dataset, name)).metadata[b"voxmesh.schema_version"] == b"1"
    samples = load_samples(dataset, [row["key"] for row in manifest])
    assert all(s.meta.source_uri == row["source_uri"] for s, row in zip(samples.values(), manifest))
    with open(os.path.join(dataset, "dataset.json")) as f:
        assert json.load(f)["input_root"] == os.path.join(root, "input")  # the one place it is recorded
    for folder, _, names in os.walk(dataset):
        for name in names:
            if name != "dataset.json":
                with open(os.path.join(folder, name), "rb") as f:
                    assert root.encode() not in f.read(), name
    assert main(["stats", dataset, "--report", os.path.join(os.path.dirname(dataset), "report")]) == 0


def test_the_card_declares_the_licence_and_documents_every_member_column_and_option(built):
    _, dataset = built
    with open(os.path.join(dataset, "README.md"), encoding="utf-8") as f:
        card = f.read()
    header = card.split("---\n")[1]
    assert 'license: "cc-by-4.0"' in header and 'path: "shards/train-*.tar"' in header
    for name in ("mesh.npy", "pose.npy", "audio.npy", "lmk2d.npy", "meta.json"):
        assert f"| `{name}` |" in card
    for column in pq.read_schema(os.path.join(dataset, "manifest.parquet")).names:
        assert f"| `{column}` |" in card, column
    for option in ("track_rules.detect_every | 5", "clip_rules.max_av_offset | 5", "splits.train | 0.9", "backend | "):
        assert f"| {option}" in card, option
    assert "centimetres" in card and "source pixels" in card
    from voxmesh.recon.base import CANONICAL_HEAD_FRAME
    with open(os.path.join(dataset, "dataset.json")) as f:  # mesh.npy's frame and units, the backend's
        assert json.load(f)["head_frame"] == CANONICAL_HEAD_FRAME


def test_hugging_face_datasets_opens_the_folder_map_style(built):
    datasets = pytest.importorskip("datasets")
    _, dataset = built
    splits = datasets.load_dataset(dataset)
    assert set(splits) == {"train"}
    train = splits["train"].with_format("numpy", dtype=None)
    assert len(train) == 3
    for sample in train:
        n_frames = int(sample["meta.json"]["n_frames"])
        assert sample["mesh.npy"].dtype == np.float32 and sample["mesh.npy"].shape == (n_frames, 478, 3)
        assert sample["pose.npy"].shape == (n_frames, 4, 4) and sample["lmk2d.npy"].shape == (n_frames, 478, 2)
        assert sample["audio.npy"].dtype == np.int16 and sample["audio.npy"].shape == (n_frames * 640,)


def test_hugging_face_datasets_streams_the_folder(built):
    datasets = pytest.importorskip("datasets")
    _, dataset = built
    stream = datasets.load_dataset(dataset, split="train", streaming=True).with_format("numpy")
    samples = list(stream)
    assert len(samples) == 3
    assert {str(s["__key__"]) for s in samples} == {row["key"] for row in read_manifest(dataset)}
    assert all(s["audio.npy"].dtype == np.int16 and s["mesh.npy"].dtype == np.float32 for s in samples)


def readme_block(marker: str) -> str:
    """The Python block of the README that starts with the comment ``marker``."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    found = re.search(r"```python\n(# " + re.escape(marker) + r"\n.*?)```", text, re.S)
    assert found, f"no README example starting with '# {marker}'"
    return found.group(1)


def test_the_readme_dataloader_example_runs(built):
    pytest.importorskip("torch")
    _, dataset = built
    code = readme_block("batches of clips with a torch DataLoader")
    namespace = {"__name__": "readme_example"}
    exec(compile(code.replace('"out/demo/dataset"', repr(dataset)), "README.md", "exec"), namespace)
    batches = namespace["batches"]
    assert sum(len(b["keys"]) for b in batches) == 3
    batch = batches[0]
    assert batch["mesh"].shape[:2] == batch["mask"].shape and batch["audio"].shape[1] == batch["mask"].shape[1] * 640


def test_the_readme_wids_example_runs_without_pillow(built, monkeypatch):
    pytest.importorskip("wids")
    import sys
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL fails from here on
    _, dataset = built
    namespace: dict = {}
    exec(compile(readme_block("random access with wids").replace('"out/demo/dataset"', repr(dataset)),
                 "README.md", "exec"), namespace)
    sample = namespace["sample"]
    assert sample["audio.npy"].dtype == np.int16 and sample["meta.json"]["key"] == sample["__key__"]


def test_collate_pads_clips_and_masks_the_padding():
    def clip(n_frames: int, key: str) -> dict:
        return decode_members({"__key__": key, "meta.json": json.dumps({"key": key}).encode(),
                               **{name: encode_npy(array) for name, array in {
                                   "mesh.npy": np.ones((n_frames, 5, 3), np.float32),
                                   "pose.npy": np.ones((n_frames, 4, 4), np.float32),
                                   "lmk2d.npy": np.ones((n_frames, 5, 2), np.float32),
                                   "audio.npy": np.ones(n_frames * 640, np.int16)}.items()}})
    batch = collate([clip(3, "a"), clip(5, "b")])
    assert batch["mesh"].shape == (2, 5, 5, 3) and batch["audio"].shape == (2, 3200)
    assert batch["audio"].dtype == np.int16 and batch["lengths"].tolist() == [3, 5]
    assert batch["mask"].tolist() == [[True] * 3 + [False] * 2, [True] * 5]
    assert batch["mesh"][0, 3:].sum() == 0 and batch["audio"][0, 1920:].sum() == 0 and batch["keys"] == ["a", "b"]


def test_a_neutral_face_is_documented_declared_without_time_axis_and_read_by_datasets(tmp_path):
    """A parametric backend's dataset: ``neutral.npy`` in the card's member table and in its
    Hugging Face features as a fixed (V, 3) array; ``datasets`` and ``collate`` give it back."""
    import dataclasses

    from test_schema_and_validate import TOPOLOGY, make_sample, write_dataset

    from voxmesh.pipelines.dataset.card import write_dataset_card
    neutral = (TOPOLOGY.template + 0.25).astype(np.float32)
    samples = [dataclasses.replace(make_sample("spkA", i, n_frames=10 + i, seed=i), neutral=neutral + i) for i in (0, 1)]
    out = str(tmp_path / "ds")
    write_dataset(out, {("train", 0): samples})
    rows = read_manifest(out)
    from voxmesh.recon.flame import FLAME_HEAD_FRAME
    dataset_json = {"config": {"backend": "flame", "license": "cc-by-4.0"}, "schema_version": 1, "versions": {},
                    "counts": {"clips": 2, "hours": 0.0, "speakers": 1, "inputs": 2}, "head_frame": FLAME_HEAD_FRAME}
    write_dataset_card(out, dataset_json, rows, [], committed_stats(out))
    with open(os.path.join(out, "README.md"), encoding="utf-8") as f:
        card = f.read()
    header = card.split("---\n")[1]
    assert "- name: neutral.npy\n    dtype:\n      array2_d:\n        shape: [478, 3]\n        dtype: float32" in header
    assert "- name: mesh.npy\n    dtype:\n      array3_d:\n        shape: [null, 478, 3]" in header
    assert "| `neutral.npy` | float32 | (V, 3) |" in card and "zero expression" in card
    assert ("| `mesh.npy` | float32 | (T, V, 3) | vertices with head pose removed, in FLAME's head frame: x to the "
            "subject's left, y up, z out of the face, origin at the origin of FLAME's model space; metres |") in card
    batch = collate([decode_members(item) for item in _raw_items(out)])
    np.testing.assert_array_equal(batch["neutral"], np.stack([neutral, neutral + 1]))
    datasets = pytest.importorskip("datasets")
    train = datasets.load_dataset(out)["train"].with_format("numpy", dtype=None)
    read = sorted((int(s["meta.json"]["clip"]), s["neutral.npy"]) for s in train)
    assert [n.shape for _, n in read] == [(478, 3), (478, 3)] and read[0][1].dtype == np.float32
    np.testing.assert_array_equal(read[1][1], neutral + 1)


def _raw_items(out: str) -> list[dict]:
    from voxmesh.schemas import iter_tar_samples
    return [{"__key__": key, **members} for key, members in iter_tar_samples(os.path.join(out, "shards", "train-000000.tar"))]


def test_a_damaged_or_missing_shard_is_one_line_naming_it_for_every_reader(tmp_path, capsys):
    """Every way a dataset is read (streamed, by key, the training stream, the commands on top)
    answers a truncated or missing shard with one line that names it and says to validate."""
    from conftest import synthetic_sample, write_dataset

    from voxmesh.models.data import DataConfig, training_stream
    from voxmesh.schemas import iter_samples, write_failures
    from voxmesh.schemas.errors import DatasetStateError, MissingFileError
    rng = np.random.default_rng(0)
    samples = [synthetic_sample(f"spk{k}", 0, rng.normal(size=(50, 478, 3)), np.zeros(50 * 640, np.int16))
               for k in range(3)]
    dataset = write_dataset(str(tmp_path / "ds"), samples)
    write_failures([], os.path.join(dataset, "failures.parquet"))
    shard = os.path.join(dataset, "shards", "train-000000.tar")
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)
    readers = {"stream": lambda: list(iter_samples(dataset)),
               "by key": lambda: load_samples(dataset, [samples[-1].meta.key]),
               "training": lambda: next(iter(training_stream(DataConfig(dataset=dataset, window=25))))}
    for name, read in readers.items():
        with pytest.raises(DatasetStateError) as raised:
            read()
        message = str(raised.value)
        assert message.startswith(f"{shard}: truncated or unreadable shard (") and "\n" not in message, name
        assert message.endswith(f"run `voxmesh validate {dataset}`"), name
    assert main(["stats", dataset]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"voxmesh stats: {shard}: truncated")
    os.remove(shard)
    for read in readers.values():
        with pytest.raises(MissingFileError, match=f"^{re.escape(shard)}: no such file; run `voxmesh validate"):
            read()
