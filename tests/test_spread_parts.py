"""Parts onto workers: Beam's local runner gives each worker a fixed share of the elements, so the
build deals the parts into one slot per worker (even in expected frames) and each worker process
runs exactly its slot's parts; other runners get a plain reshuffle."""

import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from voxmesh.pipelines.build.inputs import PartTask, deal_parts
from voxmesh.pipelines.build.pipeline import SpreadParts, local_pipeline_args, local_workers
from voxmesh.pipelines.ingest.item import InputItem

TESTS = os.path.dirname(os.path.abspath(__file__))


class RecordProcess(beam.DoFn):
    """Writes, per part, the id of the process that ran it."""

    def __init__(self, folder: str):
        self.folder = folder

    def process(self, task: PartTask):
        with open(os.path.join(self.folder, task.name), "w") as f:
            f.write(str(os.getpid()))
        yield task.name


def test_on_the_local_runner_each_worker_process_runs_the_parts_of_one_slot(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))  # for the workers
    items = [InputItem(f"/v/{k}.mp4", f"id{k}", "vid", "1") for k in range(5)]
    frames = {item.uri: n for item, n in zip(items, (500, 400, 300, 200, 100))}
    tasks = [PartTask("train", k, (item,)) for k, item in enumerate(items)]
    slot_of = deal_parts(tasks, frames, workers=2)
    with beam.Pipeline(options=PipelineOptions(local_pipeline_args(2))) as pipeline:
        _ = pipeline | beam.Create(tasks) | SpreadParts(slot_of) | beam.ParDo(RecordProcess(str(tmp_path)))
    process_of = {name: (tmp_path / name).read_text() for name in slot_of}
    for slot in (0, 1):
        assert len({process_of[name] for name, s in slot_of.items() if s == slot}) == 1
    assert len(set(process_of.values())) == 2


def test_only_the_local_runner_gets_the_deal_with_a_slot_per_worker_process():
    assert local_workers(PipelineOptions(local_pipeline_args(3))) == 3
    assert local_workers(PipelineOptions(["--direct_num_workers=0"])) == os.cpu_count()
    assert local_workers(PipelineOptions([])) == 1  # Beam's default: one worker
    assert local_workers(PipelineOptions(["--runner=DataflowRunner", "--direct_num_workers=4"])) is None
    assert local_workers(PipelineOptions(["--runner=PortableRunner"])) is None
