"""The ``voxmesh`` command line: one verb per module of ``voxmesh.commands``.

Errors a user can act on (:class:`~voxmesh.schemas.errors.UserError`) are printed as one line,
``voxmesh VERB: what is wrong and what to do``, with exit code 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from voxmesh.schemas.errors import UserError

# verb -> module of voxmesh.commands, in the order `voxmesh --help` lists them
COMMANDS = {
    "build": "build", "validate": "validate", "stats": "stats", "preview": "preview",
    "train": "train", "generate": "generate", "eval": "eval", "sync": "sync", "style": "style",
    "backends": "backends", "convert-flame": "convert_flame", "demo": "demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxmesh", description="Build speech-driven 3D facial animation datasets from talking-face videos, "
                                    "validate and inspect them, train and evaluate speech-to-motion models.")
    verbs = parser.add_subparsers(dest="command", required=True, metavar="VERB")
    for verb, module_name in COMMANDS.items():
        module = importlib.import_module(f"voxmesh.commands.{module_name}")
        sub = verbs.add_parser(verb, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and args.command != "build":
        parser.error(f"{args.command}: unrecognised arguments: {' '.join(beam_args)}")
    args.beam_args = beam_args
    try:
        return args.run(args)
    except UserError as error:
        print(f"voxmesh {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
