"""The ``ip-pyro`` command line.

    ip-pyro data TASK --out DIR [--seed S]
    ip-pyro train --task TASK (star-*, maze-*, qm9, moses, smiles) --model {fo-arm,ip} --guide {uniform,l2r,r2l,ends,pl,tree,sequential,pointer} --steps N
                  --batch-size B --d-model D --layers L --lr LR --device DEV --seed S --out DIR
                  [--checkpoint-every K] [--resume] [--data DIR] [--guide-lr LR] ...
    ip-pyro eval --checkpoint PATH [--split test] [--decode greedy|sample] [--nll-samples K]
    ip-pyro sample --checkpoint PATH -n N [--split test]
    ip-pyro diagnose CHECKPOINT [--data FILE] [--out DIR] [--domain path|smiles|generic] ...

Errors are one line on stderr with a non-zero exit status; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from ip_pyro.cli import data, diagnose, eval, sample, train
from ip_pyro.cli.common import CommandError

__all__ = ["main", "build_parser", "CommandError"]

VERBS = (data, train, eval, sample, diagnose)


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help line ends with its default (unless the line already names one, or there is none)."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings \
                and "default" not in text.lower():
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ip-pyro", description="The Insertion Process in Pyro.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    for verb in VERBS:
        verb.add_parser(commands)
    for verb_parser in commands.choices.values():
        verb_parser.formatter_class = HelpFormatter
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each (``warning: ...``), without Python's source location."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    shown, warnings.showwarning = warnings.showwarning, _one_line_warning
    try:
        code = args.run(args)
        if getattr(args, "distributed", False):
            # gloo's worker threads can abort the interpreter's teardown ("terminate called without an active
            # exception") after a finished run; everything is written and the group destroyed, so leave directly
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except (ValueError, OSError, FloatingPointError) as error:
        if args.debug:
            raise
        print(f"ip-pyro {args.command}: error: {error}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = shown
