"""The default backend: MediaPipe Face Mesh (478 points with the refined iris landmarks).

MediaPipe gives, per face, ``x`` and ``y`` normalised by the image width and height and a
relative depth ``z`` on the scale of ``x``. We map them to source pixels (``x W``, ``y H``,
``z W``), which is a weak-perspective 3D frame, then remove head pose by a similarity fit of the
topology's stable vertices to its template (:mod:`voxmesh.recon.pose`).

Confidence: the legacy Face Mesh graph exposes no face score, so confidence is geometric: how
rigidly the stable vertices (forehead, nose bridge, eye corners, temples) match the template after
the fit, ``exp(-(rms / 1 cm)^2)``. A tracked face scores near 1, a mesh that is torn or
collapsing (a lost track, a profile beyond what the model covers) falls towards 0.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata
from typing import Any

import numpy as np

from voxmesh.schemas import Topology

from .base import Reconstruction, ReconstructionBackend
from .pose import remove_pose

TOPOLOGY = "mediapipe478"
N_POINTS = 478
# Forehead, nose bridge, inner and outer eye corners, temples and cheek sides at ear height.
STABLE_IDX = (10, 151, 9, 109, 338, 67, 297, 168, 6, 197, 195, 33, 133, 362, 263, 127, 356, 234, 454)
RIGHT_EYE_OUTER, LEFT_EYE_OUTER, FOREHEAD_TOP, CHIN, NOSE_TIP = 33, 263, 10, 152, 1
OUTER_EYE_DISTANCE_CM = 9.0  # adult biocular width, sets the template's scale
CONFIDENCE_SCALE_CM = 1.0


# A ``NormalizedLandmarkList`` as protobuf wire bytes, one record per landmark: field 1 (length 15)
# holding x, y, z as fields 1-3 (fixed32 floats). MediaPipe's Face Mesh sets nothing else.
_WIRE_LANDMARK = np.dtype([("tag", "u1"), ("size", "u1"), ("x_tag", "u1"), ("x", "<f4"), ("y_tag", "u1"),
                           ("y", "<f4"), ("z_tag", "u1"), ("z", "<f4")])
_WIRE_TAGS = {"tag": 0x0A, "size": 15, "x_tag": 0x0D, "y_tag": 0x15, "z_tag": 0x1D}


def landmarks_to_points(wire: bytes, width: int, height: int) -> np.ndarray:
    """One face's ``NormalizedLandmarkList`` as protobuf wire bytes -> (478, 3) in source pixels
    (z scaled like x).

    Read in one step with numpy (no Python per point); a message with other fields set
    (visibility, presence) is parsed instead."""
    records = np.frombuffer(wire, dtype=_WIRE_LANDMARK) if len(wire) % _WIRE_LANDMARK.itemsize == 0 else None
    if records is not None and all((records[name] == value).all() for name, value in _WIRE_TAGS.items()):
        normalized = np.stack([records["x"], records["y"], records["z"]], axis=1).astype(np.float64)
    else:
        from mediapipe.framework.formats import landmark_pb2
        landmarks = landmark_pb2.NormalizedLandmarkList.FromString(wire)
        normalized = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float64)
    return normalized * np.array([width, height, width])


def head_frame_template(points: np.ndarray) -> np.ndarray:
    """Express one face's points (image axes: x right, y down, z away) in the canonical head
    frame: x from the subject's right to left outer eye corner, y up (towards the forehead),
    z out of the face, origin at the centroid of the stable vertices, centimetres."""
    x_axis = points[LEFT_EYE_OUTER] - points[RIGHT_EYE_OUTER]
    scale = OUTER_EYE_DISTANCE_CM / np.linalg.norm(x_axis)
    x_axis /= np.linalg.norm(x_axis)
    up = points[FOREHEAD_TOP] - points[CHIN]
    y_axis = up - (up @ x_axis) * x_axis
    y_axis /= np.linalg.norm(y_axis)
    z_axis = np.cross(x_axis, y_axis)
    centred = points - points[list(STABLE_IDX)].mean(axis=0)
    return (centred @ np.stack([x_axis, y_axis, z_axis], axis=1)) * scale


def build_topology(image: np.ndarray) -> Topology:
    """The ``mediapipe478`` topology, with its template taken from a frontal face photograph.

    The shipped ``schemas/topologies/mediapipe478.npz`` is this function applied to
    scikit-image's ``data.astronaut()`` (a test checks that they agree).
    """
    import mediapipe as mp
    from mediapipe.python.solutions import face_mesh_connections as connections

    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                         refine_landmarks=True) as face_mesh:
        result = face_mesh.process(image)
    if not result.multi_face_landmarks:
        raise ValueError("no face found in the template image")
    height, width = image.shape[:2]
    template = head_frame_template(
        landmarks_to_points(result.multi_face_landmarks[0].SerializeToString(), width, height))

    neighbours: dict[int, set[int]] = {}
    for a, b in connections.FACEMESH_TESSELATION:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    faces = sorted({tuple(sorted((a, b, c))) for a, b in connections.FACEMESH_TESSELATION
                    for c in neighbours[a] & neighbours[b]})
    lips = sorted({i for edge in connections.FACEMESH_LIPS for i in edge})
    upper = np.flatnonzero(template[:, 1] > template[NOSE_TIP, 1])
    return Topology(name=TOPOLOGY, template=template.astype(np.float32),
                    faces=np.array(faces, dtype=np.int32), lip_idx=np.array(lips, dtype=np.int32),
                    upper_face_idx=upper.astype(np.int32), stable_idx=np.array(STABLE_IDX, dtype=np.int32),
                    n_landmarks=N_POINTS)


def tracking_face_mesh(min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5) -> Any:
    """MediaPipe's Face Mesh solution as this backend runs it: tracking mode, one face, refined
    landmarks (478 points). One face: with more, Face Mesh runs its own face detector on every
    frame; a second face is the pipeline's face pass's job (pipelines/ingest/faces.py)."""
    import mediapipe as mp
    return mp.solutions.face_mesh.FaceMesh(
        static_image_mode=False, max_num_faces=1, refine_landmarks=True,
        min_detection_confidence=min_detection_confidence, min_tracking_confidence=min_tracking_confidence)


class MediaPipeFaceMesh(ReconstructionBackend):
    """MediaPipe Face Mesh in tracking mode, CPU, models from inside the ``mediapipe`` wheel."""

    name = "mediapipe"
    topology_name = TOPOLOGY
    needs_gpu = False
    description = "MediaPipe Face Mesh, 478 points with iris refinement; models ship in the wheel"

    def __init__(self, options: dict[str, str] | None = None, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5):
        super().__init__(options)
        self.min_detection_confidence = min_detection_confidence
        self.min_tracking_confidence = min_tracking_confidence
        self._face_mesh: Any = None  # mediapipe FaceMesh once set up

    @property
    def version(self) -> str:
        return f"mediapipe-{metadata.version('mediapipe')}"

    @classmethod
    def unavailable_reason(cls, options: dict[str, str] | None = None) -> str | None:
        # Found, not imported: the launcher asks before every build, and importing mediapipe
        # (which imports matplotlib) costs it 0.65 s.
        if importlib.util.find_spec("mediapipe") is None:
            return "the mediapipe package is not installed (pip install mediapipe==0.10.21)"
        return None

    def setup(self) -> None:
        from .mediapipe_graph import on_calling_thread
        self._face_mesh = on_calling_thread(tracking_face_mesh(self.min_detection_confidence,
                                                               self.min_tracking_confidence))

    def reset(self) -> None:
        self._mesh().reset()

    def _mesh(self):
        if self._face_mesh is None:
            raise RuntimeError("MediaPipeFaceMesh.setup() must be called before use")
        return self._face_mesh

    def reconstruct(self, frames: np.ndarray) -> Reconstruction:
        from .mediapipe_graph import output_packet, serialized_protos
        n_frames, height, width = frames.shape[:3]
        observed = np.full((n_frames, N_POINTS, 3), np.nan)
        n_faces = np.zeros(n_frames, dtype=np.int16)
        face_mesh = self._mesh()
        for t in range(n_frames):
            faces = serialized_protos(output_packet(face_mesh, frames[t], "multi_face_landmarks"))
            n_faces[t] = len(faces)
            if faces:
                observed[t] = landmarks_to_points(faces[0], width, height)
        found = np.isfinite(observed).all(axis=(1, 2))
        mesh = np.full_like(observed, np.nan)
        pose = np.full((n_frames, 4, 4), np.nan)
        residual = np.full(n_frames, np.inf)
        topology = self.topology
        if found.any():
            mesh[found], pose[found], residual[found] = remove_pose(
                observed[found], topology.template, topology.stable_idx)
        return Reconstruction(
            mesh=mesh.astype(np.float32), pose=pose.astype(np.float32),
            lmk2d=observed[:, :, :2].astype(np.float32),
            confidence=np.exp(-(residual / CONFIDENCE_SCALE_CM) ** 2).astype(np.float32),
            n_faces=n_faces)

    def close(self) -> None:
        if self._face_mesh is not None:
            self._face_mesh.close()
            self._face_mesh = None
