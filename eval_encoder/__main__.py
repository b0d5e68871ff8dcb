"""``python -m eval_encoder <command>``: probe, demo, ls, codec, suite, leaderboard, embed, ..."""
from __future__ import annotations

import importlib
import inspect
import sys
from typing import List, Optional

from eval_encoder import __version__
from eval_encoder.record import git_commit
from eval_encoder.resources import MissingData
from eval_encoder.text import did_you_mean

PROG = "python -m eval_encoder"
COMMANDS = {
    "probe": ("eval_encoder.probe.run", "run one attentive probe (same flags as attentive_probe.py)"),
    "demo": ("eval_encoder.demo", "generate the demo data and a tiny encoder, then probe it"),
    "ls": ("eval_encoder.listing", "list encoder families, model names, datasets and recipes"),
    "codec": ("eval_encoder.codec.cli", "codec patch selection tools (precompute)"),
    "suite": ("eval_encoder.suite.cli", "run a recipe over its datasets"),
    "leaderboard": ("eval_encoder.report.cli", "build leaderboard tables from run records"),
    "report": ("eval_encoder.report.site", "a static HTML report of run records (opens from disk)"),
    "compare": ("eval_encoder.report.compare", "paired comparison of two runs or leaderboard rows"),
    "prepare": ("eval_encoder.prepare.cli", "official annotations -> manifests in a data root"),
    "check": ("eval_encoder.prepare.check", "health report of a dataset in a data root"),
    "embed": ("eval_encoder.embed", "an encoder's features of videos or a split, as a store"),
}

TOP_FLAGS = ("--help", "--version")


def run_command(name: str, argv: List[str]) -> int:
    """Call the command's ``main``; one that takes ``prog`` (probe, shared with the upstream
    script names) is told it runs as ``python -m eval_encoder <name>``."""
    main = importlib.import_module(COMMANDS[name][0]).main
    kwargs = {"prog": f"{PROG} {name}"} if "prog" in inspect.signature(main).parameters else {}
    return int(main(argv, **kwargs) or 0)


def version() -> str:
    """``eval-encoder <version>``, with the checkout's commit when run from one."""
    commit = git_commit()
    return f"eval-encoder {__version__}" + (f" (git {commit})" if commit else "")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return (f"usage: {PROG} <command> [options]   ({PROG} --version: the version)\n\n"
            "commands:\n" + "\n".join(lines))


def unknown_command(name: str) -> int:
    """A short error for a command that is not one, with the closest commands; status 2."""
    hint = did_you_mean(name, [*COMMANDS, *TOP_FLAGS])
    print(f"{PROG}: error: unknown command {name!r}.{hint} ({PROG} --help lists the "
          "commands)", file=sys.stderr)
    return 2


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] in ("-V", "--version"):
        print(version())
        return 0
    if argv[0] not in COMMANDS:
        return unknown_command(argv[0])
    try:
        return run_command(argv[0], argv[1:])
    except MissingData as exc:  # an install without its data, a wrong override: say which
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
