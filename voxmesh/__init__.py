"""voxmesh: talking-face videos -> speech-driven 3D facial animation benchmark shards.

Subpackages, one stage of the data flow each (the repository's top-level folders, linked here):
``voxmesh.schemas`` (schema v1, shards, validation), ``voxmesh.recon`` (reconstruction
backends), ``voxmesh.pipelines`` (ingest, the Beam build, dataset outputs, the demo input),
``voxmesh.metrics`` (motion metrics and evaluation), ``voxmesh.models`` (speech-to-motion
models, their training and generation); ``voxmesh.commands`` holds the command line's verbs.
"""
