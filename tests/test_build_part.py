"""BuildPart, the DoFn that writes one part, called directly: an exception inside one input
becomes that input's failure record and the part is still committed; set-up freezes what it
loaded out of the garbage collector's way."""

import gc
import json
import os

from test_schema_and_validate import make_sample

from voxmesh.pipelines.build import pipeline as build
from voxmesh.pipelines.build.inputs import PartTask
from voxmesh.pipelines.build.pipeline import BuildConfig, BuildPart
from voxmesh.pipelines.ingest.item import InputItem
from voxmesh.pipelines.ingest.process import InputResult


def test_an_exception_in_one_input_is_a_failure_row_not_a_failed_part(tmp_path, monkeypatch):
    def process_input(item, *args, sink, **kwargs):
        if item.utterance == "1":
            sink(make_sample("s", 0))  # a sample already produced before the crash must not land
            raise RuntimeError("boom in the backend")
        return InputResult([], [], 0)

    monkeypatch.setattr(build, "process_input", process_input)
    config = BuildConfig(input=str(tmp_path), output=str(tmp_path / "out"))
    task = PartTask("train", 0, (InputItem("/x/1.mp4", "s", "v", "1"), InputItem("/x/2.mp4", "s", "v", "2")))
    part = BuildPart(config)
    part.setup()
    try:
        assert gc.get_freeze_count() > 0  # what set-up loaded is kept out of collections and the exit
        assert list(part.process(task)) == ["train-000000"]
    finally:
        part.teardown()
        gc.unfreeze()
    with open(os.path.join(config.output, "_meta", "parts", "train-000000.stats.json")) as f:
        stats = json.load(f)
    assert stats["inputs"] == ["/x/1.mp4", "/x/2.mp4"] and stats["samples"] == []
    failure, = stats["failures"]
    assert failure["reason"] == "internal_error" and failure["shard"] == "train-000000"
    assert failure["detail"] == "/x/1.mp4: RuntimeError: boom in the backend"
