"""Small text helpers for messages shared across the house."""
from __future__ import annotations

import difflib


def did_you_mean(name: str, known, cutoff: float = 0.5) -> str:
    """`` Did you mean 'a', 'b'?`` for up to three close matches of ``name``, else ''."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=cutoff)
    return f" Did you mean {', '.join(map(repr, close))}?" if close else ""
