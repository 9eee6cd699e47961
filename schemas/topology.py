"""Mesh topologies: vertex count, triangles, a template shape and the vertex index sets that
pose removal and the metrics use.

Topologies that may be redistributed ship as ``schemas/topologies/{name}.npz``; others (FLAME,
whose licence forbids redistribution) are registered at run time by the backend that loads the
user's model file. A backend from another package provides its topology under the entry-point
group ``voxmesh.topologies``, so that every command (validate, stats, train, eval) knows it.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from importlib.metadata import entry_points

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class Topology:
    """A mesh topology.

    ``template`` (V, 3) is the reference shape in the canonical head frame (x to the subject's
    left, y up, z out of the face; centimetres). ``stable_idx`` are vertices that move little
    with expression (used to fit head pose), ``lip_idx`` the lip vertices (lip vertex error),
    ``upper_face_idx`` the vertices above the mouth region (FDD). ``n_landmarks`` is the ``L``
    of ``lmk2d.npy`` for samples of this topology.

    Region masks per topology (the README's Metrics section lists them too):

    - ``mediapipe478``: lips = the 40 lip-contour vertices of Face Mesh (outer and inner); upper
      face = the 267 vertices above the nose tip (vertex 1) in the canonical face, irises
      (468-477) included (they move with the gaze); Face Mesh has no scalp, neck or eyeballs.
    - ``fan68``: lips = iBUG points 48-67; upper face = brows, nose bridge and eyes (17-30, 36-47).
    - ``flame5023`` (built from the user's model, ``recon.flame.flame_topology``): lips = template
      vertices nearest the mouth landmarks; upper face = above the nose tip, without eyeballs,
      scalp and neck.
    """

    name: str
    template: np.ndarray
    faces: np.ndarray
    lip_idx: np.ndarray
    upper_face_idx: np.ndarray
    stable_idx: np.ndarray
    n_landmarks: int

    @property
    def n_vertices(self) -> int:
        return int(self.template.shape[0])

    def check(self) -> None:
        """Raise ``ValueError`` if any index is out of range or an array has the wrong shape."""
        if self.template.ndim != 2 or self.template.shape[1] != 3:
            raise ValueError(f"topology {self.name}: template must be (V, 3)")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"topology {self.name}: faces must be (F, 3)")
        for field in ("faces", "lip_idx", "upper_face_idx", "stable_idx"):
            idx = getattr(self, field)
            if idx.size == 0 or idx.min() < 0 or idx.max() >= self.n_vertices:
                raise ValueError(f"topology {self.name}: {field} out of range 0..{self.n_vertices - 1}")

    def save(self, path: str) -> None:
        np.savez(path, template=self.template.astype(np.float32), faces=self.faces.astype(np.int32),
                 lip_idx=self.lip_idx.astype(np.int32),
                 upper_face_idx=self.upper_face_idx.astype(np.int32),
                 stable_idx=self.stable_idx.astype(np.int32),
                 n_landmarks=np.int32(self.n_landmarks))

    @classmethod
    def load(cls, name: str, path) -> Topology:
        with np.load(path, allow_pickle=False) as data:
            topology = cls(name=name, template=data["template"], faces=data["faces"],
                           lip_idx=data["lip_idx"], upper_face_idx=data["upper_face_idx"],
                           stable_idx=data["stable_idx"], n_landmarks=int(data["n_landmarks"]))
        topology.check()
        return topology


_REGISTERED: dict[str, Topology] = {}


def register_topology(topology: Topology) -> None:
    topology.check()
    _REGISTERED[topology.name] = topology


# Entry-point group of topologies that other packages provide (a backend's own): each entry names
# a function without arguments that returns the Topology of the entry's name.
PLUGIN_GROUP = "voxmesh.topologies"


def get_topology(name: str) -> Topology:
    """The topology called ``name``: registered at run time, shipped with the package, or provided
    by an installed package under :data:`PLUGIN_GROUP`."""
    if name not in _REGISTERED:
        resource = importlib.resources.files(__package__).joinpath("topologies", f"{name}.npz")
        if resource.is_file():
            with importlib.resources.as_file(resource) as path:
                _REGISTERED[name] = Topology.load(name, path)
        else:
            register_topology(_plugin_topology(name))
    return _REGISTERED[name]


def _plugin_topology(name: str) -> Topology:
    plugins = [ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name == name]
    if not plugins:
        raise KeyError(f"unknown topology {name!r}; known: {', '.join(known_topologies())} (a package can provide "
                       f"more under the entry-point group {PLUGIN_GROUP})")
    topology = plugins[0].load()()
    if not isinstance(topology, Topology) or topology.name != name:
        raise KeyError(f"the {PLUGIN_GROUP} entry {name!r} ({plugins[0].value}) returned "
                       f"{getattr(topology, 'name', type(topology).__name__)!r}, not the Topology {name!r}")
    return topology


def known_topologies() -> list[str]:
    shipped = {p.name[:-4] for p in importlib.resources.files(__package__).joinpath("topologies").iterdir()
               if p.name.endswith(".npz")}
    plugins = {ep.name for ep in entry_points(group=PLUGIN_GROUP)}
    return sorted(shipped | plugins | set(_REGISTERED))
