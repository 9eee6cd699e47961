"""Why an input or a clip did not make it into the dataset: one enumeration, shared by the
pipeline, ``failures.parquet`` and the run summary."""

from __future__ import annotations

import enum


class Reason(str, enum.Enum):
    """Failure reason codes (the ``reason`` column of ``failures.parquet``)."""

    MISSING_FILE = "missing_file"
    UNSUPPORTED_URI = "unsupported_uri"
    NOT_A_VIDEO = "not_a_video"
    NO_VIDEO_STREAM = "no_video_stream"
    NO_AUDIO_STREAM = "no_audio_stream"
    DECODE_ERROR = "decode_error"
    TOO_SHORT = "too_short"
    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    FACE_TOO_SMALL = "face_too_small"
    LOW_CONFIDENCE = "low_confidence"
    AV_LENGTH_MISMATCH = "av_length_mismatch"
    AV_OFFSET = "av_offset"
    DUPLICATE_ID = "duplicate_id"
    BAD_ID = "bad_id"
    INTERNAL_ERROR = "internal_error"


class Stage(str, enum.Enum):
    """The pipeline stage at which a failure was recorded."""

    DISCOVER = "discover"
    PROBE = "probe"
    DECODE = "decode"
    RECONSTRUCT = "reconstruct"
    SEGMENT = "segment"
