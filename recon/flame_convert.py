"""``voxmesh convert-flame IN.pkl OUT.npz``: turn the official FLAME model pickle (and optionally
its landmark embedding) into the plain ``.npz`` that the ``flame`` backend reads.

The official files are Python 2 pickles holding NumPy arrays, a SciPy sparse matrix and chumpy
objects. Unpickling runs whatever the file names, so they are read with a restricted unpickler
that admits only the array types listed in ``ALLOWED`` (chumpy objects are rebuilt as plain
arrays without importing chumpy) and refuses everything else.
"""

from __future__ import annotations

import pickle

import numpy as np

from voxmesh.schemas.errors import ConfigError

ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how Python 3 writes the bytes of an array in a protocol-2 pickle
    ("scipy.sparse.csc", "csc_matrix"), ("scipy.sparse._csc", "csc_matrix"),
    ("scipy.sparse.csr", "csr_matrix"), ("scipy.sparse._csr", "csr_matrix"),
    ("chumpy.ch", "Ch"), ("chumpy.reordering", "Select"), ("chumpy.ch_ops", "add"),
    ("chumpy.reordering", "transpose"), ("chumpy.ch_ops", "multiply"),
}


class ChumpyArray:
    """Stands in for a pickled chumpy object: keeps its state; ``value`` is its array."""

    def __init__(self, *args, **kwargs):
        self.state = {}

    def __setstate__(self, state):
        self.state = state

    @property
    def value(self) -> np.ndarray:
        if "x" in self.state:
            return np.asarray(self.state["x"])
        raise ConfigError("a chumpy object without a stored value ('x'); convert the model with chumpy installed")


class RestrictedUnpickler(pickle.Unpickler):
    """Finds only the globals in ``ALLOWED``; anything else raises ``pickle.UnpicklingError``."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an untrusted pickle")
        if module.startswith("chumpy"):
            return ChumpyArray
        if module.startswith("scipy"):
            import scipy.sparse
            return getattr(scipy.sparse, name)
        return super().find_class(module, name)


def load_untrusted_pickle(path: str):
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, encoding="latin1").load()


def as_array(value) -> np.ndarray:
    if isinstance(value, ChumpyArray):
        return value.value
    if hasattr(value, "toarray"):
        return value.toarray()
    return np.asarray(value)


def convert_flame(model_path: str, out_path: str, embedding_path: str | None = None, n_shape: int = 300) -> dict:
    """Write the npz the ``flame`` backend reads; returns the array shapes written."""
    model = load_untrusted_pickle(model_path)
    if not isinstance(model, dict):
        raise ConfigError(f"{model_path}: expected a dict of arrays, found {type(model).__name__}")
    missing = [k for k in ("v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights", "f")
               if k not in model]
    if missing:
        raise ConfigError(f"{model_path}: not a FLAME model (missing {', '.join(missing)})")
    shapedirs = as_array(model["shapedirs"]).astype(np.float32)
    arrays = {
        "v_template": as_array(model["v_template"]).astype(np.float32),
        "shapedirs": shapedirs[:, :, :n_shape],
        "exprdirs": shapedirs[:, :, n_shape:],
        "posedirs": as_array(model["posedirs"]).astype(np.float32),
        "J_regressor": as_array(model["J_regressor"]).astype(np.float32),
        "parents": as_array(model["kintree_table"])[0].astype(np.int64),
        "lbs_weights": as_array(model["weights"]).astype(np.float32),
        "faces": as_array(model["f"]).astype(np.int64),
    }
    arrays["parents"][0] = -1
    if embedding_path:
        embedding = _load_npy_dict(embedding_path) if embedding_path.endswith(".npy") else \
            load_untrusted_pickle(embedding_path)
        faces_key = next(k for k in ("full_lmk_faces_idx", "lmk_face_idx", "static_lmk_faces_idx") if k in embedding)
        bary_key = {"full_lmk_faces_idx": "full_lmk_bary_coords", "lmk_face_idx": "lmk_b_coords",
                    "static_lmk_faces_idx": "static_lmk_bary_coords"}[faces_key]
        arrays["lmk_faces_idx"] = as_array(embedding[faces_key]).reshape(-1).astype(np.int64)
        arrays["lmk_bary_coords"] = as_array(embedding[bary_key]).reshape(-1, 3).astype(np.float32)
    np.savez(out_path, **arrays)
    return {name: array.shape for name, array in arrays.items()}


def _load_npy_dict(path: str) -> dict:
    """FLAME's ``landmark_embedding.npy`` is a pickled dict inside a .npy: read it restrictedly."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        read_header(f)
        return RestrictedUnpickler(f, encoding="latin1").load()
