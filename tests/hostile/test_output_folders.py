"""Output folders are either finished or clearly not (issue 9, section 3).

A folder being written is locked; a result folder is swapped in whole, staged on its own
file system (also at a mount point); a process killed at any point of the swap leaves the
old result, the new one, or a folder without ``params.json`` (never a mix), and the next
writer cleans up after it; a full disk or a bad ``--out`` is one line, never a traceback,
and never costs an earlier result.
"""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import napari_niche
from napari_niche.cli import main
from napari_niche.io import (
    LOCK_NAME,
    OutputBusyError,
    OutputFolderError,
    output_lock,
    remove_leftovers,
    write_atomically,
)
from napari_niche.io import files as nio

SRC = str(Path(napari_niche.__file__).resolve().parents[1])
FILES = ("a.csv", "b.csv", "params.json")


def env():
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def hidden(folder: Path) -> list[str]:
    """Entries a writer may leave only while it runs (temporary, staging, aside, lock)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def toy_writer(token: str):
    def write(folder: Path) -> None:
        for name in FILES:
            (folder / name).write_text(f"{token}\n")

    return write


def tokens(folder: Path) -> dict[str, str]:
    return {n: (folder / n).read_text().strip() for n in FILES if (folder / n).exists()}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (root only); skip where mounting is not permitted."""
    mounted = []

    def mount(size: str = "1m", *options: str) -> Path:
        point = tmp_path / f"mnt{len(mounted)}"
        point.mkdir()
        opts = ",".join([f"size={size}", *options])
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Two small 2D images from curated masks: a run takes a few seconds."""
    from napari_niche.experiment.synthetic import make_experiment

    return make_experiment(
        tmp_path_factory.mktemp("exp"),
        conditions={"A": "vessel"},
        replicates=2,
        shape=(120, 200),
        n_cells=20,
        realizations=19,
        rng=1,
        from_masks=True,
    )


@pytest.fixture(scope="module")
def finished(experiment, tmp_path_factory):
    """A complete run of ``experiment`` with its report (figures drawn where needed)."""
    from napari_niche.experiment.runner import run_experiment

    out = tmp_path_factory.mktemp("finished") / "out"
    summary = run_experiment(experiment, out=out, jobs=1, figures=False, progress=lambda *a: 0)
    assert summary.ok and (out / "report.html").exists()
    (out / "figures").mkdir()
    (out / "figures" / "cdf.svg").write_text("<svg>an earlier run's figure</svg>\n")
    return out


def all_hidden(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


def pooled_tables(out: Path) -> dict[str, bytes]:
    """The pooled tables' bytes (qc.csv without its timing column)."""
    import pandas as pd

    tables = {p.name: p.read_bytes() for p in sorted((out / "pooled").glob("*.csv"))}
    tables["qc.csv"] = pd.read_csv(out / "pooled" / "qc.csv").drop(columns="seconds")
    tables["qc.csv"] = tables["qc.csv"].to_csv(index=False).encode()
    return tables


def fill(point: Path, leave: int) -> None:
    """Fill a tmpfs until about ``leave`` bytes are free."""
    free = os.statvfs(point).f_bavail * os.statvfs(point).f_frsize
    with open(point / "ballast", "wb") as fh:
        try:
            fh.write(b"\0" * max(0, free - leave))
        except OSError:
            pass


# -- the lock ------------------------------------------------------------------------------


@pytest.mark.parametrize("exists", [True, False])
@pytest.mark.parametrize("command", ["analyze", "run", "api"])
def test_a_locked_folder_is_refused_at_once_naming_the_holder(
    command, exists, tmp_path, holder, capsys, experiment, monkeypatch
):
    def no_work(*args, **kwargs):  # the refusal must come before any analysis
        raise AssertionError("the analysis started although the folder is locked")

    monkeypatch.setattr("napari_niche.niche.pipeline.analyze", no_work)
    out = tmp_path / "out"
    if exists:
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    argv = ["analyze", "--sample", "--out", str(out)]
    if command == "run":
        argv = ["run", str(experiment), "--out", str(out), "--jobs", "1"]
    proc = holder(out)
    if command == "api":
        from napari_niche.niche.results import NicheResult

        with pytest.raises(OutputBusyError, match=str(proc.pid)):
            NicheResult(*[None] * 6, record={}).save(out)
    else:
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2
        assert len(err.strip().splitlines()) == 1, err
        assert str(out) in err and f"process {proc.pid}" in err and "another" in err
    assert sorted(p.name for p in out.iterdir()) == (
        [LOCK_NAME, "notes.txt"] if exists else [LOCK_NAME]
    )
    # the holder dies: its lock goes with it, nothing stale is left
    proc.kill()
    proc.wait()
    with output_lock(out):
        pass
    assert not (out / LOCK_NAME).exists()


def test_two_threads_of_one_process_exclude_each_other_and_one_thread_reenters(tmp_path):
    import threading

    out = tmp_path / "out"
    errors = []
    with output_lock(out), output_lock(out):  # re-entrant in one thread
        thread = threading.Thread(target=lambda: errors.append(_try_lock(out)))
        thread.start()
        thread.join()
    assert isinstance(errors[0], OutputBusyError)
    assert not out.exists()  # made by the lock, left empty: removed again


def _try_lock(folder):
    try:
        with output_lock(folder):
            return None
    except OutputBusyError as err:
        return err


# -- bad output folders --------------------------------------------------------------------


@pytest.mark.parametrize("command", ["analyze", "run"])
@pytest.mark.parametrize(
    "where", ["is a file", "parent is a file", "a device", "read-only", "read-only root"]
)
def test_an_unusable_output_folder_is_one_line_exit_2(
    command, where, tmp_path, tmpfs, capsys, experiment
):
    if where == "is a file":
        out = tmp_path / "out"
        out.write_text("not a folder")
    elif where == "parent is a file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
    elif where == "a device":
        out = Path(os.devnull)
    elif where == "read-only":
        out = tmpfs("1m", "ro") / "out"
    else:  # an existing folder: the root of a read-only mount
        out = tmpfs("1m", "ro")
    argv = ["analyze", "--sample", "--out", str(out)]
    if command == "run":
        argv = ["run", str(experiment), "--out", str(out)]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "cannot write in" in err and str(out) in err
    assert "Traceback" not in err
    if where.startswith("read-only"):
        assert "read-only" in err


def test_the_python_api_raises_output_folder_error_for_a_file(experiment, tmp_path):
    from napari_niche.experiment.runner import run_experiment

    out = tmp_path / "out"
    out.write_text("not a folder")
    with pytest.raises(OutputFolderError, match="it is a file"):
        run_experiment(experiment, out=out, jobs=1)
    with pytest.raises(OSError):  # also an OSError, for code catching the file system's own
        write_atomically(out, toy_writer("x"))
    assert out.read_text() == "not a folder"


# -- swapping a result in ------------------------------------------------------------------


def test_an_earlier_result_is_replaced_whole_and_other_files_are_kept(tmp_path):
    out = tmp_path / "res"
    write_atomically(out, toy_writer("old"))
    assert tokens(out) == dict.fromkeys(FILES, "old")
    write_atomically(out, toy_writer("new"), lock=True)
    assert tokens(out) == dict.fromkeys(FILES, "new")
    assert hidden(out) == [] and hidden(tmp_path) == []
    # a folder with the user's own files: only the result's files are replaced
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    write_atomically(out, toy_writer("newer"), lock=True)
    assert tokens(out) == dict.fromkeys(FILES, "newer")
    assert (out / "notes.txt").read_text() == "mine" and (out / "sub").is_dir()
    assert hidden(out) == [] and hidden(tmp_path) == []


@pytest.mark.parametrize("error", [RuntimeError("bug"), KeyboardInterrupt(), OSError(28, "full")])
@pytest.mark.parametrize("foreign", [False, True])
def test_a_failed_write_leaves_the_earlier_result_untouched(tmp_path, error, foreign):
    out = tmp_path / "res"
    write_atomically(out, toy_writer("old"))
    if foreign:
        (out / "notes.txt").write_text("mine")

    def write(folder):
        (folder / "a.csv").write_text("new\n")
        raise error

    with pytest.raises(type(error)):
        write_atomically(out, write, lock=True)
    assert tokens(out) == dict.fromkeys(FILES, "old")
    assert hidden(out) == [] and hidden(tmp_path) == []


@pytest.mark.parametrize("foreign", [False, True], ids=["whole", "file-by-file"])
@pytest.mark.parametrize("kill_at", range(1, 7))
def test_a_kill_at_any_point_of_the_swap_never_leaves_a_mix(tmp_path, foreign, kill_at):
    """A child process dies (os._exit, like SIGKILL) at its n-th rename of the swap."""
    out = tmp_path / "res"
    write_atomically(out, toy_writer("old"))
    if foreign:
        (out / "notes.txt").write_text("mine")
    pid = os.fork()
    if pid == 0:  # the child: die at the kill_at-th rename
        calls = [0]

        def dying(real):
            def rename(*args, **kwargs):
                calls[0] += 1
                if calls[0] == kill_at:
                    os._exit(9)
                return real(*args, **kwargs)

            return rename

        nio.os.rename = dying(os.rename)
        nio.os.replace = dying(os.replace)
        try:
            write_atomically(out, toy_writer("new"), lock=True)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    killed = os.waitstatus_to_exitcode(status) == 9
    seen = tokens(out) if out.exists() else {}
    if "params.json" in seen:  # a result: a whole one, old or new
        assert len(set(seen.values())) == 1 and len(seen) == len(FILES), seen
    # the next writer restores or cleans up, then writes its result whole
    remove_leftovers(tmp_path, name="res")
    if killed and not out.exists():
        pytest.fail("the old result was lost")
    if out.exists() and "params.json" in tokens(out):
        assert len(set(tokens(out).values())) == 1
    write_atomically(out, toy_writer("next"), lock=True)
    assert tokens(out) == dict.fromkeys(FILES, "next")
    assert hidden(out) == [] and hidden(tmp_path) == []
    if foreign:
        assert (out / "notes.txt").read_text() == "mine"


def test_leftovers_of_dead_processes_are_removed_those_of_live_ones_kept(tmp_path, holder):
    out = tmp_path / "res"
    write_atomically(out, toy_writer("old"))
    dead = dead_pid()
    live = holder(tmp_path / "elsewhere").pid
    stale = [
        tmp_path / f".res.staging-{dead}-0123abcd",
        out / f".staging-{dead}-0123abcd",
        out / f".old-{dead}-0123abcd",
        out / f".a.csv.tmp-{dead}-0123abcd.csv",
    ]
    busy = tmp_path / f".res.staging-{live}-0123abcd"
    for path in [*stale[:3], busy]:
        path.mkdir()
        (path / "params.json").write_text("{}")
    stale[3].write_text("half a tab")
    write_atomically(out, toy_writer("new"))
    assert not any(p.exists() for p in stale)
    assert busy.exists()  # a live process may still be writing it
    assert tokens(out) == dict.fromkeys(FILES, "new")


def test_an_old_result_set_aside_by_a_killed_process_is_put_back(tmp_path):
    out = tmp_path / "res"
    write_atomically(out, toy_writer("old"))
    aside = tmp_path / f".res.old-{dead_pid()}-0123abcd"
    os.rename(out, aside)  # killed between "old aside" and "new in"
    remove_leftovers(tmp_path)
    assert tokens(out) == dict.fromkeys(FILES, "old") and not aside.exists()


# -- mount points ---------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [False, True], ids=["mount-root", "inside-a-mount"])
def test_analyze_at_the_root_of_a_mount_point(tmpfs, capsys, nested):
    point = tmpfs("20m")
    out = point / "res" if nested else point
    for seed in (1, 2):
        code = main(["analyze", "--sample", "--seed", str(seed), "--out", str(out)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert json.loads((out / "params.json").read_text())["analysis"]["seed"] == seed
        assert hidden(out) == [] and hidden(point) == []
    assert {"cells.csv", "dots.csv", "params.json"} <= {p.name for p in out.iterdir()}


def test_a_cross_device_staging_folder_is_never_renamed_across(tmp_path, monkeypatch):
    """Simulated: ``out`` behaves as a mount point (renaming it, or across it, fails)."""
    out = tmp_path / "res"
    write_atomically(out, toy_writer("old"))
    real = os.rename

    def inside(path):
        return os.path.abspath(path).startswith(str(out) + os.sep)

    def rename(src, dst, *args, **kwargs):
        if os.path.abspath(src) == str(out):
            raise OSError(errno.EBUSY, "Device or resource busy", str(src))
        if inside(src) != inside(dst):
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(nio.os, "rename", rename)
    monkeypatch.setattr(nio.os, "replace", rename)
    monkeypatch.setattr(nio.os.path, "ismount", lambda p: os.path.abspath(p) == str(out))
    write_atomically(out, toy_writer("new"), lock=True)
    assert tokens(out) == dict.fromkeys(FILES, "new")
    assert hidden(out) == [] and hidden(tmp_path) == []


# -- a full disk ----------------------------------------------------------------------------


@pytest.mark.parametrize("free_kb", [0, 8, 30])  # the result is ~44 kB
def test_a_full_disk_during_analyze_is_one_line_and_keeps_the_earlier_result(
    tmpfs, capsys, free_kb
):
    point = tmpfs("2m")
    out = point / "res"
    assert main(["analyze", "--sample", "--seed", "1", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    fill(point, free_kb * 1024)
    code = main(["analyze", "--sample", "--seed", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "No space left on device" in err and "disk is full" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert hidden(out) == [] and hidden(point) == []


def test_a_full_disk_during_analyze_at_a_mount_root(tmpfs, capsys):
    point = tmpfs("2m")
    assert main(["analyze", "--sample", "--seed", "1", "--out", str(point)]) == 0
    before = {p.name: p.read_bytes() for p in point.iterdir()}
    capsys.readouterr()
    fill(point, 30 * 1024)
    before["ballast"] = (point / "ballast").read_bytes()
    assert main(["analyze", "--sample", "--seed", "2", "--out", str(point)]) == 1
    assert {p.name: p.read_bytes() for p in point.iterdir()} == before


# -- a run that does not finish ------------------------------------------------------------


@pytest.mark.parametrize("stop_at", ["analysing", "done"])
def test_an_interrupted_rerun_leaves_no_old_summary_beside_new_images(
    experiment, finished, tmp_path, stop_at
):
    import shutil

    from napari_niche.experiment.runner import SUMMARY_FILES, UNFINISHED, run_experiment

    out = tmp_path / "out"
    shutil.copytree(finished, out)
    first, second = sorted(p.name for p in (out / "images").iterdir())
    old_second = (out / "images" / second / "fingerprint.json").read_bytes()

    def progress(_fraction, message):
        if message.startswith(first) and stop_at in message:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment(experiment, out=out, force=True, jobs=1, figures=False, progress=progress)
    assert (out / UNFINISHED).exists()
    assert [n for n in SUMMARY_FILES if (out / n).exists()] == []
    assert all_hidden(out) == []  # no lock, temporary file or staging folder left
    if stop_at == "done":  # the finished image is kept, the other one untouched
        assert (out / "images" / first / "fingerprint.json").exists()
    else:  # the image it was working on must run again
        assert not (out / "images" / first / "fingerprint.json").exists()
    assert (out / "images" / second / "fingerprint.json").read_bytes() == old_second

    summary = run_experiment(experiment, out=out, jobs=1, figures=False, progress=lambda *a: 0)
    assert summary.ok and not (out / UNFINISHED).exists()
    assert summary.done == ([] if stop_at == "done" else [first])
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert pooled_tables(out) == pooled_tables(finished)
    assert all_hidden(out) == []


def _on_disk(path: Path) -> int:
    """Bytes a file or folder takes on a tmpfs (each file rounded up to whole pages)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in files)


@pytest.fixture(scope="module")
def step_bytes(experiment, finished, tmp_path_factory):
    """What pooling, figures and the report of ``experiment`` write, measured by a full
    run (figures included) beside ``finished``'s images: the full-disk test puts the disk's
    end in the middle of each step whatever the figures' sizes become."""
    import shutil

    out = tmp_path_factory.mktemp("measured") / "out"
    shutil.copytree(finished / "images", out / "images")
    assert main(["run", str(experiment), "--out", str(out), "--jobs", "1"]) == 0
    return {
        "pooling": _on_disk(out / "pooled"),
        "figures": _on_disk(out / "figures"),
        "report": _on_disk(out / "report.html"),
    }


@pytest.mark.parametrize(
    "step, where",
    [
        (None, "UNFINISHED.txt"),
        ("pooling", "pooling failed"),
        ("figures", "figures failed"),
        ("report", "report failed"),
    ],
)
def test_a_full_disk_during_pooling_figures_or_report_is_one_line_and_unfinished(
    experiment, finished, step_bytes, tmpfs, capsys, step, where
):
    import shutil

    from napari_niche.experiment.runner import UNFINISHED

    point = out = tmpfs("3m")  # the output folder is the root of a mount point
    shutil.copytree(finished / "images", out / "images")  # pooling, figures, report remain
    images = {p: p.read_bytes() for p in sorted((out / "images").rglob("*")) if p.is_file()}
    capsys.readouterr()
    free = 0  # the disk ends half-way through ``step``, after the marker and the steps before
    if step is not None:
        order = ["pooling", "figures", "report"]
        before = sum(step_bytes[s] for s in order[: order.index(step)])
        free = 4096 + before + step_bytes[step] // 2
    fill(point, free)
    code = main(["run", str(experiment), "--out", str(out), "--jobs", "1"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "No space left on device" in err and where in err, err
    assert {p: p.read_bytes() for p in images} == images  # earlier results never lost
    assert all_hidden(out) == []  # no report.html.tmp, no half SVG under a hidden name
    for svg in (out / "figures").glob("*.svg"):
        assert svg.read_text().rstrip().endswith("</svg>"), svg
    if step is None:  # could not even mark the folder, nor pool: nothing new written
        assert sorted(p.name for p in out.iterdir()) == ["ballast", "images"]
    else:
        assert (out / UNFINISHED).exists()
        assert not (out / "report.html").exists() and not (out / "run.json").exists()
    if step == "report":  # room again: the next run completes
        from napari_niche.experiment.runner import run_experiment

        (point / "ballast").unlink()
        summary = run_experiment(experiment, out=out, figures=False, progress=lambda *a: 0)
        assert summary.ok and summary.skipped and not summary.done
        assert not (out / UNFINISHED).exists() and (out / "report.html").exists()
        assert pooled_tables(out) == pooled_tables(finished)


def test_the_experiment_dock_reports_a_locked_folder_as_a_message(experiment, holder):
    """The dock's worker returns the refusal for a notification (no traceback dialog)."""
    pytest.importorskip("qtpy")
    from napari_niche._widgets._base import _calling, _Failed, _guarded
    from napari_niche._widgets.experiment import _run
    from napari_niche.experiment.spec import Experiment

    exp = Experiment.load(experiment)
    proc = holder(exp.output)
    work = _guarded(_calling)(_run, lambda fraction, message: None, exp, None, False)
    try:
        while True:
            next(work)
    except StopIteration as done:
        result = done.value
    assert isinstance(result, _Failed)
    assert f"process {proc.pid}" in result.message and str(exp.output) in result.message
