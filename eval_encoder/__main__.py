"""``python -m eval_encoder <command>``: probe, demo, ls, codec, suite, leaderboard, ..."""
from __future__ import annotations

import importlib
import inspect
import sys
from typing import List, Optional

from eval_encoder.resources import MissingData

PROG = "python -m eval_encoder"
COMMANDS = {
    "probe": ("eval_encoder.probe.run", "run one attentive probe (same flags as attentive_probe.py)"),
    "demo": ("eval_encoder.demo", "generate the demo data and a tiny encoder, then probe it"),
    "ls": ("eval_encoder.listing", "list encoder families, model names, datasets and recipes"),
    "codec": ("eval_encoder.codec.cli", "codec patch selection tools (precompute)"),
    "suite": ("eval_encoder.suite.cli", "run a recipe over its datasets"),
    "leaderboard": ("eval_encoder.report.cli", "build leaderboard tables from run records"),
    "compare": ("eval_encoder.report.compare", "paired comparison of two runs or leaderboard rows"),
    "prepare": ("eval_encoder.prepare.cli", "official annotations -> manifests in a data root"),
    "check": ("eval_encoder.prepare.check", "health report of a dataset in a data root"),
}


def run_command(name: str, argv: List[str]) -> int:
    """Call the command's ``main``; one that takes ``prog`` (probe, shared with the upstream
    script names) is told it runs as ``python -m eval_encoder <name>``."""
    main = importlib.import_module(COMMANDS[name][0]).main
    kwargs = {"prog": f"{PROG} {name}"} if "prog" in inspect.signature(main).parameters else {}
    return int(main(argv, **kwargs) or 0)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
        print(f"usage: {PROG} <command> [options]\n\ncommands:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0

    try:
        return run_command(argv[0], argv[1:])
    except MissingData as exc:  # an install without its data, a wrong override: say which
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
