"""Which frames a clip is made of: V-JEPA 2's windows against the published sampler's numbers,
several segments per clip, and one segment spread over the clip exactly as before.

The expected indices below were computed by the published sampler itself: the method
``VideoDataset.loadvideo_decord`` of facebookresearch/vjepa2 c2963a4
(``src/datasets/video_dataset.py``), run unmodified in a scratch folder outside the project
on stand-in videos of n frames (decord stubbed by an object with ``len`` and
``get_batch``), with ``allow_clip_overlap=True`` as the frozen evaluation passes it.
``random_clip_sampling=False`` gives the window ending at the span (start 0) of each
partition, which :func:`window_indices` gives with the end rule ``span``;
``random_clip_sampling=True`` after ``np.random.seed(0)`` gives the seeded rows, four calls
in the order listed, which an adapter feeding numpy's legacy ``randint`` reproduces.
"""
import numpy as np
import pytest

from eval_encoder.video.decode import segment_indices
from eval_encoder.video.windows import ClipPlan, spread_indices, window_indices

START = lambda span, part: span  # noqa: E731  (random_clip_sampling=False: the first window)

# (frames, step, segments, clip frames) -> the published indices of each segment
PUBLISHED = {
    # clips no longer than a span: every segment the same spread, one frame short of the last
    (16, 4, 1, 20): [[0, 6, 12, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18, 18]],
    (16, 4, 2, 50): [[0, 4, 8, 13, 17, 22, 26, 31, 35, 40, 44, 48, 48, 48, 48, 48]] * 2,
    (16, 4, 2, 64): [[0, 4, 9, 13, 18, 22, 27, 31, 36, 40, 45, 49, 54, 58, 62, 62]] * 2,
    # longer than a span but partitions shorter: windows shifted by (n - span) // (S - 1)
    (16, 4, 2, 65): [[0, 4, 9, 13, 18, 22, 27, 31, 36, 40, 45, 49, 54, 58, 62, 62],
                     [1, 5, 10, 14, 19, 23, 28, 32, 37, 41, 46, 50, 55, 59, 63, 63]],
    (16, 4, 2, 100): [[0, 4, 9, 13, 18, 22, 27, 31, 36, 40, 45, 49, 54, 58, 62, 62],
                      [36, 40, 45, 49, 54, 58, 63, 67, 72, 76, 81, 85, 90, 94, 98, 98]],
    (16, 4, 2, 128): [[0, 4, 9, 13, 18, 22, 27, 31, 36, 40, 45, 49, 54, 58, 62, 62],
                      [64, 68, 73, 77, 82, 86, 91, 95, 100, 104, 109, 113, 118, 122, 126, 126]],
    (16, 4, 8, 200): [[0, 4, 9, 13, 18, 22, 27, 31, 36, 40, 45, 49, 54, 58, 62, 62],
                      [19, 23, 28, 32, 37, 41, 46, 50, 55, 59, 64, 68, 73, 77, 81, 81],
                      [38, 42, 47, 51, 56, 60, 65, 69, 74, 78, 83, 87, 92, 96, 100, 100],
                      [57, 61, 66, 70, 75, 79, 84, 88, 93, 97, 102, 106, 111, 115, 119, 119],
                      [76, 80, 85, 89, 94, 98, 103, 107, 112, 116, 121, 125, 130, 134, 138, 138],
                      [95, 99, 104, 108, 113, 117, 122, 126, 131, 135, 140, 144, 149, 153, 157,
                       157],
                      [114, 118, 123, 127, 132, 136, 141, 145, 150, 154, 159, 163, 168, 172, 176,
                       176],
                      [133, 137, 142, 146, 151, 155, 160, 164, 169, 173, 178, 182, 187, 191, 195,
                       195]],
    # partitions longer than a span: a window of linspace(start, start + span, T), truncated
    (16, 4, 1, 65): [[0, 4, 8, 12, 17, 21, 25, 29, 34, 38, 42, 46, 51, 55, 59, 63]],
    (16, 4, 2, 130): [[0, 4, 8, 12, 17, 21, 25, 29, 34, 38, 42, 46, 51, 55, 59, 63],
                      [65, 69, 73, 77, 82, 86, 90, 94, 99, 103, 107, 111, 116, 120, 124, 128]],
    (32, 2, 4, 300): [[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 33, 35, 37, 39,
                       41, 43, 45, 47, 49, 51, 53, 55, 57, 59, 61, 63],
                      [75, 77, 79, 81, 83, 85, 87, 89, 91, 93, 95, 97, 99, 101, 103, 105, 108,
                       110, 112, 114, 116, 118, 120, 122, 124, 126, 128, 130, 132, 134, 136, 138],
                      [150, 152, 154, 156, 158, 160, 162, 164, 166, 168, 170, 172, 174, 176, 178,
                       180, 183, 185, 187, 189, 191, 193, 195, 197, 199, 201, 203, 205, 207, 209,
                       211, 213],
                      [225, 227, 229, 231, 233, 235, 237, 239, 241, 243, 245, 247, 249, 251, 253,
                       255, 258, 260, 262, 264, 266, 268, 270, 272, 274, 276, 278, 280, 282, 284,
                       286, 288]],
    (32, 2, 4, 100): [[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39,
                       42, 44, 46, 48, 50, 52, 54, 56, 58, 60, 62, 62],
                      [12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 33, 35, 37, 39, 41, 43, 45, 47, 49,
                       51, 54, 56, 58, 60, 62, 64, 66, 68, 70, 72, 74, 74],
                      [24, 26, 28, 30, 32, 34, 36, 38, 40, 42, 45, 47, 49, 51, 53, 55, 57, 59, 61,
                       63, 66, 68, 70, 72, 74, 76, 78, 80, 82, 84, 86, 86],
                      [36, 38, 40, 42, 44, 46, 48, 50, 52, 54, 57, 59, 61, 63, 65, 67, 69, 71, 73,
                       75, 78, 80, 82, 84, 86, 88, 90, 92, 94, 96, 98, 98]],
}

# random_clip_sampling=True after np.random.seed(0), these calls in this order
SEEDED = [
    ((16, 4, 2, 200), [[0, 4, 8, 12, 17, 21, 25, 29, 34, 38, 42, 46, 51, 55, 59, 63],
                       [103, 107, 111, 115, 120, 124, 128, 132, 137, 141, 145, 149, 154, 158, 162,
                        166]]),
    ((16, 4, 2, 300), [[67, 71, 75, 79, 84, 88, 92, 96, 101, 105, 109, 113, 118, 122, 126, 130],
                       [159, 163, 167, 171, 176, 180, 184, 188, 193, 197, 201, 205, 210, 214, 218,
                        222]]),
    ((32, 2, 4, 300), [[3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 36, 38, 40, 42,
                        44, 46, 48, 50, 52, 54, 56, 58, 60, 62, 64, 66],
                       [80, 82, 84, 86, 88, 90, 92, 94, 96, 98, 100, 102, 104, 106, 108, 110, 113,
                        115, 117, 119, 121, 123, 125, 127, 129, 131, 133, 135, 137, 139, 141, 143],
                       [152, 154, 156, 158, 160, 162, 164, 166, 168, 170, 172, 174, 176, 178, 180,
                        182, 185, 187, 189, 191, 193, 195, 197, 199, 201, 203, 205, 207, 209, 211,
                        213, 215],
                       [229, 231, 233, 235, 237, 239, 241, 243, 245, 247, 249, 251, 253, 255, 257,
                        259, 262, 264, 266, 268, 270, 272, 274, 276, 278, 280, 282, 284, 286, 288,
                        290, 292]]),
    ((16, 4, 2, 100), [[0, 4, 9, 13, 18, 22, 27, 31, 36, 40, 45, 49, 54, 58, 62, 62],
                       [36, 40, 45, 49, 54, 58, 63, 67, 72, 76, 81, 85, 90, 94, 98, 98]]),
]


class LegacyDraws:
    """numpy's legacy global generator behind the Generator call the sampler makes."""

    def __init__(self, seed: int):
        self.state = np.random.RandomState(seed)

    def integers(self, low: int, high: int) -> int:
        return self.state.randint(low, high)


@pytest.mark.parametrize("key", list(PUBLISHED))
def test_windows_are_the_published_samplers(key):
    frames, step, segments, total = key
    got = window_indices(total, frames, step, segments, START)
    assert [w.tolist() for w in got] == PUBLISHED[key]


def test_random_windows_follow_the_published_draws():
    draws = LegacyDraws(0)
    for (frames, step, segments, total), want in SEEDED:
        plan = ClipPlan(frames, step, segments)
        got = plan.picker(True, draws)(total)
        assert got.reshape(segments, frames).tolist() == want


def test_random_windows_cover_every_start_but_the_last():
    """randint(span, partition): a 16x4 window in a 70-frame partition starts at 0..5."""
    rng = np.random.default_rng(0)
    starts = {int(ClipPlan(16, 4).picker(True, rng)(70)[0]) for _ in range(300)}
    assert starts == set(range(6))


def test_centre_window_and_temporal_views():
    plan = ClipPlan(16, 4, 2)
    # 300 frames, partitions of 150, span 64: starts may be 0..85; the centre starts at 43
    first = plan.picker(False, None)(300)
    assert first[0] == 43 and first[16] == 150 + 43
    views = [int(plan.picker(False, None, v, 3)(300)[0]) for v in range(3)]
    assert views == [14, 43, 71]


def test_eval_window_random_draws_at_evaluation_too():
    plan = ClipPlan(16, 4, 2, eval_window="random")
    draws = {int(plan.picker(False, np.random.default_rng(s))(300)[0]) for s in range(20)}
    assert len(draws) > 5


def test_one_frame_clip_reads_frame_zero():
    """The published sampler would ask decord for frame -1 of a one-frame clip."""
    assert window_indices(1, 16, 4, 2, START)[0].tolist() == [0] * 16


def test_one_spread_segment_is_the_onevision_sampler_draw_for_draw():
    for total in (3, 16, 100, 301):
        a, b = np.random.default_rng(7), np.random.default_rng(7)
        got = ClipPlan(8).picker(True, a)(total)
        assert got.tolist() == segment_indices(total, 8, True, b).tolist()
        assert ClipPlan(8).picker(False, None, 1, 2)(total).tolist() == \
            segment_indices(total, 8, False, None, 1, 2).tolist()


def test_spread_segments_sample_each_part():
    got = spread_indices(100, 4, 2, False, None)
    assert got.tolist() == segment_indices(50, 4, False).tolist() + \
        (segment_indices(50, 4, False) + 50).tolist()
    assert spread_indices(1, 2, 3, False, None).tolist() == [0] * 6


def test_a_bad_plan_is_refused():
    with pytest.raises(ValueError, match="eval_window"):
        ClipPlan(16, 4, 2, eval_window="middle")
    with pytest.raises(ValueError, match="segments >= 1"):
        ClipPlan(16, 4, 0)
