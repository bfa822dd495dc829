"""The `ernie2` command line: every module in this package is one sub-command.

A command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int | None`;
its name (underscores become hyphens) is the sub-command's name. Adding a command means adding
one file here, nothing else.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys


def _commands():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield info.name.replace("_", "-"), importlib.import_module(f"{__name__}.{info.name}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; given a `command`, only that one's flags are defined (defining some
    commands' flags imports torch), so `ernie2 X` starts as fast as X allows."""
    from ernie2 import __version__
    from ernie2.cli._flags import HelpFormatter, accept_both_spellings

    parser = argparse.ArgumentParser(
        prog="ernie2", description="ERNIE 2.0 on PyTorch: pre-training, fine-tuning, inference.")
    parser.add_argument("--version", action="version", version=f"ernie2 {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _commands():
        p = sub.add_parser(name, help=mod.HELP, description=mod.__doc__ or mod.HELP,
                           formatter_class=HelpFormatter)
        if command in (None, name):
            mod.add_arguments(p)
            accept_both_spellings(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ernie2.utils import setup_logging

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(next((a for a in argv if not a.startswith("-")), ""))
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args._run(args) or 0)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        if args.verbose:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"ernie2 {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
