"""``voxmesh eval``: metrics of predicted meshes against a dataset's reference samples."""

from __future__ import annotations

import argparse
import os
import sys

from voxmesh.commands.arguments import check_local_output
from voxmesh.metrics.evaluate import evaluate
from voxmesh.metrics.tables import markdown_table, write_results
from voxmesh.schemas.errors import ConfigError

HELP = "metrics of predicted meshes against a dataset's reference samples"
DESCRIPTION = """Score folders of {key}.npy predictions ((T,V,3), or (N,T,V,3) for N samples of the same
audio) against the reference samples of a dataset with the published motion metrics, one table
row per --pred plus two context rows (template only; ground truth with shuffled audio), and write
OUT.json and OUT.md."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, action="append",
                        help="folder of {key}.npy predictions, (T,V,3) or (N,T,V,3); repeat to compare models")
    parser.add_argument("--name", action="append", default=None,
                        help="the table's name for each --pred, in order (default: the folder names)")
    parser.add_argument("--ref", required=True, help="the voxmesh dataset folder with the reference samples")
    parser.add_argument("--split", default=None, help="only this split of the reference (default: all)")
    parser.add_argument("--sync-weights", default=None,
                        help="SyncNet-3D weights (`voxmesh sync train`): LSE-D, LSE-C, FD on its lip embeddings")
    parser.add_argument("--style-weights", default=None,
                        help="style network weights (`voxmesh style train`): style matching, FD on its embeddings")
    parser.add_argument("--no-context", action="store_true", help="leave out the two context rows")
    parser.add_argument("--out", default=None, help="write OUT.json and OUT.md (default: the first PRED/results)")


def run(args: argparse.Namespace) -> int:
    if args.out:
        check_local_output(args.out, "--out")
    names = args.name or [os.path.basename(os.path.normpath(pred)) for pred in args.pred]
    if len(names) != len(args.pred) or len(set(names)) != len(names):
        raise ConfigError("give one distinct --name per --pred")
    table = evaluate(dict(zip(names, args.pred)), args.ref, args.split, args.sync_weights, args.style_weights,
                     context=not args.no_context)
    for name, pred in zip(names, args.pred):
        for key in table[name]["predictions_without_reference"]:
            print(f"voxmesh eval: {pred}/{key}.npy has no reference sample in {args.ref}", file=sys.stderr)
    for name, results in table.items():
        for note in results.get("notes", []):
            print(f"voxmesh eval: {name}: {note}", file=sys.stderr)
    print(markdown_table(table), end="")
    json_path, _ = write_results(table, args.out or os.path.join(args.pred[0], "results"))
    print(f"results: {json_path}")
    return 0
