# Worker image for `voxmesh build` on a cluster runner (Dataflow, Flink, Spark).
#
#   CPU (default):  docker build -t voxmesh-worker .
#   GPU (CUDA):     docker build --build-arg VARIANT=gpu -t voxmesh-worker-gpu .
#
# The CPU image starts from Beam's own Python 3.11 SDK image; the GPU image from NVIDIA's CUDA
# runtime image with Python 3.11 and Beam's boot binary (the container entrypoint) copied from
# Beam's SDK image. The Beam version here must equal setup.py's pin, and the CUDA version of the
# base image must be the one the torch wheel is built for (tests/test_packaging.py checks both).
ARG VARIANT=cpu
ARG CUDA_VERSION=12.8.1
ARG TORCH_CUDA=cu128

FROM apache/beam_python3.11_sdk:2.77.0 AS beam

FROM beam AS base-cpu
ENV VOXMESH_TORCH_INDEX=https://download.pytorch.org/whl/cpu
# MediaPipe imports OpenCV, which needs libGL and GLib at import time. FFmpeg comes inside the
# PyAV wheel.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-ubuntu22.04 AS base-gpu
ARG TORCH_CUDA
ENV VOXMESH_TORCH_INDEX=https://download.pytorch.org/whl/${TORCH_CUDA} DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY --from=beam /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]

FROM base-${VARIANT}
WORKDIR /opt/voxmesh
# The whole build context, filtered by .dockerignore: every subpackage comes along by itself.
COPY . .
# torch first, from the index of the variant's build (CPU, or the CUDA version of the base image);
# face-alignment without its dependencies (its opencv-python would replace MediaPipe's OpenCV).
RUN pip install --no-cache-dir "torch==2.13.0" --index-url "${VOXMESH_TORCH_INDEX}" \
 && pip install --no-cache-dir -c constraints.txt ".[torch,fan3d,aws,gcp]" \
 && pip install --no-cache-dir --no-deps -c constraints.txt face-alignment \
 && python -c "import voxmesh.pipelines.build, apache_beam.io.aws.s3filesystem"
