from __future__ import annotations

import pytest

from common.data.files import write_atomically


def test_writes_the_file_and_its_folder_without_leaving_a_temporary_file(tmp_path):
    path = write_atomically(tmp_path / "new" / "scale.json", lambda file: file.write(b"{}"))
    assert path == tmp_path / "new" / "scale.json" and path.read_bytes() == b"{}"
    assert [p.name for p in path.parent.iterdir()] == ["scale.json"]


def test_a_failed_write_keeps_the_previous_file_and_removes_the_temporary_one(tmp_path):
    path = tmp_path / "scale.json"
    path.write_bytes(b"previous")

    def half_written(file):
        file.write(b'{"field_')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, half_written)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["scale.json"]
