"""``course.folders``: a folder is replaced whole or not at all, and a killed run's leftovers are tidied."""

import pytest

from course.folders import replacing, tidy


def test_a_finished_block_replaces_the_folder_and_keeps_what_it_is_told(tmp_path):
    folder = tmp_path / "alice"
    (folder / ".git").mkdir(parents=True)
    (folder / "old.txt").write_text("old")
    with replacing(folder, keep=(".git",)) as new:
        (new / "new.txt").write_text("new")
        assert (folder / "old.txt").read_text() == "old"  # untouched until the block ends
    assert sorted(p.name for p in folder.iterdir()) == [".git", "new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["alice"]


def test_a_failed_block_leaves_the_folder_as_it_was(tmp_path):
    folder = tmp_path / "alice"
    folder.mkdir()
    (folder / "old.txt").write_text("old")
    for error in (ValueError, KeyboardInterrupt):
        with pytest.raises(error), replacing(folder) as new:
            (new / "half.txt").write_text("half")
            raise error
    assert [p.name for p in folder.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["alice"]
    with pytest.raises(ValueError), replacing(tmp_path / "bob"):
        raise ValueError
    assert not (tmp_path / "bob").exists()


def test_tidy_removes_unfinished_folders_and_puts_back_an_old_one_never_replaced(tmp_path):
    (tmp_path / ".alice.new-abcd1234").mkdir()  # killed while writing: alice keeps her folder
    (tmp_path / "alice").mkdir()
    (tmp_path / ".bob.old-abcd1234" / "score").mkdir(parents=True)  # killed between the two renames
    (tmp_path / ".bob.new-abcd1234").mkdir()
    (tmp_path / ".carol.old-abcd1234").mkdir()  # killed before the old one was removed
    (tmp_path / "carol").mkdir()
    (tmp_path / ".git").mkdir()  # not replacing()'s: left alone
    tidy(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".git", "alice", "bob", "carol"]
    assert (tmp_path / "bob" / "score").is_dir()


def test_a_file_is_replaced_whole_with_ordinary_permissions_or_not_at_all(tmp_path):
    import os
    import stat

    from course.folders import replacing_file

    path = tmp_path / "bundle.zip"
    path.write_text("old")
    with pytest.raises(OSError), replacing_file(path) as new:
        new.write_text("half")
        raise OSError
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["bundle.zip"]
    with replacing_file(path) as new:
        new.write_text("new")
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_text() == "new" and stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["bundle.zip"]
