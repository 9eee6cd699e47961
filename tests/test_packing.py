"""Packing committed parts into shards bounded by samples and bytes: the plan, the merge, and a
pack interrupted part-way and resumed."""

import os

import pytest
from test_schema_and_validate import make_sample

from voxmesh.pipelines.build.inputs import plan_parts
from voxmesh.pipelines.build.packing import PARTS_DIR, PackTask, ShardLimits, pack_shard, plan_packs, remaining_packs
from voxmesh.pipelines.ingest.item import InputItem
from voxmesh.schemas import FailureRecord, SampleTarWriter, committed_stats, iter_tar_samples


def write_parts(out: str) -> list[str]:
    """Five train parts (speakers interleaved across parts, as the hash-ordered plan makes them),
    the third with a failed input and no sample, and one test part."""
    layout = {("train", 0): [("b", 0), ("d", 0), ("d", 1)], ("train", 1): [("a", 0), ("c", 0)],
              ("train", 2): [], ("train", 3): [("a", 1), ("e", 0), ("e", 1), ("e", 2)],
              ("train", 4): [("b", 1)], ("test", 0): [("t", 0)]}
    for (split, index), clips in layout.items():
        samples = [make_sample(speaker, clip, n_frames=10, seed=clip, split=split) for speaker, clip in clips]
        uris = sorted({s.meta.source_uri for s in samples}) or [f"/data/bad{index}.mp4"]
        with SampleTarWriter(out, split, index, uris, folder=PARTS_DIR) as writer:
            for sample in samples:
                writer.write_members(sample.meta, sample.to_members())
            if not samples:
                writer.record_failure(FailureRecord(uris[0], "bad", "probe", "not_a_video", f"{uris[0]}: x"))
            writer.commit()
    return [f"{split}-{index:06d}" for split, index in layout]


def test_the_plan_keeps_shards_within_both_limits_and_parts_in_order(tmp_path):
    out = str(tmp_path)
    write_parts(out)
    parts = committed_stats(out, PARTS_DIR)
    size = {p.shard: p.n_bytes for p in parts}
    by_samples = plan_packs(parts, ShardLimits(max_samples=3))
    assert [(t.name, t.parts) for t in by_samples] == [
        ("test-000000", ("test-000000",)),
        ("train-000000", ("train-000000",)),
        ("train-000001", ("train-000001", "train-000002")),
        ("train-000002", ("train-000003",)),  # 4 samples: over the limit on its own, a shard of its own
        ("train-000003", ("train-000004",)),
    ]
    by_bytes = plan_packs(parts, ShardLimits(max_bytes=size["train-000000"] + size["train-000001"]))
    assert [t.parts for t in by_bytes if t.split == "train"] == [
        ("train-000000", "train-000001"), ("train-000002", "train-000003"), ("train-000004",)]
    assert plan_packs(parts, ShardLimits()) == [PackTask("test", 0, ("test-000000",)),
                                                PackTask("train", 0, tuple(f"train-{i:06d}" for i in range(5)))]
    with pytest.raises(ValueError):
        ShardLimits(max_samples=0)


def test_a_shard_merges_its_parts_in_key_order_with_their_inputs_and_failures(tmp_path):
    out = str(tmp_path)
    write_parts(out)
    task = PackTask("train", 0, ("train-000000", "train-000001", "train-000002"))
    pack_shard(out, task)
    keys = [key for key, _ in iter_tar_samples(os.path.join(out, "shards", "train-000000.tar"))]
    assert keys == sorted(keys) and len(keys) == 5
    stats, = committed_stats(out)
    assert [row["key"] for row in stats.samples] == keys and {row["shard"] for row in stats.samples} == {stats.shard}
    assert sorted(stats.inputs) == ["/data/a.mp4", "/data/b.mp4", "/data/bad2.mp4", "/data/c.mp4", "/data/d.mp4"]
    failure, = stats.failures
    assert failure["source_uri"] == "/data/bad2.mp4" and failure["shard"] == "train-000000"


def shard_files(out: str) -> dict[str, bytes]:
    """The shards' tars and their stats (under _meta/), by path relative to ``out``."""
    files = {}
    for folder in ("shards", os.path.join("_meta", "shards")):
        for name in sorted(os.listdir(os.path.join(out, folder))):
            with open(os.path.join(out, folder, name), "rb") as f:
                files[os.path.join(folder, name)] = f.read()
    return files


def test_packing_resumed_after_an_interruption_gives_the_same_bytes(tmp_path):
    limits = ShardLimits(max_samples=3)
    whole, resumed = str(tmp_path / "whole"), str(tmp_path / "resumed")
    names = write_parts(whole)
    write_parts(resumed)
    for task in remaining_packs(None, whole, names, limits):
        pack_shard(whole, task)

    first, *rest = remaining_packs(None, resumed, names, limits)
    pack_shard(resumed, first)  # then the run dies
    left = remaining_packs(None, resumed, names, limits)
    assert left == rest
    for task in reversed(left):  # any order: workers finish when they finish
        pack_shard(resumed, task)
    assert remaining_packs(None, resumed, names, limits) == []
    assert shard_files(whole) == shard_files(resumed)


def test_a_part_that_is_not_committed_stops_the_packing_with_its_name(tmp_path):
    out = str(tmp_path)
    names = write_parts(out)
    os.remove(os.path.join(out, "_meta", PARTS_DIR, "train-000003.stats.json"))
    with pytest.raises(RuntimeError, match="train-000003"):
        remaining_packs(None, out, names, ShardLimits())


def test_shards_do_not_depend_on_the_worker_count(tmp_path):
    """Parts are split until every worker has one, but parts of one group always share a shard,
    so the shards come out byte-identical whatever the worker count."""
    speakers = "abcdefghij"
    items = [InputItem(f"/data/{s}.mp4", s, "vid", "00001") for s in speakers]
    split_of_speaker = dict.fromkeys(speakers, "train")
    shards = []
    for workers in (1, 4):
        out = str(tmp_path / f"workers{workers}")
        tasks = plan_parts(items, split_of_speaker, inputs_per_part=5, min_parts=workers)
        for task in tasks:
            with SampleTarWriter(out, task.split, task.index, [i.uri for i in task.items], folder=PARTS_DIR) as writer:
                for item in task.items:
                    if item.speaker == "c":
                        writer.record_failure(FailureRecord(item.uri, item.input_id, "probe", "not_a_video", "x"))
                    for clip in range(speakers.index(item.speaker) % 3):
                        sample = make_sample(item.speaker, clip, n_frames=5, seed=clip)
                        writer.write_members(sample.meta, sample.to_members())
                writer.commit()
        groups = {t.name: t.group for t in tasks}
        for task in remaining_packs(None, out, [t.name for t in tasks], ShardLimits(max_samples=6), groups):
            pack_shard(out, task)
        shards.append((len(tasks), shard_files(out)))
    (parts_1, shards_1), (parts_4, shards_4) = shards
    assert parts_1 == 2 and parts_4 >= 4
    assert len(shards_1) == 4 and shards_1 == shards_4  # two shards, each a tar and its stats
