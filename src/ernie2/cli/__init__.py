"""The `ernie2` command line: every module in this package is one sub-command.

A command module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int | None`;
its name (underscores become hyphens) is the sub-command's name. Adding a command means adding
one file here, nothing else.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
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
    debug_help = "show the traceback of a failure (or set ERNIE2_DEBUG=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in _commands():
        p = sub.add_parser(name, help=mod.HELP, description=mod.__doc__ or mod.HELP,
                           formatter_class=HelpFormatter)
        if command in (None, name):
            mod.add_arguments(p)
            p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                           help=debug_help)
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
    debug = args.debug or os.environ.get("ERNIE2_DEBUG", "") not in ("", "0")
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"ernie2 {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the one error path: every failure is one line
        if debug:
            raise
        print(f"ernie2 {args.command}: error: {describe(exc)}", file=sys.stderr)
        return 1


# Errors ernie2 raises with a message that says what, where and what was expected.
_OURS = (ValueError, FileNotFoundError, KeyError)


def describe(exc: BaseException) -> str:
    """One line for a failure: ernie2's own message, or the exception's type and message (an
    OSError as `file: reason`), with a pointer to --debug for what ernie2 did not foresee."""
    if isinstance(exc, KeyError) and exc.args:
        msg = str(exc.args[0])
    elif isinstance(exc, OSError) and exc.strerror and exc.filename:
        msg = f"{exc.filename}: {exc.strerror}"
    else:
        msg = str(exc) or type(exc).__name__
    msg = " ".join(msg.split())  # one line
    if isinstance(exc, _OURS):
        return msg
    return f"{type(exc).__name__}: {msg} (--debug shows the traceback)"


if __name__ == "__main__":
    sys.exit(main())
