"""A run killed at any moment of saving its state resumes from a whole state, never from nothing."""

from pathlib import Path

from training.checkpointing import RunFiles, save_atomically


def test_a_kill_between_the_two_renames_of_a_save_leaves_the_previous_state_to_resume_from(tmp_path: Path) -> None:
    files = RunFiles(tmp_path / "model")
    files.save_state({"step": 3})
    # What a SIGKILL after the old state stepped aside, before the new one moved in, leaves on disk:
    files.resume.rename(files.resume.with_name(files.resume.name + ".old"))
    (files.work / ".resume.tmp").mkdir()
    state = files.load_state()
    assert state is not None and state["step"] == 3
    files.save_state({"step": 6})
    assert (files.load_state() or {})["step"] == 6
    assert sorted(path.name for path in files.work.iterdir()) == [".resume"]


def test_a_directory_saved_again_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "best"
    save_atomically(target, lambda directory: (directory / "a.txt").write_text("first"))
    save_atomically(target, lambda directory: (directory / "b.txt").write_text("second"))
    assert [path.name for path in target.iterdir()] == ["b.txt"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["best"]
