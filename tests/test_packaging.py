"""The package, the worker image and the shipped data agree with each other."""

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import zipfile

import numpy as np

ROOT = os.path.join(os.path.dirname(__file__), "..")
SUBPACKAGES = sorted(name for name in os.listdir(os.path.join(ROOT, "voxmesh"))
                     if os.path.islink(os.path.join(ROOT, "voxmesh", name)))


def read(name: str) -> str:
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


def test_dockerfile_uses_the_python_and_beam_of_setup_py():
    setup, dockerfile, constraints = read("setup.py"), read("Dockerfile"), read("constraints.txt")
    beam = re.search(r'"apache-beam==([\d.]+)"', setup).group(1)
    python = re.search(r'python_requires=">=(3\.\d+)', setup).group(1)
    assert f"FROM apache/beam_python{python}_sdk:{beam}" in dockerfile
    assert f"apache-beam=={beam}" in constraints.splitlines()


def test_every_requirement_and_extra_is_pinned_within_its_range_by_the_constraints():
    """The Makefile and both images install through constraints.txt: a requirement it does not pin
    would resolve to whatever is newest (the gcp extra's Google clients did, and Beam's own gcp
    extra cannot be installed at all beside mediapipe: its Bigtable client needs protobuf 6)."""
    import ast
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    pins = {canonicalize_name(name): version for name, version in
            (line.split("==") for line in read("constraints.txt").splitlines() if "==" in line)}
    call = next(node for node in ast.walk(ast.parse(read("setup.py")))
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup")
    given = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords
             if keyword.arg in ("install_requires", "extras_require")}
    requirements = [Requirement(r) for r in
                    given["install_requires"] + [r for extra in given["extras_require"].values() for r in extra]]
    for requirement in [r for r in requirements if r.extras]:  # what an installed package's extras bring
        for extra in requirement.extras:
            requirements += [needed for needed in map(Requirement, metadata.requires(requirement.name) or [])
                             if needed.marker is not None and needed.marker.evaluate({"extra": extra})]
    for requirement in requirements:
        if [spec.operator for spec in requirement.specifier] == ["=="]:
            continue  # pinned where it is required (torch: its CPU or CUDA build is chosen by the index)
        pinned = pins.get(canonicalize_name(requirement.name))
        assert pinned is not None and requirement.specifier.contains(pinned, prereleases=True), str(requirement)
    assert pins["protobuf"].startswith("4.")  # mediapipe 0.10.21's


def test_the_gpu_image_pins_a_torch_build_for_the_cuda_of_its_base_image():
    dockerfile, setup, makefile = read("Dockerfile"), read("setup.py"), read("Makefile")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, flags=re.M))
    cuda, torch_cuda = args["CUDA_VERSION"], args["TORCH_CUDA"]
    assert torch_cuda == "cu" + "".join(cuda.split(".")[:2]), (cuda, torch_cuda)  # 12.8.x -> cu128
    assert "FROM nvidia/cuda:${CUDA_VERSION}-cudnn-runtime-" in dockerfile
    assert "https://download.pytorch.org/whl/${TORCH_CUDA}" in dockerfile
    torch_pins = set(re.findall(r"torch==([\d.]+)", dockerfile))
    assert torch_pins == set(re.findall(r"torch==([\d.]+)", setup)) == set(re.findall(r"torch==([\d.]+)", makefile))
    assert len(torch_pins) == 1
    beam = re.search(r'"apache-beam==([\d.]+)"', setup).group(1)
    assert re.search(rf"^FROM apache/beam_python3\.11_sdk:{beam} AS beam$", dockerfile, flags=re.M)
    assert "COPY --from=beam /opt/apache/beam /opt/apache/beam" in dockerfile
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in dockerfile
    assert args["VARIANT"] == "cpu" and "FROM base-${VARIANT}" in dockerfile


def dockerignore_patterns() -> list[str]:
    lines = read(".dockerignore").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "exceptions (!) are not laid out by this test"
    return patterns


def ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule for these patterns: a path is left out when it, or a folder above it, matches."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    for pattern in patterns:
        bare = pattern[3:] if pattern.startswith("**/") else None
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
        if bare and any(fnmatch.fnmatchcase(part, bare) for part in parts):
            return True
    return False


def lay_out_build_context(destination: str) -> list[str]:
    """Copy what the Dockerfile's `COPY . .` copies (the repository less .dockerignore), keeping
    symbolic links as links, as Docker does. Returns the relative paths copied."""
    patterns, copied = dockerignore_patterns(), []
    for folder, dirs, files in os.walk(ROOT):
        relative_folder = os.path.relpath(folder, ROOT)
        dirs[:] = [d for d in dirs if not ignored(os.path.normpath(os.path.join(relative_folder, d)), patterns)
                   and not os.path.islink(os.path.join(folder, d))]
        links = [d for d in os.listdir(folder) if os.path.islink(os.path.join(folder, d))]
        for name in files + [link for link in links if link not in files]:
            relative = os.path.normpath(os.path.join(relative_folder, name))
            if ignored(relative, patterns):
                continue
            target = os.path.join(destination, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            source = os.path.join(ROOT, relative)
            if os.path.islink(source):
                os.symlink(os.readlink(source), target)
            else:
                shutil.copy2(source, target)
            copied.append(relative)
    return copied


def test_the_dockerfile_copies_the_whole_filtered_context():
    dockerfile = read("Dockerfile")
    assert "COPY . ." in dockerfile
    assert not re.search(r"^COPY (?!\. \.)(?!--from)", dockerfile, flags=re.M), "copy the context, not folders"


def test_a_wheel_built_from_the_docker_context_holds_every_subpackage(tmp_path):
    context = tmp_path / "context"
    copied = lay_out_build_context(str(context))
    assert not [p for p in copied if p.startswith(("tests/", ".venv/", ".git/", "out/"))]
    assert SUBPACKAGES == ["metrics", "models", "pipelines", "recon", "schemas"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "wheel"), str(context)], check=True, capture_output=True)
    (wheel,) = os.listdir(tmp_path / "wheel")
    names = zipfile.ZipFile(tmp_path / "wheel" / wheel).namelist()
    for subpackage in SUBPACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, subpackage)):
            for name in files:
                if name.endswith(".py"):
                    relative = os.path.relpath(os.path.join(folder, name), ROOT)
                    assert f"voxmesh/{relative}" in names, f"{relative} is missing from the wheel"
    assert "voxmesh/schemas/topologies/mediapipe478.npz" in names
    assert "voxmesh/models/configs/rvq.toml" in names
    assert "voxmesh/commands/build.py" in names
    assert not [n for n in names if n.startswith(("schemas/", "recon/", "metrics/", "models/", "pipelines/"))]


def test_mediapipe_backend_is_registered_through_the_entry_point_group():
    from voxmesh.recon import backend_class, backend_classes
    from voxmesh.recon.mediapipe_mesh import MediaPipeFaceMesh
    assert backend_classes()["mediapipe"] is MediaPipeFaceMesh
    assert backend_class("mediapipe") is MediaPipeFaceMesh


def test_unknown_backend_fails_before_any_work_with_a_clear_error(tmp_path, capsys):
    from voxmesh.cli import main
    assert main(["build", "--input", str(tmp_path), "--output", str(tmp_path / "out"), "--backend", "nope"]) == 2
    assert "unknown reconstruction backend 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_shipped_mediapipe_topology_is_what_build_topology_makes():
    from skimage import data

    from voxmesh.recon.mediapipe_mesh import build_topology
    from voxmesh.schemas import get_topology
    shipped, rebuilt = get_topology("mediapipe478"), build_topology(data.astronaut())
    np.testing.assert_allclose(shipped.template, rebuilt.template, atol=1e-3)
    for field in ("faces", "lip_idx", "upper_face_idx", "stable_idx"):
        np.testing.assert_array_equal(getattr(shipped, field), getattr(rebuilt, field))
    assert shipped.n_vertices == shipped.n_landmarks == 478
