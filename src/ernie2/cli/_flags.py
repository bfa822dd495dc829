"""How every command's flags read: --output_dir and --output-dir both work (help shows the
spelling the command defines), and --help shows a default only where it says something."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" unless the help already names the default, or there is nothing to
    say: no default (None, an empty list), or an on/off switch whose default is "not given"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default in (None, argparse.SUPPRESS, [])
                or isinstance(action.default, bool) or action.nargs == 0):
            return text
        return super()._get_help_string(action)


def _other_spelling(option: str) -> str:
    body = option[2:]
    return "--" + (body.replace("_", "-") if "_" in body else body.replace("-", "_"))


def accept_both_spellings(parser: argparse.ArgumentParser) -> None:
    """Let every --long_option also answer to --long-option and the reverse, in this parser and
    its sub-parsers; the other spelling is not listed in --help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                accept_both_spellings(sub)
        for option in action.option_strings:
            other = _other_spelling(option)
            if option.startswith("--") and other not in parser._option_string_actions:
                parser._option_string_actions[other] = action
