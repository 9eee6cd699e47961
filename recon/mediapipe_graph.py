"""One image through a MediaPipe legacy solution's graph, without the per-call wrapping.

``SolutionBase.process`` (mediapipe 0.10.21, pinned in setup.py) parses every output packet
into Python protobuf objects and builds a new namedtuple type on every call, and the backend
then serialised the landmarks again to read them with numpy: for Face Mesh on a 256x256 crop,
2.39 ms per frame against 2.01 ms without (medians of 8 interleaved runs). :func:`output_packet`
feeds the image exactly as ``process`` does (the solution's own packet for an SRGB image, at its
simulated timestamp) and hands back the raw packet, whose content :func:`serialized_protos`
reads as wire bytes. The graph, its options and its outputs are the solution's own, so the
results are the same bytes (tested against ``process``). Imported only where mediapipe is used:
it imports mediapipe.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mediapipe.python._framework_bindings import _packet_getter

# SolutionBase.process advances its simulated clock by this much per call.
_TIMESTAMP_STEP_US = 33333


def output_packet(solution: Any, image: np.ndarray, stream: str) -> Any:
    """Run ``image`` (H, W, 3) RGB uint8 through ``solution``'s graph, as ``process`` would, and
    return its packet on output ``stream`` (None when the graph emitted none for this frame)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {image.shape}")
    solution._graph_outputs.clear()
    solution._simulated_timestamp += _TIMESTAMP_STEP_US
    ((input_stream, input_type),) = solution._input_stream_type_info.items()
    packet = solution._make_packet(input_type, image).at(solution._simulated_timestamp)
    solution._graph.add_packet_to_input_stream(stream=input_stream, packet=packet)
    solution._graph.wait_until_idle()
    found = solution._graph_outputs.get(stream)
    return None if found is None or found.is_empty() else found


def serialized_protos(packet: Any) -> list[bytes]:
    """The messages of a proto-vector packet (e.g. one ``NormalizedLandmarkList`` per face) as
    protobuf wire bytes; [] for no packet."""
    return [] if packet is None else list(_packet_getter._get_serialized_proto_list(packet))
