"""``voxmesh preview OUT_DIR KEY -o clip.mp4``: a sample's mesh sequence, shaded, beside its source
crop where the source video is still readable, with the sample's audio, so that a person can see and
hear whether lips and speech agree. Rendering is plain NumPy + Pillow (no display, no GPU)."""

from __future__ import annotations

import json
import logging

import av
import numpy as np
from PIL import Image, ImageDraw

from voxmesh.pipelines.ingest.audio import encode_audio
from voxmesh.pipelines.ingest.frames import iter_frames
from voxmesh.pipelines.ingest.item import join_uri
from voxmesh.pipelines.ingest.probe import MediaError, local_path
from voxmesh.schemas import FPS, SAMPLE_RATE, Sample, get_topology, load_samples, pcm_to_float, storage
from voxmesh.schemas.errors import UserError

log = logging.getLogger(__name__)

LIGHT = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0])


def render_mesh(vertices: np.ndarray, faces: np.ndarray, size: int, centre: np.ndarray, extent: float) -> np.ndarray:
    """Front view (x right, y up), orthographic, Lambert-shaded, painter's order (far faces first)."""
    image = Image.new("RGB", (size, size), (24, 24, 28))
    draw = ImageDraw.Draw(image)
    xy = (vertices[:, :2] - centre[:2]) / extent * (0.45 * size) * np.array([1, -1]) + size / 2
    triangles = vertices[faces]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    shade = 0.25 + 0.75 * np.abs(normals @ LIGHT)
    for f in np.argsort(triangles[:, :, 2].mean(axis=1)):
        level = int(210 * shade[f])
        draw.polygon([tuple(p) for p in xy[faces[f]]], fill=(level, level, int(level * 0.95)))
    return np.asarray(image)


def source_crops(sample: Sample, size: int, root: str = "") -> list[np.ndarray] | None:
    """Square crops around the face of each frame of the sample, or None if the source is gone;
    ``root`` is the input root that the sample's ``source_uri`` is relative to."""
    meta = sample.meta
    first = int(round(meta.start_time * FPS))
    crops: list[np.ndarray] = []
    try:
        with local_path(join_uri(root, meta.source_uri)) as path:
            index = 0
            for chunk in iter_frames(path):
                for frame in chunk:
                    t = index - first
                    index += 1
                    if 0 <= t < meta.n_frames:
                        points = sample.lmk2d[t]
                        low, high = points.min(axis=0), points.max(axis=0)
                        half = 0.7 * (high - low).max()
                        cx, cy = (low + high) / 2
                        box = (int(cx - half), int(cy - half), int(cx + half), int(cy + half))
                        crops.append(np.asarray(Image.fromarray(frame).crop(box).resize((size, size))))
                if index >= first + meta.n_frames:
                    break
    except (MediaError, OSError):
        return None
    return crops if len(crops) == meta.n_frames else None


def recorded_input_root(output: str) -> str:
    """The input root that ``dataset.json`` records, on any file system ("" when the file is
    missing or unreadable)."""
    try:
        return str(json.loads(storage.read_bytes(storage.join(output, "dataset.json"))).get("input_root", ""))
    except (OSError, ValueError, UserError):
        return ""


def write_preview(output: str, key: str, out_path: str, size: int = 384) -> str:
    """Render the sample ``key`` of the dataset in ``output`` to ``out_path`` (H.264 + AAC mp4)."""
    sample = load_samples(output, [key])[key]
    faces = get_topology(sample.meta.topology).faces
    low, high = sample.mesh.reshape(-1, 3).min(axis=0), sample.mesh.reshape(-1, 3).max(axis=0)
    centre, extent = (low + high) / 2, float((high - low)[:2].max() / 2)
    root = recorded_input_root(output)
    crops = source_crops(sample, size, root)
    if crops is None:
        log.warning("the preview of %s shows its meshes only: its source video %s is not readable here",
                    key, join_uri(root, sample.meta.source_uri))
    with av.open(storage.local_file_to_write(out_path), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "23"})
        video.width, video.height, video.pix_fmt = size * (2 if crops else 1), size, "yuv420p"
        audio = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for t in range(sample.meta.n_frames):
            picture = render_mesh(sample.mesh[t], faces, size, centre, extent)
            if crops:
                picture = np.concatenate([crops[t], picture], axis=1)
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")))
        container.mux(video.encode())
        encode_audio(container, audio, pcm_to_float(sample.audio))
    return out_path
