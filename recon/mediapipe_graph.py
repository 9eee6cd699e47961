"""One image through a MediaPipe legacy solution's graph, without the per-call wrapping.

``SolutionBase.process`` (mediapipe 0.10.21, pinned in setup.py) parses every output packet
into Python protobuf objects and builds a new namedtuple type on every call, and the backend
then serialised the landmarks again to read them with numpy: for Face Mesh on a 256x256 crop,
2.39 ms per frame against 2.01 ms without (medians of 8 interleaved runs). :func:`output_packet`
feeds the image exactly as ``process`` does (the solution's own packet for an SRGB image, at its
simulated timestamp) and hands back the raw packet, whose content :func:`serialized_protos`
reads as wire bytes. The graph, its options and its outputs are the solution's own, so the
results are the same bytes (tested against ``process``).

:func:`on_calling_thread` runs a solution's graph on the thread that waits for it; it changes
the solution's :func:`graph_config` and swaps in the graph :func:`rebuilt` from it (as the Face
Mesh graph's profile, ``bench/profile_face_mesh_graph.py``, does to turn MediaPipe's profiler
on). Imported only where mediapipe is used: it imports mediapipe.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mediapipe.framework import calculator_pb2
from mediapipe.python._framework_bindings import _packet_getter, calculator_graph

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


def on_calling_thread(solution: Any) -> Any:
    """Rebuild ``solution``'s graph with MediaPipe's ``ApplicationThreadExecutor`` as its default
    executor, and return ``solution``.

    A legacy solution's calculators run on a thread pool: every frame wakes a pool thread and
    waits for it. With one build worker per core the cores are all busy, and that hand-off cost
    0.2 ms per graph call on average (a tenth of the calls waited about 1 ms for the woken thread).
    With this executor the calculators run inside ``wait_until_idle`` on the calling thread:
    the same graph and outputs (tested against ``process``), no hand-off.
    """
    config = graph_config(solution)
    executor = next((e for e in config.executor if not e.name), None)  # the default executor's
    if executor is None:
        executor = config.executor.add()
    executor.type = "ApplicationThreadExecutor"
    executor.ClearField("options")
    return rebuilt(solution, config)


def graph_config(solution: Any) -> calculator_pb2.CalculatorGraphConfig:
    """A copy of ``solution``'s graph configuration, to change and pass to :func:`rebuilt`."""
    return calculator_pb2.CalculatorGraphConfig.FromString(solution._graph.binary_config)


def rebuilt(solution: Any, config: calculator_pb2.CalculatorGraphConfig) -> Any:
    """``solution`` with its graph replaced by one built from ``config`` (a changed
    :func:`graph_config`), observing the same output streams and started with the solution's
    own side packets, so that ``process``, ``reset`` and ``close`` keep working."""
    solution._graph.close()
    graph = calculator_graph.CalculatorGraph(graph_config=config)
    for stream in solution._output_stream_type_info:
        graph.observe_output_stream(stream, solution._graph_outputs.__setitem__, True)
    graph.start_run(solution._input_side_packets)
    solution._graph = graph
    return solution
