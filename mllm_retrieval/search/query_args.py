"""Query words that start with `-` on the command line: `mllmret search dog -cat` excludes cat.

Click reads `-cat` as the short options -c -a -t and fails. QueryCommand reads every token that is not one
of the command's own options (or an option's value) as a query word, however it starts, and hands the
words to Click after `--`, where nothing is an option. `-k 5`, `-k5`, `--limit=5` stay options; negative
numbers stay values (`--min-similarity -1`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from typer.core import TyperCommand


def split_query_args(args: Sequence[str], params: Sequence[Any]) -> list[str]:
    """`args` with the command's options first, then `--`, then the query words in their order."""
    takes_value: dict[str, bool] = {}
    for p in params:
        if getattr(p, "is_flag", None) is not None:  # an option (arguments have no is_flag)
            for name in [*p.opts, *getattr(p, "secondary_opts", [])]:
                takes_value[name] = not (p.is_flag or getattr(p, "count", False))
    options: list[str] = []
    words: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            words.extend(args[i + 1:])
            break
        name = token.split("=", 1)[0] if token.startswith("--") else token
        short = token[:2]
        if name in takes_value or token.startswith("--"):
            options.append(token)
            if takes_value.get(name) and "=" not in token and i + 1 < len(args):
                options.append(args[i + 1])
                i += 1
        elif takes_value.get(short) and token[2:].replace(".", "").isdigit():
            options.append(token)  # -k5
        else:
            words.append(token)
        i += 1
    return [*options, "--", *words] if words else options


class QueryCommand(TyperCommand):
    """A command whose arguments are query words: `-word` excludes, it is not an unknown option."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, split_query_args(args, self.get_params(ctx)))
