"""The direct graph call, on the calling thread, gives what MediaPipe's own ``process`` gives,
frame for frame."""

import itertools

import numpy as np

from voxmesh.pipelines.ingest.faces import FaceDetector, crop
from voxmesh.pipelines.ingest.frames import iter_images
from voxmesh.pipelines.ingest.tracking import TrackRules
from voxmesh.recon.mediapipe_graph import on_calling_thread, output_packet, serialized_protos
from voxmesh.recon.mediapipe_mesh import MediaPipeFaceMesh, landmarks_to_points


def real_frames(media_dir: str, n: int) -> list[np.ndarray]:
    return list(itertools.islice(iter_images(f"{media_dir}/hdtf_aoc_512_25fps.mp4"), n))


def test_face_mesh_landmarks_are_the_bytes_process_gives_in_tracking_mode(media_dir):
    import mediapipe as mp
    frames = real_frames(media_dir, 40)
    box = FaceDetector().detect(frames[0])[0]
    crops = [crop(f, box, TrackRules())[0] for f in frames]
    crops.append(np.zeros_like(crops[0]))  # no face: no packet, no landmarks

    def mesh():
        return mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=True)

    with mesh() as by_process, on_calling_thread(mesh()) as by_graph:
        expected = [[face.SerializeToString() for face in by_process.process(c).multi_face_landmarks or []]
                    for c in crops]
        got = [serialized_protos(output_packet(by_graph, c, "multi_face_landmarks")) for c in crops]
        config = by_graph._graph.text_config
    assert got == expected
    assert sum(len(faces) == 1 for faces in got) == len(crops) - 1 and got[-1] == []
    assert 'type: "ApplicationThreadExecutor"' in config

    backend = MediaPipeFaceMesh()
    backend.setup()
    first = backend.reconstruct(np.stack(crops))
    backend.reset()  # a new run of the rebuilt graph starts tracking afresh, like process's
    again = backend.reconstruct(np.stack(crops))
    backend.close()
    landmarks = np.stack([landmarks_to_points(faces[0], 256, 256)[:, :2] for faces in expected[:-1]])
    for recon in (first, again):
        assert np.array_equal(recon.lmk2d[:-1], landmarks.astype(np.float32))
        assert np.isnan(recon.lmk2d[-1]).all() and recon.n_faces.tolist() == [1] * 40 + [0]


def test_face_detector_boxes_are_those_of_process(media_dir):
    import mediapipe as mp
    frames = real_frames(media_dir, 10)
    frames.append(np.zeros_like(frames[0]))
    detector = FaceDetector()
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as reference:
        for frame in frames:
            height, width = frame.shape[:2]
            expected = [(d.location_data.relative_bounding_box.xmin * width,
                         d.location_data.relative_bounding_box.ymin * height)
                        for d in reference.process(frame).detections or []]
            boxes = detector.detect(frame)
            assert [tuple(b[:2]) for b in boxes] == expected
    assert len(detector.detect(frames[0])) == 1 and len(detector.detect(frames[-1])) == 0
    detector.close()


def test_landmarks_with_other_fields_set_are_parsed_field_by_field():
    from mediapipe.framework.formats import landmark_pb2
    message = landmark_pb2.NormalizedLandmarkList()
    for k in range(478):
        message.landmark.add(x=k / 478, y=0.5, z=-0.01, visibility=0.9)
    points = landmarks_to_points(message.SerializeToString(), 200, 100)
    assert points.shape == (478, 3)
    np.testing.assert_allclose(points[10], [10 / 478 * 200, 50, -2], rtol=1e-6)
