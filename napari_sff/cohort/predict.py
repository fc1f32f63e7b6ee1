"""Many inputs, one model: walk a cohort, skip finished work, take this rank's share, overlap I/O with inference.

``napari-sff predict A.nii.gz B/ 'C/*.nii.gz' -o OUT`` runs through :func:`run_cohort`. The model is loaded once
(``inference.load_model`` caches it); a reader thread loads the next volumes while the current one is predicted and
a writer thread saves finished maps, so the model rarely waits for the disk. Every output is written atomically,
so a killed run leaves no half-written file and a rerun skips what is done. One bad file is reported and the run
goes on; the summary lists each failure with its reason.

Several processes share a cohort without talking to each other: item ``i`` of the sorted input list belongs to
rank ``i % world``. ``torchrun --nproc_per_node=N --no-python napari-sff predict ...`` sets RANK / WORLD_SIZE;
``--shard K/N`` does the same for independent jobs (a SLURM array: ``--shard $SLURM_ARRAY_TASK_ID/N``).
"""

from __future__ import annotations

import glob
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from napari_sff import io

OUTPUT_SUFFIX = "_sff.nii.gz"


@dataclass(frozen=True)
class CohortItem:
    """One input and where its result goes, relative to the output folder (mirrors the input tree)."""

    path: Path
    relative: Path  # the input's path below the folder or glob base it was found in

    def output(self, out_dir: str | os.PathLike, suffix: str = OUTPUT_SUFFIX) -> Path:
        """``<out_dir>/<relative parent>/<input stem>_sff.nii.gz``."""
        return Path(out_dir) / self.relative.parent / f"{io.nifti_stem(self.relative.name)}{suffix}"


@dataclass
class CohortSummary:
    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    # Inputs whose prediction carried an out-of-distribution warning (napari_sff.domain), in input order.
    flagged: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """The closing summary: counts, one line per failure with its reason, then the inputs the model found
        unlike its training data (their reasons were warned as they ran), so a long run's log ends with both."""
        rate = 60.0 * len(self.done) / self.seconds if self.seconds > 0 and self.done else 0.0
        head = (f"{len(self.done)} done, {len(self.skipped)} skipped (already there), {len(self.failed)} failed "
                f"in {self.seconds:.1f} s ({rate:.1f} volumes/min)")
        lines = [head, *(f"failed: {path}: {reason}" for path, reason in self.failed)]
        if self.flagged:
            lines.append(f"{len(self.flagged)} predicted volume(s) lie outside what the model was trained on "
                         "(the warnings above say how); read their maps with caution:")
            lines += [f"flagged: {path}" for path in self.flagged]
        return lines


def _is_input_file(path: Path) -> bool:
    return path.is_file() and io.is_nifti_path(path)


def _dicom_series_folder(path: Path) -> bool:
    """A folder whose own files (not sub-folders) include DICOM files: one input (a series or a study)."""
    from napari_sff.io.dicom.series import has_dicom_preamble

    return any(has_dicom_preamble(child) for child in sorted(path.iterdir())[:16] if child.is_file())


def collect_inputs(inputs: Sequence[str | os.PathLike]) -> list[CohortItem]:
    """Expand files, folders (walked recursively) and globs into sorted, de-duplicated cohort items.

    In a folder, NIfTI files and folders holding DICOM files are inputs; each keeps its path below the folder (below
    a glob's fixed part; below their common folder for named files), so outputs mirror the tree. A name that
    matches nothing is an error (a typo must not silently shrink a cohort), and so are two inputs that would
    write the same output.
    """
    items: dict[Path, CohortItem] = {}
    named: list[Path] = []

    def add(path: Path, base: Path) -> None:
        resolved = path.resolve()
        items.setdefault(resolved, CohortItem(resolved, path.relative_to(base) if path != base else Path(path.name)))

    for entry in inputs:
        text = os.fspath(entry)
        path = Path(text)
        if glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            if not matches:
                raise FileNotFoundError(f"{text}: the pattern matches no file; check it (quote it for the shell)")
            base = Path(_glob_base(text))
            for match in matches:
                if _is_input_file(match) or (match.is_dir() and _dicom_series_folder(match)):
                    add(match, base)
        elif path.is_dir():
            if _dicom_series_folder(path):
                add(path, path.parent)
                continue
            for root, dirs, files in os.walk(path):
                dirs.sort()
                root_path = Path(root)
                if root_path != path and _dicom_series_folder(root_path):
                    add(root_path, path)
                    dirs[:] = []
                    continue
                for name in sorted(files):
                    if io.is_nifti_path(name):
                        add(root_path / name, path)
        elif path.exists():
            named.append(path)
        else:
            raise FileNotFoundError(f"{text}: no such file or folder; check the path")
    if named:  # named files keep their paths below the folder they have in common
        base = Path(os.path.commonpath([str(p.resolve().parent) for p in named]))
        for path in named:
            add(path.resolve(), base)
    ordered = sorted(items.values(), key=lambda item: (str(item.relative), str(item.path)))
    seen: dict[Path, Path] = {}
    for item in ordered:
        if item.relative in seen:
            raise ValueError(f"{seen[item.relative]} and {item.path} would write the same output "
                             f"({item.relative}); run them separately or rename one")
        seen[item.relative] = item.path
    return ordered


def _glob_base(pattern: str) -> str:
    """The folder part of a glob before its first wildcard (outputs mirror the tree below it)."""
    parts = Path(pattern).parts
    base = []
    for part in parts:
        if glob.has_magic(part):
            break
        base.append(part)
    return str(Path(*base)) if base else "."


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: use K/N with integers, e.g. 0/4") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"--shard {text!r}: need 0 <= K < N")
    return k, n


def rank_and_world(shard: str | None = None, environ: dict[str, str] | None = None) -> tuple[int, int]:
    """This process's share of the cohort: ``--shard K/N`` within the torchrun rank's share when both are given."""
    environ = os.environ if environ is None else environ
    rank, world = int(environ.get("RANK", "0")), int(environ.get("WORLD_SIZE", "1"))
    if shard is None:
        return rank, world
    k, n = parse_shard(shard)
    return k * world + rank, n * world


def my_share(items: Sequence[CohortItem], rank: int, world: int) -> list[CohortItem]:
    """Item ``i`` belongs to rank ``i % world``: every item to exactly one rank, whatever the share sizes."""
    return [item for index, item in enumerate(items) if index % world == rank]


def run_cohort(
    items: Iterable[CohortItem], out_dir: str | os.PathLike, *,
    read: Callable[[Path], Any], predict: Callable[[Any], Any], write: Callable[[Any, Any, Path], Sequence[Path]],
    overwrite: bool = False, prefetch: int = 2, progress: Callable[[CohortItem, str], None] | None = None,
    suffix: str = OUTPUT_SUFFIX, predict_many: Callable[[list], list] | None = None, group: int = 1,
) -> CohortSummary:
    """Read -> predict -> write each item; reads run ``prefetch`` items ahead and writes behind, in threads.

    ``read(path)`` returns what ``predict`` takes; ``write(volume, prediction, output)`` writes atomically and
    returns the paths written. An item whose output exists is skipped unless ``overwrite``. Errors of one item
    (unreadable file, bad geometry, prediction failure) go into the summary; the run continues. With
    ``predict_many`` and ``group`` > 1, up to ``group`` consecutive read volumes are predicted in one call (their
    slices share batches: a GPU stays busy); if that call fails, they are predicted one by one.
    """
    summary = CohortSummary()
    started = time.perf_counter()
    todo = []
    for item in items:
        target = item.output(out_dir, suffix)
        if target.exists() and not overwrite:
            summary.skipped.append(target)
            if progress:
                progress(item, "skipped")
        else:
            todo.append(item)
    lock = threading.Lock()
    group = max(1, int(group)) if predict_many is not None else 1

    def finish(item: CohortItem, future: Future) -> None:
        try:
            written = future.result()
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the run
            with lock:
                summary.failed.append((item.path, _reason(exc)))
            state = "failed"
        else:
            with lock:
                summary.done.extend(written[:1])
            state = "done"
        if progress:
            progress(item, state)

    def fail(item: CohortItem, exc: BaseException) -> None:
        failed: Future = Future()
        failed.set_exception(exc)
        finish(item, failed)

    def predict_group(loaded: list[tuple[CohortItem, Any]]) -> list[tuple[CohortItem, Any, Any]]:
        if len(loaded) > 1:
            try:
                return [(item, volume, prediction) for (item, volume), prediction
                        in zip(loaded, predict_many([volume for _, volume in loaded]), strict=True)]
            except Exception:  # noqa: BLE001 - find the one that fails: predict one by one
                pass
        done = []
        for item, volume in loaded:
            try:
                done.append((item, volume, predict(volume)))
            except Exception as exc:  # noqa: BLE001
                fail(item, exc)
        return done

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-sff-read") as readers, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-sff-write") as writers:
        reads: queue.Queue = queue.Queue()
        pending = iter(todo)

        def submit_read() -> None:
            item = next(pending, None)
            if item is not None:
                reads.put((item, readers.submit(read, item.path)))

        for _ in range(max(1, prefetch, group)):
            submit_read()
        writes: list[Future] = []
        while not reads.empty():
            batch = []
            while not reads.empty() and len(batch) < group:
                batch.append(reads.get())
                submit_read()
            loaded = []
            for item, future in batch:
                try:
                    loaded.append((item, future.result()))
                except Exception as exc:  # noqa: BLE001
                    fail(item, exc)
            for item, volume, prediction in predict_group(loaded):
                if getattr(prediction, "out_of_distribution", None):
                    summary.flagged.append(item.path)
                future = writers.submit(write, volume, prediction, item.output(out_dir, suffix))
                future.add_done_callback(lambda f, item=item: finish(item, f))
                writes.append(future)
        for future in writes:
            future.exception()  # wait; finish() has recorded the outcome
    summary.seconds = time.perf_counter() - started
    return summary


def _reason(exc: BaseException) -> str:
    """One line: the message of napari-sff's own errors, the type and message of anything else."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (ValueError, FileNotFoundError, FileExistsError, RuntimeError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
