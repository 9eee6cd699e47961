"""voxmesh: talking-face videos -> speech-driven 3D facial animation benchmark shards.

Subpackages: ``voxmesh.schemas`` (schema v1, shards, validation), ``voxmesh.recon``
(reconstruction backends), ``voxmesh.pipelines`` (ingest and the Beam build), ``voxmesh.metrics``.
"""
