"""The layering of the design (which folder may import which), checked over the real import graph.

Every module under ``voxmesh/`` (through the subpackage links) is parsed, and every ``import``
and ``from ... import`` of a ``voxmesh`` module, at any depth of the file (function-level imports
count), becomes an edge. Relative imports are resolved against the importing module.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUBPACKAGES = sorted(link.name for link in (ROOT / "voxmesh").iterdir() if link.is_symlink())

# which subpackages each subpackage may import (itself always); "metrics.speech_features" is the
# one piece of metrics that models share (speech read the same way by both)
ALLOWED = {
    "schemas": set(),
    "recon": {"schemas"},
    "metrics": {"schemas"},
    "models": {"schemas", "metrics.speech_features"},
    "pipelines": {"schemas", "recon", "metrics"},
    "commands": {"schemas", "recon", "metrics", "models", "pipelines"},
}


def module_files() -> dict[str, Path]:
    """Module name -> file, walking voxmesh/ through the subpackage links."""
    modules = {}
    for folder, _, files in os.walk(ROOT / "voxmesh", followlinks=True):
        for name in files:
            if name.endswith(".py"):
                parts = Path(folder, name).relative_to(ROOT).with_suffix("").parts
                modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = Path(folder, name)
    return modules


def imports_of(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "voxmesh" or name.startswith("voxmesh.")}


def graph() -> dict[str, set[str]]:
    files = module_files()
    return {module: {name for name in imports_of(module, path) if name in files}
            for module, path in files.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_subpackage_is_a_link_to_its_top_level_folder():
    assert SUBPACKAGES == ["metrics", "models", "pipelines", "recon", "schemas"]
    for name in SUBPACKAGES:
        assert os.readlink(ROOT / "voxmesh" / name) == f"../{name}"
        assert (ROOT / name / "__init__.py").is_file()


def test_the_graph_sees_every_module():
    modules = graph()
    assert {"voxmesh.schemas.sample", "voxmesh.pipelines.ingest.process", "voxmesh.models.tokenizer",
            "voxmesh.commands.build"} <= set(modules)
    assert "voxmesh.schemas.sample" in modules["voxmesh.schemas"]


def may_import(source: str, target: str) -> bool:
    allowed = ALLOWED[source] | {source}
    return (target == "voxmesh" or layer(target) in allowed
            or any(target == f"voxmesh.{piece}" or target.startswith(f"voxmesh.{piece}.")
                   for piece in allowed if "." in piece))


@pytest.mark.parametrize("source", sorted(ALLOWED))
def test_layers_import_only_what_they_may(source):
    wrong = [f"{module} imports {target}" for module, targets in graph().items() if layer(module) == source
             for target in sorted(targets) if not may_import(source, target)]
    assert not wrong, "\n".join(wrong)


def test_the_rules_reject_what_the_architecture_forbids():
    assert not may_import("schemas", "voxmesh.recon.base")
    assert not may_import("models", "voxmesh.metrics.syncnet")
    assert not may_import("models", "voxmesh.pipelines.ingest.audio")
    assert may_import("models", "voxmesh.metrics.speech_features")
    assert not may_import("recon", "voxmesh.metrics.motion")


def test_no_import_cycles_between_modules():
    # a module that imports a package imports its __init__; cycles through __init__ re-exports of a
    # package's own modules are not real cycles, so edges into a module's own ancestors are skipped
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph().items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_build_workers_load_neither_torch_nor_webdataset():
    """Both cost every worker process about 1.2 s to import and 0.5 s to exit; the build writes its
    tars with ``tarfile`` and readers import webdataset only when they are used. scipy.signal
    (0.5 s) is not loaded either, not even by an offset estimate: its band-pass is written out."""
    code = ("import sys, numpy as np, voxmesh.pipelines.build.pipeline, voxmesh.schemas; "
            "from voxmesh.metrics.sync import loudness; loudness(np.ones(16000, np.int16)); "
            "print(sorted(m for m in ('torch', 'webdataset', 'scipy.signal') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
