"""Ingest: one input video -> samples. ``probe`` (what the container says), ``frames`` (25 fps
frames: RGB chunks, or I420 planes), ``audio`` (16 kHz mono PCM on the video's clock), ``faces`` (shot cuts, detection,
tracks, crops), ``clips`` (usable runs of frames), ``process`` (all of it for one input)."""
