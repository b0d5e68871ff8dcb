"""Fault 1: a byte order mark or an invisible character in a manifest's paths."""
import pytest

from eval_encoder.probe.data import check_files_exist
from eval_encoder.probe.trainer import RunFailed
from eval_encoder.video.decode import ClipDecodeError, check_opens
from eval_encoder.video.manifest import invisible_characters, invisible_note, read_manifest


def test_a_bom_at_the_start_is_not_part_of_the_first_path(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    manifest = tmp_path / "train.csv"
    manifest.write_bytes("\ufeffa.mp4,0\nb.mp4,1\n".encode("utf-8"))
    entries = read_manifest(str(manifest), 2)
    assert [e.path for e in entries] == ["a.mp4", "b.mp4"]
    (tmp_path / "b.mp4").write_bytes(b"x")
    check_files_exist(entries, str(tmp_path), "train", 0.0)  # nothing missing


def test_invisible_characters_are_named_with_their_position():
    assert invisible_characters("ab\u200bc.mp4") == ["U+200B ZERO WIDTH SPACE at position 2"]
    found = invisible_characters("\ufeffa\u00a0b\tc d")  # a plain space is visible
    assert found == ["U+FEFF ZERO WIDTH NO-BREAK SPACE (byte order mark) at position 0",
                     "U+00A0 NO-BREAK SPACE at position 2",
                     "U+0009 control character at position 4"]
    assert invisible_note("videos/a b.mp4") == ""


def test_a_missing_path_with_an_invisible_character_says_so(tmp_path):
    manifest = tmp_path / "val.csv"
    manifest.write_text("vid\u200beo.mp4,0\n", encoding="utf-8")
    (tmp_path / "video.mp4").write_bytes(b"x")
    entries = read_manifest(str(manifest), 1)
    with pytest.raises(RunFailed, match="file not found \\(path contains U\\+200B ZERO WIDTH "
                                        "SPACE at position"):
        check_files_exist(entries, str(tmp_path), "val", 0.0)
    path = str(tmp_path / entries[0].path)
    with pytest.raises(ClipDecodeError, match=f"at position {path.index(chr(0x200B))}"):
        check_opens(path)
