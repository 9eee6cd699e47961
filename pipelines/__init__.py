"""The dataset build, one subpackage per stage of the data flow.

- ``ingest``: one input video -> samples: probe, frames at 25 fps, 16 kHz audio, face tracks,
  reconstruction of the crops, clips (``process.process_input``).
- ``build``: the Apache Beam pipeline: discover and name inputs, plan parts, run ``ingest`` on
  workers, pack parts into shards, report progress.
- ``dataset``: what a built dataset gives a person: its card and wids indexes, the stats report,
  the preview renderer.
- ``demo``: the synthetic demo input.
"""
