"""voxmesh: talking-face videos -> speech-driven 3D facial animation benchmark shards.

The repository keeps the design card's top-level folders (schemas/, recon/, pipelines/,
metrics/, models/); they are installed as subpackages of one import namespace, ``voxmesh``, so
that nothing generic lands at the top of site-packages. The one list of them is the set of
relative symbolic links in ``voxmesh/`` (``voxmesh/schemas -> ../schemas``, ...): through them
Python, mypy, ruff and editors resolve ``voxmesh.schemas`` to the real files of a checkout, and
the wheel is built from them (tests/test_packaging.py checks the links, the wheel and the worker
image's build context).
"""

from setuptools import find_packages, setup

setup(
    name="voxmesh",
    version="0.1.0",
    description="Build and validate speech-driven 3D facial animation datasets from talking-face videos",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["voxmesh", "voxmesh.*"]),  # follows the links
    package_data={"voxmesh.schemas": ["topologies/*.npz"], "voxmesh.models": ["configs/*.toml"]},
    install_requires=[
        # 0.10.21 is the last release whose wheel ships the face models (later ones download them).
        "mediapipe==0.10.21",
        "numpy>=1.26,<2",       # mediapipe 0.10.21 is built against numpy 1.x
        "protobuf>=4.25,<5",    # mediapipe 0.10.21
        "apache-beam==2.77.0",
        "av==18.1.0",           # PyAV: FFmpeg inside the wheel, exact timestamps
        "soxr==1.1.0",          # band-limited resampling to 16 kHz
        "webdataset==1.0.2",
        "pyarrow>=21,<26",
        "scipy>=1.11",          # filters, rotations, matrix square roots in the metrics
        "scikit-image>=0.24",   # the demo's bundled photograph
    ],
    extras_require={
        # torch: the learned sync model and the training stage. Install the CPU build 2.13.0 first
        # on machines without a GPU (the Makefile does), or pip pulls several GB of CUDA packages.
        "torch": ["torch==2.13.0"],
        # fan3d: face-alignment's own dependencies but opencv-python, which would overwrite the cv2
        # of mediapipe's opencv-contrib-python; face-alignment itself is then installed with
        # `pip install --no-deps face-alignment==1.5.0` (the Makefile does).
        "fan3d": ["torch==2.13.0", "numba>=0.60", "tqdm"],
        # speech: HuBERT / wav2vec 2.0 features from a local model folder (data.audio_model).
        "speech": ["transformers>=5.23,<6"],
        # aws / gcp: Beam's S3 and GCS file systems, for inputs and outputs on object stores; gcp also
        # the Dataflow runner's clients. Not Beam's own gcp extra: its Bigtable client needs
        # protobuf>=6.33.5, and mediapipe 0.10.21 needs protobuf<5. These are the clients that Beam's
        # GCS file system and Dataflow runner import, with the version ranges Beam's extra gives them.
        "aws": ["apache-beam[aws]==2.77.0"],
        "gcp": ["apache-beam==2.77.0", "cachetools>=3.1.0,<7", "google-api-core>=2.0.0,<3",
                "google-apitools>=0.5.31,<0.5.32", "google-auth>=2.0.0,<3", "google-auth-httplib2>=0.1.0,<0.3.0",
                "google-cloud-core>=2.0.0,<3", "google-cloud-storage>=2.18.2,<4",
                "google-cloud-resource-manager>=1.12.0,<2", "google-cloud-dataflow-client>=0.13.0,<0.14.0"],
        # test: datasets opens the dataset folder (tests/test_dataset_readers.py); moto[server] is the
        # S3-compatible server the object-store tests start on 127.0.0.1.
        "test": ["pytest>=8", "wids==0.1.11", "transformers>=5.23,<6", "datasets==5.2.0", "moto[server]==5.2.5"],
        "lint": ["ruff==0.17.6", "mypy==2.4.1"],
    },
    entry_points={
        "console_scripts": ["voxmesh = voxmesh.cli:entry_point"],
        "voxmesh.recon_backends": [
            "mediapipe = voxmesh.recon.mediapipe_mesh:MediaPipeFaceMesh",
            "flame = voxmesh.recon.flame:FlameBackend",
            "fan3d = voxmesh.recon.fan3d:Fan3D",
            "deca = voxmesh.recon.deca:DecaBackend",
        ],
    },
)
