# Worker image for running `voxmesh build` on a cluster runner (Dataflow, Flink, Spark) with the
# MediaPipe backend. Beam's own Python 3.11 SDK image provides the boot binary (the entrypoint);
# the Beam version here must equal setup.py's pin (tests/test_packaging.py checks it).
FROM apache/beam_python3.11_sdk:2.77.0

# MediaPipe imports OpenCV, which needs libGL and GLib at import time. FFmpeg itself comes inside
# the PyAV wheel.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/voxmesh
# The whole build context, filtered by .dockerignore: every subpackage comes along by itself.
COPY . .
RUN pip install --no-cache-dir -c constraints.txt . && python -c "import voxmesh.pipelines.build"
