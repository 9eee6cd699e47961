import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from voxmesh.schemas import (
    FailureRecord,
    Reason,
    Sample,
    SampleMeta,
    SampleTarWriter,
    get_topology,
    iter_samples,
    make_key,
    validate_dataset,
    write_failures,
    write_manifest,
)
from voxmesh.schemas.sample import encode_npy

TOPOLOGY = get_topology("mediapipe478")


def make_sample(speaker: str, clip: int, n_frames: int = 30, seed: int = 0, split: str = "train") -> Sample:
    rng = np.random.default_rng(seed)
    key = make_key(speaker, "vid", "00001", 0, clip)
    meta = SampleMeta(key=key, split=split, speaker=speaker, video="vid", utterance="00001", track=0, clip=clip,
                      source_uri=f"/data/{speaker}.mp4", start_time=0.0, end_time=n_frames / 25,
                      n_frames=n_frames, n_samples=n_frames * 640, backend="test", backend_version="1",
                      topology="mediapipe478", confidence_mean=0.9, lip_motion=1.0, jitter=0.01,
                      av_offset=0, av_offset_confidence=0.3, av_offset_ok=True, audio_start_offset=0.0)
    return Sample(meta=meta,
                  mesh=(TOPOLOGY.template + rng.normal(0, 0.1, (n_frames, 478, 3))).astype(np.float32),
                  pose=np.tile(np.eye(4, dtype=np.float32), (n_frames, 1, 1)),
                  audio=rng.integers(-3000, 3000, n_frames * 640).astype(np.int16),
                  lmk2d=rng.uniform(0, 512, (n_frames, 478, 2)).astype(np.float32))


def write_dataset(out: str, samples_by_shard: dict[tuple[str, int], list[Sample]]) -> None:
    rows = []
    for (split, index), samples in samples_by_shard.items():
        with SampleTarWriter(out, split, index, inputs=[s.meta.source_uri for s in samples]) as writer:
            for sample in samples:
                writer.write_members(sample.meta, sample.to_members())
            writer.record_failure(FailureRecord("/data/bad.mp4", "bad", "probe", "not_a_video", "x"))
            rows += writer.commit().samples
    write_manifest(rows, os.path.join(out, "manifest.parquet"))
    write_failures([], os.path.join(out, "failures.parquet"))


@pytest.fixture
def dataset(tmp_path):
    out = str(tmp_path / "ds")
    write_dataset(out, {("train", 0): [make_sample("spkA", 0), make_sample("spkA", 1, seed=1)],
                        ("test", 0): [make_sample("spkB", 0, seed=2, split="test")]})
    return out


def rewrite_member(tar_path: str, name: str, data: bytes | None) -> None:
    """Rewrite ``tar_path`` with member ``name`` replaced by ``data`` (dropped when None)."""
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(tar_path, "w") as tar:
        for info, content in members:
            if info.name == name:
                if data is None:
                    continue
                content = data
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))


def messages(out: str) -> list[str]:
    return [str(p) for p in validate_dataset(out)[0]]


def test_sample_round_trip_and_webdataset_reads_it_back(dataset):
    assert messages(dataset) == []
    items = list(wds.WebDataset(os.path.join(dataset, "shards", "train-000000.tar"), shardshuffle=False).decode())
    assert [i["__key__"] for i in items] == ["spkA_vid_00001_000_000", "spkA_vid_00001_000_001"]
    expected = make_sample("spkA", 0)
    np.testing.assert_array_equal(items[0]["mesh.npy"], expected.mesh)
    np.testing.assert_array_equal(items[0]["audio.npy"], expected.audio)
    assert items[0]["meta.json"]["n_frames"] == 30
    assert [s.key for s in iter_samples(dataset, "test")] == ["spkB_vid_00001_000_000"]


def test_shards_are_byte_identical_across_writes(tmp_path):
    digests = []
    for name in ("a", "b"):
        write_dataset(str(tmp_path / name), {("train", 0): [make_sample("spkA", 0), make_sample("spkA", 1)]})
        with open(tmp_path / name / "shards" / "train-000000.tar", "rb") as f:
            digests.append(hashlib.sha256(f.read()).hexdigest())
    assert digests[0] == digests[1]
    assert not [n for n in os.listdir(tmp_path / "a" / "shards") if ".tmp" in n]


def test_writer_refuses_unsorted_keys_and_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(ValueError, match="not after"), SampleTarWriter(str(tmp_path), "train", 0, []) as writer:
        sample = make_sample("spkA", 1)
        writer.write_members(sample.meta, sample.to_members())
        sample = make_sample("spkA", 0)
        writer.write_members(sample.meta, sample.to_members())
    assert os.listdir(tmp_path / "shards") == []


def test_validator_reports_every_problem_with_shard_and_key(dataset):
    shards = os.path.join(dataset, "shards")
    # train-000000: a missing member, a wrong dtype and NaNs in three places of two samples
    tar = os.path.join(shards, "train-000000.tar")
    rewrite_member(tar, "spkA_vid_00001_000_000.pose.npy", None)
    rewrite_member(tar, "spkA_vid_00001_000_000.audio.npy", encode_npy(np.zeros(30 * 640, np.float32)))
    mesh = make_sample("spkA", 1, seed=1).mesh
    mesh[3, 7, 1] = np.nan
    rewrite_member(tar, "spkA_vid_00001_000_001.mesh.npy", encode_npy(mesh))
    # test-000000: truncated halfway
    tar = os.path.join(shards, "test-000000.tar")
    with open(tar, "rb") as f:
        data = f.read()
    with open(tar, "wb") as f:
        f.write(data[:len(data) // 2])
    # a manifest row with no sample
    rows = pq.read_table(os.path.join(dataset, "manifest.parquet")).to_pylist()
    rows.append({**rows[0], "key": "spkC_vid_00001_000_000", "speaker": "spkC"})
    write_manifest(rows, os.path.join(dataset, "manifest.parquet"))

    found = messages(dataset)
    expected = [
        "train-000000: spkA_vid_00001_000_000: missing member(s) pose.npy",
        "train-000000: spkA_vid_00001_000_000: audio.npy has dtype float32, schema v1 wants int16",
        "train-000000: spkA_vid_00001_000_001: mesh.npy has 1 non-finite values",
        "test-000000: -: truncated or unreadable tar",
        "test-000000: spkB_vid_00001_000_000: listed in the shard's stats but not in its tar",
        "train-000000: spkC_vid_00001_000_000: in manifest.parquet but in no shard",
    ]
    for line in expected:
        assert any(m.startswith(line) for m in found), (line, found)


def test_validator_checks_shapes_against_meta_and_audio_length(dataset):
    tar = os.path.join(dataset, "shards", "train-000000.tar")
    meta = json.loads(make_sample("spkA", 0).meta.to_json())
    meta["n_frames"] = 31
    rewrite_member(tar, "spkA_vid_00001_000_000.meta.json", json.dumps(meta).encode())
    rewrite_member(tar, "spkA_vid_00001_000_001.audio.npy", encode_npy(np.zeros(640, np.int16)))
    found = messages(dataset)
    assert any("spkA_vid_00001_000_000: mesh.npy has shape (30, 478, 3), meta.json and topology say (31, 478, 3)" in m
               for m in found), found
    assert any("spkA_vid_00001_000_001: audio.npy has shape (640,)" in m for m in found), found


def test_validator_flags_interrupted_writes_duplicates_and_speakers_in_two_splits(tmp_path):
    out = str(tmp_path / "ds")
    write_dataset(out, {("train", 0): [make_sample("spkA", 0)],
                        ("test", 0): [make_sample("spkA", 0, split="test")]})
    with open(os.path.join(out, "shards", "train-000001.tar"), "wb") as f:
        f.write(b"")
    found = messages(out)
    assert any("train-000001: -: tar without stats JSON" in m for m in found), found
    assert any("duplicate key" in m for m in found), found
    assert any("speaker spkA is in several splits" in m for m in found), found


def test_validator_names_stray_files_an_unfinished_build_and_accepts_a_build_whose_inputs_all_failed(
        dataset, tmp_path, capsys):
    from voxmesh.cli import main
    with open(os.path.join(dataset, "shards", "notes.txt"), "w") as f:
        f.write("x")
    with open(os.path.join(dataset, "shards", "train-000001.tar.tmp-abc"), "w") as f:
        f.write("x")
    found = messages(dataset)
    assert any(m.startswith("notes.txt: -: not a shard") for m in found), found
    assert any(m.startswith("train-000001.tar.tmp-abc: -: a temporary file of an interrupted write") for m in found)

    unfinished = tmp_path / "unfinished"
    (unfinished / "_meta").mkdir(parents=True)
    (unfinished / "_meta" / "build.json").write_text("{}")
    assert [str(p) for p in validate_dataset(str(unfinished))[0]] == [
        f"-: -: the build writing {unfinished} has not finished (no dataset.json); run the same `voxmesh build` "
        f"with --resume"]

    (tmp_path / "video.mp4").write_bytes(b"")
    (tmp_path / "listing.csv").write_text("uri,split\nvideo.mp4,dev\n")  # a bad_id failure, no clip anywhere
    assert main(["build", "--input", str(tmp_path / "listing.csv"), "--output", str(tmp_path / "failed")]) == 0
    assert "bad_id=1" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "failed")]) == 0


def test_validate_command_exits_nonzero_and_prints_one_line_per_problem(dataset, capsys):
    from voxmesh.cli import main
    assert main(["validate", dataset]) == 0
    os.remove(os.path.join(dataset, "manifest.parquet"))
    assert main(["validate", dataset]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "manifest.parquet" in out[0]


def test_neutral_reads_back_and_the_validator_checks_its_shape_and_values(tmp_path):
    """``neutral.npy`` (V, 3), optional: round trip; a wrong shape or a NaN is a problem."""
    neutral = (TOPOLOGY.template + 0.5).astype(np.float32)
    good = dataclasses.replace(make_sample("spkA", 0), neutral=neutral)
    wrong_shape = dataclasses.replace(make_sample("spkA", 1, seed=1), neutral=neutral[:-1])
    with_nan = dataclasses.replace(make_sample("spkA", 2, seed=2), neutral=neutral.copy())
    with_nan.neutral[5, 1] = np.nan
    out = str(tmp_path / "ds")
    write_dataset(out, {("train", 0): [good, wrong_shape, with_nan, make_sample("spkA", 3, seed=3)]})
    read = {s.key: s for s in iter_samples(out)}
    np.testing.assert_array_equal(read[good.key].neutral, neutral)
    assert read[make_key("spkA", "vid", "00001", 0, 3)].neutral is None
    assert Sample.from_members(good.to_members()).neutral.tolist() == neutral.tolist()
    assert messages(out) == [
        f"train-000000: {wrong_shape.key}: neutral.npy has shape (477, 3), the topology says (478, 3)",
        f"train-000000: {with_nan.key}: neutral.npy has 1 non-finite values",
    ]


def test_parquet_is_read_from_memory_that_pyarrow_owns(tmp_path, monkeypatch):
    """read_parquet hands pyarrow a copy of the file's bytes: pyarrow can release its input on one
    of its pool threads after the read returns, and a Python object released there while the
    interpreter exits aborts the process."""
    import sys

    import pyarrow as pa

    from voxmesh.schemas import storage
    from voxmesh.schemas.tables import arrow_reader, read_parquet, write_parquet
    path = str(tmp_path / "t.parquet")
    write_parquet(pa.table({"a": [1, 2, 3]}), path)
    data = storage.read_bytes(path)
    monkeypatch.setattr(storage, "read_bytes", lambda uri: data)
    held = sys.getrefcount(data)
    reader = arrow_reader(path)
    assert sys.getrefcount(data) == held  # pa.BufferReader(data) would hold one more
    assert reader.read() == data
    assert read_parquet(path).column("a").to_pylist() == [1, 2, 3]


def test_the_readme_names_every_failure_reason():
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    failures = text[text.index("### Failures"):text.index("### Splits, shards, resume")]
    assert [r.value for r in Reason if f"`{r.value}`" not in failures] == []


def test_a_topology_that_another_package_provides_is_known_to_every_command(tmp_path):
    """A backend from another package keeps its own topology: the package provides it under the
    entry-point group voxmesh.topologies, and validate (like stats, train and eval, which all go
    through get_topology) checks a dataset in it. Without the package the topology is unknown."""
    plugin = tmp_path / "plugin"
    (plugin / "toy_topologies-0.1.dist-info").mkdir(parents=True)
    (plugin / "toy_topologies-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: toy-topologies\nVersion: 0.1\n")
    (plugin / "toy_topologies-0.1.dist-info" / "entry_points.txt").write_text(
        "[voxmesh.topologies]\ntoy478 = toy_topologies:toy478\n")
    (plugin / "toy_topologies.py").write_text(
        "import dataclasses\nfrom voxmesh.schemas import get_topology\n\n\n"
        "def toy478():\n    return dataclasses.replace(get_topology('mediapipe478'), name='toy478')\n")
    samples = [make_sample("spk", clip) for clip in range(2)]
    samples = [dataclasses.replace(s, meta=dataclasses.replace(s.meta, topology="toy478")) for s in samples]
    out = str(tmp_path / "dataset")
    write_dataset(out, {("train", 0): samples})

    def validate(*path: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")])}
        return subprocess.run([sys.executable, "-m", "voxmesh", "validate", out], capture_output=True, text=True,
                              env=env)
    without, provided = validate(), validate(str(plugin))
    assert without.returncode == 1 and "unknown topology 'toy478'" in without.stdout + without.stderr
    assert "entry-point group voxmesh.topologies" in without.stdout + without.stderr
    assert provided.returncode == 0, provided.stdout + provided.stderr
