"""Atomic writes: the target is either the old file or the complete new one, never partial."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbconvert.atomic import atomic_path, atomic_write_bytes, atomic_write_text, check_writable
from lbconvert.errors import LbconvertError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_text_creates_parents_and_has_open_mode(tmp_path):
    target = tmp_path / "a" / "b" / "report.md"
    atomic_write_text(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    # mkstemp makes 0600 files; the result must have the mode a plain open() gives.
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~_umask()
    assert os.listdir(target.parent) == ["report.md"]


def test_replacing_keeps_the_existing_mode(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_refuses_existing_file_without_force(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"original")
    with pytest.raises(LbconvertError) as err:
        atomic_write_bytes(target, b"new", force=False)
    assert str(target) in str(err.value) and "--force" in str(err.value)
    assert target.read_bytes() == b"original"
    with pytest.raises(LbconvertError, match="--force"):
        check_writable(target)
    assert check_writable(target, force=True) == target


def test_directory_target_is_refused(tmp_path):
    with pytest.raises(LbconvertError, match="is a directory"):
        check_writable(tmp_path, force=True)


def test_error_inside_writer_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old complete file")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp.suffix == ".onnx"
            tmp.write_bytes(b"half writ")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old complete file"
    assert sorted(os.listdir(tmp_path)) == ["model.onnx"]


def test_error_before_first_write_creates_nothing(tmp_path):
    target = tmp_path / "report.html"
    with pytest.raises(ValueError):
        with atomic_path(target):
            raise ValueError("renderer failed")
    assert os.listdir(tmp_path) == []


def test_writer_that_removes_its_file_is_an_error(tmp_path):
    target = tmp_path / "model.pt"
    with pytest.raises(FileNotFoundError, match="produced no file"):
        with atomic_path(target) as tmp:
            tmp.unlink()
    assert os.listdir(tmp_path) == []


@settings(max_examples=30, deadline=None)
@given(first=st.binary(max_size=2048), second=st.binary(max_size=2048))
def test_bytes_round_trip_and_replace(tmp_path_factory, first, second):
    target = tmp_path_factory.mktemp("atomic") / "blob.bin"
    atomic_write_bytes(target, first)
    assert target.read_bytes() == first
    atomic_write_bytes(target, second, force=True)
    assert target.read_bytes() == second
    assert os.listdir(target.parent) == ["blob.bin"]
