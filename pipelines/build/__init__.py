"""The Beam build: ``inputs`` (discovery, ids, splits, parts), ``pipeline`` (the pipeline and its
config), ``packing`` (parts into shards), ``progress`` (the live progress line), ``shared_model``
(one model per worker machine)."""
