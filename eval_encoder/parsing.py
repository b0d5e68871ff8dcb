"""Command-line parsers whose mistakes read short: argparse's error, the closest options to a
misspelt flag or value, and where the full list is (``--help``), instead of the whole usage
(85 lines for the probe) with no suggestion. Every command of ``python -m eval_encoder`` builds
its parser from :class:`ArgumentParser`; ``--help`` is argparse's own.
"""
from __future__ import annotations

import argparse
import re
from typing import Iterable, List, NoReturn, Sequence

from eval_encoder.text import did_you_mean

# argparse's wording (Python 3.11): "invalid choice: 'clen' (choose from 'paper', 'clean')"
_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with a short error (status 2): the message, the closest
    flags to an unrecognised one or the closest choices to a refused value, and a pointer to
    ``--help``; no usage block."""

    def error(self, message: str) -> NoReturn:
        hint = error_hint(message, option_names(self))
        stop = "." if hint and not message.endswith(".") else ""
        self.exit(2, f"{self.prog}: error: {message}{stop}{hint}\n"
                     f"({self.prog} --help lists every option)\n")


def option_names(*parsers: argparse.ArgumentParser) -> List[str]:
    """The long option strings (``--name``) of ``parsers``."""
    return [s for p in parsers for a in p._actions for s in a.option_strings if s.startswith("--")]


def error_hint(message: str, options: Sequence[str]) -> str:
    """" Did you mean ...?" for argparse's "unrecognized arguments: ..." (among ``options``)
    and "invalid choice: ..." (among the choices it lists); else ''."""
    if message.startswith("unrecognized arguments: "):
        return closest_flags(message.split(": ", 1)[1].split(), options)
    choice = _CHOICE.search(message)
    if choice:
        return did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
    return ""


FLAG_CUTOFF = 0.6  # difflib ratio a suggested flag needs (datset -> dataset 0.92)


def closest_flags(given: Iterable[str], options: Sequence[str]) -> str:
    """The closest of ``options`` to each flag in ``given`` (bare values are skipped):
    `` Did you mean '--dataset'?`` for one, ``--a: ...; --b: ...`` for several, else ''.
    Names are compared without their dashes, which every flag shares, and must be at least
    :data:`FLAG_CUTOFF` alike (a flag list is long: looser matches are noise)."""
    names = {o.lstrip("-"): o for o in options}
    flags = [g.split("=", 1)[0] for g in given if g.startswith("-")]
    hints = {f: _dashed(did_you_mean(f.lstrip("-"), names, FLAG_CUTOFF), names) for f in flags}
    hints = {f: h for f, h in hints.items() if h}
    if len(flags) == 1:
        return next(iter(hints.values()), "")
    return "".join(f" {f}:{h}" for f, h in hints.items())


def _dashed(hint: str, names: dict) -> str:
    """``did_you_mean``'s text with each name given back its dashes."""
    return re.sub(r"'([^']*)'", lambda m: repr(names.get(m.group(1), m.group(1))), hint)
