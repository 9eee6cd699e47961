"""``voxmesh backends``: the registered reconstruction backends and whether each can run here."""

from __future__ import annotations

import argparse

from voxmesh.recon import BackendUnavailable, backend_classes

HELP = "list reconstruction backends: topology, GPU, files, availability"
DESCRIPTION = """List every backend registered under the entry-point group voxmesh.recon_backends with its
topology, whether it needs a GPU, the files it needs, and whether it can run here (or why not)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    for name, cls in backend_classes().items():
        if isinstance(cls, BackendUnavailable):
            print(f"{name}\tunavailable: {cls}")
            continue
        reason = cls.unavailable_reason()
        files = "; ".join(cls.required_files) or "none"
        print(f"{name}\ttopology {cls.topology_name}\tGPU {'required' if cls.needs_gpu else 'not required'}\t"
              f"files: {files}\t{'available' if reason is None else 'unavailable: ' + reason}")
        if cls.description:
            print(f"\t{cls.description}")
    return 0
