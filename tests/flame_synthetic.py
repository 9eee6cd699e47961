"""A small synthetic model in FLAME's layout (random low-rank bases on a small template, five
joints with FLAME's parents, skinning weights, a 68-point landmark embedding), for tests."""

import numpy as np

PARENTS = np.array([-1, 0, 1, 1, 1])


def synthetic_flame(seed: int = 0, n_vertices: int = 300, n_shape: int = 6, n_expression: int = 8,
                    n_landmarks: int = 68) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    theta, phi = rng.uniform(0, np.pi, n_vertices), rng.uniform(-np.pi / 2, np.pi / 2, n_vertices)
    template = np.stack([0.08 * np.sin(phi), 0.1 * np.cos(theta), 0.06 * np.cos(phi) * np.sin(theta)], axis=1)
    faces = np.stack([rng.choice(n_vertices, 3, replace=False) for _ in range(2 * n_vertices)])
    regressor = rng.random((5, n_vertices)) ** 8
    weights = np.exp(3 * rng.random((n_vertices, 5)))
    bary = rng.random((n_landmarks, 3)) + 0.1
    return {
        "v_template": template.astype(np.float32),
        "shapedirs": (0.01 * rng.standard_normal((n_vertices, 3, n_shape))).astype(np.float32),
        "exprdirs": (0.01 * rng.standard_normal((n_vertices, 3, n_expression))).astype(np.float32),
        "posedirs": (0.001 * rng.standard_normal((n_vertices, 3, 36))).astype(np.float32),
        "J_regressor": (regressor / regressor.sum(axis=1, keepdims=True)).astype(np.float32),
        "parents": PARENTS,
        "lbs_weights": (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32),
        "faces": faces.astype(np.int64),
        "lmk_faces_idx": rng.choice(len(faces), n_landmarks, replace=False).astype(np.int64),
        "lmk_bary_coords": (bary / bary.sum(axis=1, keepdims=True)).astype(np.float32),
    }
