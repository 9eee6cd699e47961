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


def synthetic_embedding(arrays: dict[str, np.ndarray], n_landmarks: int = 105, seed: int = 1) -> dict[str, np.ndarray]:
    """An embedding in the layout of FLAME's ``mediapipe_landmark_embedding.npz`` on the model
    ``arrays``: triangles, barycentric weights, and distinct MediaPipe indices (< 478)."""
    rng = np.random.default_rng(seed)
    bary = rng.random((n_landmarks, 3)) + 0.1
    return {"lmk_face_idx": rng.choice(len(arrays["faces"]), n_landmarks, replace=False).astype(np.int64),
            "lmk_b_coords": (bary / bary.sum(axis=1, keepdims=True)).astype(np.float32),
            "landmark_indices": np.sort(rng.choice(478, n_landmarks, replace=False)).astype(np.int64)}


def synthetic_track(model, n_frames: int, faces_idx=None, bary=None, seed: int = 1, noise: float = 0.0):
    """Landmark targets (T, L, 3) of a known FLAME track on ``model`` (a FlameModel): a random
    shape, expression as a random walk, the jaw opening and closing, then turned, scaled to
    centimetres and moved; ``noise`` adds Gaussian noise of that fraction of the targets' spread.
    Returns ``(targets, truth)`` with truth = {shape, expression, jaw, rotation}."""
    import torch
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    shape = torch.tensor(rng.standard_normal(model.n_shape), dtype=torch.float32)
    expression = torch.tensor(np.cumsum(0.3 * rng.standard_normal((n_frames, model.n_expression)), axis=0)
                              / np.sqrt(np.arange(1, n_frames + 1))[:, None] * 2, dtype=torch.float32)
    opening = 0.1 + 0.1 * np.sin(np.arange(n_frames) / 4)
    jaw = torch.tensor(np.stack([opening, np.zeros(n_frames), np.zeros(n_frames)], 1), dtype=torch.float32)
    faces = model.lmk_faces_idx if faces_idx is None else torch.as_tensor(faces_idx)
    weights = model.lmk_bary_coords if bary is None else torch.as_tensor(bary)
    with torch.no_grad():
        vertices = model(shape, expression, jaw)
        landmarks = torch.einsum("blkc,lk->blc", vertices[:, model.faces[faces]], weights).numpy()
    rotation = Rotation.from_euler("xyz", [10, -20, 5], degrees=True).as_matrix()
    targets = 50 * landmarks @ rotation.T + np.array([1.0, 2.0, -3.0])
    targets = targets + noise * targets.std() * rng.standard_normal(targets.shape)
    truth = {"shape": shape.numpy(), "expression": expression.numpy(), "jaw": jaw.numpy(), "rotation": rotation}
    return targets, truth


def reference_lbs(model, shape, expression, jaw, parents=PARENTS):
    """FLAME's linear blend skinning (Li et al. 2017) written out in full, joint by joint (the
    kinematic chain of 4x4 transforms), with only the jaw turned: the reference that
    ``FlameModel.forward``'s closed form is checked against."""
    import torch

    from voxmesh.recon.flame_model import rodrigues

    batch = expression.shape[0]
    shaped = model.shaped(shape, expression)
    joints = torch.einsum("jv,bvc->bjc", model.J_regressor, shaped)
    n_joints = joints.shape[1]
    pose = torch.zeros(batch, n_joints, 3, dtype=shaped.dtype, device=shaped.device)
    pose[:, 2] = jaw  # FLAME's joints: global, neck, jaw, left eye, right eye
    rotations = rodrigues(pose)
    eye = torch.eye(3, dtype=shaped.dtype, device=shaped.device)
    features = (rotations[:, 1:] - eye).reshape(batch, -1)
    posed = shaped + torch.einsum("bp,vcp->bvc", features, model.posedirs)
    transforms: list[torch.Tensor] = []
    for j in range(n_joints):
        local = torch.eye(4, dtype=shaped.dtype, device=shaped.device).repeat(batch, 1, 1)
        local[:, :3, :3] = rotations[:, j]
        parent = int(parents[j])
        local[:, :3, 3] = joints[:, j] - (joints[:, parent] if parent >= 0 else 0)
        transforms.append(local if parent < 0 else transforms[parent] @ local)
    world = torch.stack(transforms, dim=1)
    rest = torch.einsum("bjxy,bjy->bjx", world[:, :, :3, :3], joints)
    world = world.clone()
    world[:, :, :3, 3] = world[:, :, :3, 3] - rest
    blended = torch.einsum("vj,bjxy->bvxy", model.lbs_weights, world)
    return torch.einsum("bvxy,bvy->bvx", blended[:, :, :3, :3], posed) + blended[:, :, :3, 3]
