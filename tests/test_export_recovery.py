"""A kill during an export never loses the previous SavedModel (melano_tf.fileio.replace_dir)."""

import os

import pytest

from melano_tf.fileio import recover_interrupted_dir as recover_interrupted
from melano_tf.fileio import replace_dir


def _tree(root):
    return sorted(os.listdir(root))


def test_kill_between_renames_restores_previous_export(tmp_path):
    old = tmp_path / "saved_model.old-12"
    old.mkdir()
    (old / "saved_model.pb").write_text("previous")
    (tmp_path / "saved_model.tmp-13").mkdir()  # half-written new export
    recover_interrupted(str(tmp_path / "saved_model"))
    assert _tree(tmp_path) == ["saved_model"]
    assert (tmp_path / "saved_model" / "saved_model.pb").read_text() == "previous"


def test_leftovers_removed_when_export_is_intact(tmp_path):
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "saved_model" / "saved_model.pb").write_text("current")
    (tmp_path / "saved_model.old-5").mkdir()
    (tmp_path / "saved_model.tmp-6").mkdir()
    (tmp_path / "saved_model_other").mkdir()  # not ours: untouched
    recover_interrupted(str(tmp_path / "saved_model"))
    assert _tree(tmp_path) == ["saved_model", "saved_model_other"]
    assert (tmp_path / "saved_model" / "saved_model.pb").read_text() == "current"


def test_failed_write_keeps_previous_folder_and_leaves_no_temporary(tmp_path):
    (tmp_path / "saved_model").mkdir()
    (tmp_path / "saved_model" / "saved_model.pb").write_text("previous")

    def broken(tmp):
        os.makedirs(tmp)
        open(os.path.join(tmp, "half"), "w").close()
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        replace_dir(str(tmp_path / "saved_model"), broken)
    assert _tree(tmp_path) == ["saved_model"]
    assert (tmp_path / "saved_model" / "saved_model.pb").read_text() == "previous"
