"""``voxmesh stats``: a built dataset's summary figures and an HTML report with plots."""

from __future__ import annotations

import argparse
import json
import os

from voxmesh.pipelines.dataset.report import read_tables, summarize, write_report
from voxmesh.schemas.errors import ConfigError

HELP = "text summary and an HTML report with plots of a built dataset"
DESCRIPTION = """Print a dataset's counts (inputs, clips, hours, speakers, splits, failures by reason) and
write OUT/report/index.html with plots of clip lengths, clips per speaker, head pose, confidence
and failures."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="DATASET", help="the folder written by `voxmesh build`")
    parser.add_argument("--report", default=None, help="report folder (default OUT/report)")


def run(args: argparse.Namespace) -> int:
    if args.report and os.path.isfile(args.report):
        raise ConfigError(f"--report {args.report} is a file; give a folder for the report's index.html and plots")
    manifest, failures = read_tables(args.output)
    summary = summarize(manifest, failures)
    for name, value in summary.items():
        print(f"{name}: {json.dumps(value)}")
    print(f"report: {write_report(args.output, manifest, failures, summary, args.report)}")
    return 0
