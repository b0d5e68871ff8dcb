"""Names the report's modules share: the paper's benchmark datasets and how the tables title
them, the keys of a leaderboard row, how an interval is printed, and the error they raise."""
from __future__ import annotations

from typing import Dict, Tuple

from eval_encoder.protocol import ONEVISION, PUBLISHED

PAPER_DATASETS: Tuple[str, ...] = PUBLISHED[ONEVISION].datasets  # the OneVision paper's eight
DISPLAY_NAMES: Dict[str, str] = {
    "ssv2": "SSV2", "diving48": "Diving48", "perception_test": "Perce. Test",
    "charadesego": "CharEgo", "epic_verb": "Epic Verb", "epic_noun": "Epic Noun",
    "k400": "K400", "hmdb51": "HMDB51", "epic_action": "Epic Action",
}
ROW_KEYS = ["frames", "method", "arch", "res", "protocol"]
ASYMMETRY = 0.2  # an interval whose sides differ by more than this share shows both (+a/-b)


class LeaderboardError(ValueError):
    """A record, reported-numbers file or option the leaderboard cannot use, with the reason."""
