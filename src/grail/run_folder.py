"""The run folder: what guards it, where things go in it, how long each step took.

A run folder belongs to one config and one data set. It is created only once both are known to be good (the
config validated, a local model path found, the data loaded), is used by one grail process at a time (a lock the
next process names in its error), and refuses a resume whose config or data differ from what the run began with.
It keeps the data it began with (data.jsonl), so it resumes from any directory (``RunFolder._load_benchmark``).
Every step's output is written atomically and a step whose output exists is skipped (``cached``), so an
interrupted run resumes.

    RUN/config.yaml     the resolved config (written last when the folder is created: its presence makes a run)
    RUN/data.jsonl      the data the run began with, in our JSONL format
    RUN/timings.json    seconds per step
    RUN/.lock           held by the process using the folder (its pid inside)
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from grail import distributed, io
from grail.config import RunConfig, build_config, read_yaml_mapping
from grail.data.examples import Benchmark, SourceUnreachableError
from grail.data.loaders import load_jsonl

T = TypeVar("T")

log = logging.getLogger("grail.run_folder")

LOCK_FILE = ".lock"
_HELD: dict[Path, list[int]] = {}
"""Locks this process holds: resolved folder -> [file descriptor, holders]. A second ``RunFolder`` on the same
folder in one process shares the lock; another process is refused until every holder here is closed (or the
process ends)."""


class RunFolderError(RuntimeError):
    """The folder cannot hold this run (another config's or data's run, in use, or not a run folder)."""


def _config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(a) | set(b)):
        path = f"{prefix}{key}"
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            diffs += _config_differences(a[key], b[key], path + ".")
        elif a.get(key) != b.get(key):
            diffs.append(f"{path}: {a.get(key)!r} -> {b.get(key)!r}")
    return diffs


def _lock(folder: Path) -> None:
    """Hold the folder's lock, or name the process that holds it."""
    key = folder.resolve()
    if not distributed.is_main():  # the other processes of one job share process 0's lock
        return
    if key in _HELD:
        _HELD[key][1] += 1
        return
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunFolderError(f"{folder} is in use by another grail process (pid {holder}); wait for it to finish "
                             "or choose another --out") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _HELD[key] = [fd, 1]


def _unlock(folder: Path) -> None:
    key = folder.resolve()
    if key not in _HELD:
        return
    _HELD[key][1] -= 1
    if _HELD[key][1] == 0:
        os.close(_HELD.pop(key)[0])  # closing the descriptor releases the lock


class RunFolder:
    """``RunFolder(path, config, load_data)`` creates or resumes the run; ``RunFolder(path, None, load_data)``
    opens an existing one. ``load_data(config)`` loads the run's data (raising on bad data) before anything is
    written."""

    def __init__(self, path: str | Path, config: RunConfig | None,
                 load_data: Callable[[RunConfig], Benchmark]) -> None:
        self.root = Path(path)
        config_file, data_file = self.root / "config.yaml", self.root / "data.jsonl"
        if distributed.main_value(self.root.exists() and not self.root.is_dir()):
            raise RunFolderError(f"{self.root} is a file, not a folder; choose another --out")
        has_config = distributed.main_value(config_file.is_file())
        if not has_config and config is None:
            raise RunFolderError(f"{self.root}: not a run folder (no config.yaml)")
        if has_config:
            stored = build_config(read_yaml_mapping(config_file), source=str(config_file))
            if config is not None and config.to_dict() != stored.to_dict():
                diffs = _config_differences(stored.to_dict(), config.to_dict())
                raise RunFolderError(f"{self.root} holds a run of another config ({'; '.join(diffs[:5])}); "
                                     "choose another --out, or resume it without --config/--preset")
            config = stored
        elif distributed.main_value(self.root.is_dir() and bool(set(os.listdir(self.root)) - {LOCK_FILE})):
            raise RunFolderError(f"{self.root} exists and is not a grail run folder; refusing to write into it")
        else:
            config.model.check_local_path()  # a mistyped model path fails here, before the folder is written to
        self.config: RunConfig = config
        self.benchmark = self._load_benchmark(config, load_data, data_file)  # bad data fails here too
        data, trained_on = self.benchmark.to_jsonl(), self.benchmark.to_jsonl(trained_only=True)
        self.data_hash = hashlib.sha256(trained_on.encode()).hexdigest()[:16]
        """The identity of the data models are trained on (a short SHA-256 of data.jsonl's text without the scopes
        that train nothing: holdout, shots, knowledge): same config, other data, other run."""
        try:
            if distributed.is_main():
                self.root.mkdir(parents=True, exist_ok=True)
            _lock(self.root)
        except PermissionError as err:
            raise RunFolderError(f"{self.root}: cannot write here ({err.strerror})") from None
        self._locked = True
        try:
            if distributed.main_value(data_file.is_file()):
                snapshot = data_file.read_text(encoding="utf-8")
                if snapshot == trained_on != data:  # a run begun before holdout data existed: add it
                    io.write_text(data_file, data)
                elif snapshot != data:
                    relative = config.data.path is not None and not Path(config.data.path).expanduser().is_absolute()
                    raise RunFolderError(
                        f"the data changed since this run began: {config.data.path or 'the built-in benchmark'} "
                        f"{'(from the current directory) ' if relative else ''}no longer gives {data_file}; restore "
                        "it, or start a new run with another --out")
            else:
                io.write_text(data_file, data)
            if not has_config:
                io.write_text(config_file, config.to_yaml())
        except BaseException as err:
            self.close()
            if isinstance(err, PermissionError):
                raise RunFolderError(f"{self.root}: cannot write here ({err.strerror})") from None
            raise
        self.timings_file = self.root / "timings.json"

    @staticmethod
    def _load_benchmark(config: RunConfig, load_data: Callable[[RunConfig], Benchmark], data_file: Path) -> Benchmark:
        """The run's data from its source, or, when a resumed run's source cannot be reached from here, the data the
        run began with (data.jsonl; a log line says so).

        A config names its data as the user wrote it, and a relative ``data.path`` (or a domain's ``path``) is read
        from the current directory: from another directory, a resume would not find its data. The folder keeps that
        data itself, so a reachable source is checked against data.jsonl (an edited source is refused: see
        ``__init__``) and an unreachable one is replaced by it. Storing absolute paths instead would tie the folder
        to one machine's layout (a copied or moved folder, or data moved after the run, would again fail) and change
        the stored config away from the one the user gave; a new run still needs its source."""
        try:
            return load_data(config)
        except SourceUnreachableError as err:
            if not distributed.main_value(data_file.is_file()):  # a new run: nothing to go on with
                raise
            if distributed.is_main():
                log.warning("%s; resuming with the data this run began with (%s)", err, data_file)
            return load_jsonl(data_file)

    def close(self) -> None:
        """Let other processes use the folder (once every holder in this process has closed it)."""
        if self._locked:
            _unlock(self.root)
            self._locked = False

    def path(self, name: str) -> Path:
        return self.root / name

    def record_time(self, step: str, seconds: float) -> None:
        timings = io.read_json(self.timings_file) if self.timings_file.is_file() else {}
        timings[step] = round(seconds, 1)
        io.write_json(self.timings_file, timings)

    def cached(self, name: str, compute: Callable[[], T], save: Callable[[Path, T], None],
               load: Callable[[Path], T], step: str | None = None) -> T:
        """The step whose output is RUN/<name>: loaded if it is there, else computed, saved (atomically), timed
        under ``step`` and read back, so a fresh run and a resumed one go on from the same values (JSON, for one,
        writes a collapsed model's inf as "inf")."""
        path = self.path(name)
        if io.exists(path):
            return load(path)
        started = time.time()
        value = compute()
        save(path, value)
        if step is not None:
            self.record_time(step, time.time() - started)
        return load(path)
