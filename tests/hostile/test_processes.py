"""No process outlives its run; Ctrl-C, SIGTERM and a second run are one line (issue 9, §4).

Real ``napari-niche`` processes are started, killed or interrupted mid-run; every process
they started must be gone within seconds, the output folder must say it is unfinished,
and a restarted run must give the tables of a clean run.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import napari_niche
from napari_niche.cli import main
from napari_niche.experiment.runner import UNFINISHED, run_experiment
from napari_niche.io import LOCK_NAME

psutil = pytest.importorskip("psutil")

SRC = str(Path(napari_niche.__file__).resolve().parents[1])
POOLED = ("statistics.csv", "fold_change.csv", "envelope.csv", "quadrants.csv", "cells.csv")


def env():
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def start(*argv, **kwargs) -> subprocess.Popen:
    """``python -m napari_niche ARGV`` in a session of its own (its own process group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "napari_niche", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
        start_new_session=True,
        **kwargs,
    )


def wait_for(condition, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def workers(proc) -> list:
    """The worker processes of a run (not the resource tracker)."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:
            pass
    return found


def assert_all_gone(procs, timeout=10.0):
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"still running {timeout} s after the run ended: {alive}"


def pooled(out: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_csv(out / "pooled" / name) for name in POOLED}


def assert_same_pooled(a: Path, b: Path) -> None:
    for name, table in pooled(a).items():
        pd.testing.assert_frame_equal(table, pd.read_csv(b / "pooled" / name), obj=name)


def hidden_anywhere(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Two 3D images from curated masks, each a few seconds in a worker."""
    from napari_niche.experiment.synthetic import make_experiment

    return make_experiment(
        tmp_path_factory.mktemp("exp"),
        conditions={"A": "vessel"},
        replicates=2,
        shape=(24, 160, 160),
        spacing=(1.0, 0.57, 0.57),
        n_cells=40,
        realizations=199,
        rng=1,
        from_masks=True,
    )


@pytest.fixture(scope="module")
def clean(experiment, tmp_path_factory):
    """A clean, uninterrupted run: the tables every other run must reproduce."""
    out = tmp_path_factory.mktemp("clean") / "out"
    summary = run_experiment(experiment, out=out, jobs=1, figures=False, progress=lambda *a: 0)
    assert summary.ok
    return out


def old_summary(out: Path) -> None:
    """What an earlier complete run leaves: it must not survive beside new images."""
    (out / "pooled").mkdir(parents=True)
    (out / "figures").mkdir()
    (out / "pooled" / "statistics.csv").write_text("old\n")
    (out / "figures" / "cdf.svg").write_text("<svg>old</svg>\n")
    (out / "report.html").write_text("old report")
    (out / "run.json").write_text("{}")


# -- killed ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT"])
def test_a_killed_run_leaves_no_process_and_resumes_to_a_clean_result(
    experiment, clean, tmp_path, how
):
    out = tmp_path / "out"
    old_summary(out)
    proc = start("run", experiment, "--out", out, "--jobs", "2")
    wait_for(lambda: len(workers(proc)) >= 2, what="two workers")
    time.sleep(1.0)  # the workers are importing, reading or analysing their images
    family = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers(proc)) >= 2
    if how == "SIGINT":  # Ctrl-C in a terminal reaches the whole process group
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(getattr(signal, how))
    stdout, stderr = proc.communicate(timeout=30)
    assert_all_gone(family)
    err = stderr.decode()
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL
    else:
        why = "Interrupted" if how == "SIGINT" else "Terminated"
        assert proc.returncode == (130 if how == "SIGINT" else 143), err
        assert err.strip().splitlines() == [
            f"napari-niche run: {why}; finished images are kept; run again to resume."
        ], err
    # the folder says it is unfinished; the earlier summary is gone, not beside new images
    assert (out / UNFINISHED).exists()
    for name in ("report.html", "run.json", "pooled", "figures"):
        assert not (out / name).exists(), name
    if how != "SIGKILL":  # stopped in order: no lock or temporary file left
        assert hidden_anywhere(out) == []
    if how == "SIGINT":
        return  # resuming is shown after SIGKILL and SIGTERM

    summary = run_experiment(experiment, out=out, jobs=1, figures=False, progress=lambda *a: 0)
    assert summary.ok
    assert not (out / UNFINISHED).exists()
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert_same_pooled(clean, out)
    assert hidden_anywhere(out) == []


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_an_interrupted_analyze_leaves_the_earlier_result_as_it_was(tmp_path, how):
    out = tmp_path / "res"
    assert main(["analyze", "--sample", "--seed", "1", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = start("analyze", "--sample", "--seed", "2", "--realizations", "200", "--out", out)
    wait_for(lambda: (out / LOCK_NAME).exists(), what="the lock")
    time.sleep(0.3)
    os.killpg(proc.pid, getattr(signal, how))
    _, stderr = proc.communicate(timeout=30)
    err = stderr.decode()
    assert proc.returncode == (130 if how == "SIGINT" else 143), err
    why = "Interrupted" if how == "SIGINT" else "Terminated"
    assert err.strip().splitlines() == [
        f"napari-niche analyze: {why}; {out} was left as it was (no new results written)."
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert hidden_anywhere(tmp_path) == []


# -- two at once -------------------------------------------------------------------------------


def test_a_second_run_on_the_same_folder_is_refused_and_the_first_completes(
    experiment, clean, tmp_path
):
    out = tmp_path / "out"
    code = (
        "import sys\nfrom napari_niche.experiment.runner import run_experiment\n"
        "s = run_experiment(sys.argv[1], out=sys.argv[2], jobs=1, figures=False)\n"
        "sys.exit(0 if s.ok else 1)\n"
    )
    first = subprocess.Popen(
        [sys.executable, "-c", code, str(experiment), str(out)], env=env(), stderr=subprocess.PIPE
    )
    wait_for(lambda: (out / LOCK_NAME).exists(), what="the first run's lock")
    second = start("run", experiment, "--out", out, "--jobs", "1")
    _, stderr = second.communicate(timeout=60)  # a hang guard, not a speed target
    err = stderr.decode()
    assert second.returncode == 2, err
    assert len(err.strip().splitlines()) == 1
    assert str(out) in err and f"process {first.pid}" in err
    assert first.wait(120) == 0, first.stderr.read().decode()
    assert_same_pooled(clean, out)
    assert not (out / UNFINISHED).exists() and hidden_anywhere(out) == []


def test_a_second_analyze_on_the_same_folder_is_refused_and_the_first_completes(tmp_path):
    out = tmp_path / "res"
    args = ("analyze", "--sample", "--seed", "3", "--realizations", "200")
    first = start(*args, "--out", out)
    wait_for(lambda: (out / LOCK_NAME).exists(), what="the first analysis' lock")
    second = start(*args, "--out", out)
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 2
    assert len(stderr.decode().strip().splitlines()) == 1
    assert f"process {first.pid}" in stderr.decode()
    assert first.wait(120) == 0
    alone = tmp_path / "alone"
    assert main([*args, "--out", str(alone)]) == 0
    for name in ("cells.csv", "dots.csv", "fold_change.csv", "stats.csv", "envelope.csv"):
        assert (out / name).read_bytes() == (alone / name).read_bytes(), name
    assert hidden_anywhere(tmp_path) == []


# -- a script without the __main__ guard --------------------------------------------------------


SCRIPTS = {
    # calls run_experiment at its top level: every worker would run the experiment again
    "no guard": "{call}\n",
    # guarded, but its workers cannot start (their import of the script fails)
    "workers cannot start": (
        'if __name__ == "__mp_main__":\n    raise SystemExit(3)\n'
        'if __name__ == "__main__":\n    s = {call}\n    print(s.failed)\n'
    ),
}


@pytest.mark.parametrize("case", SCRIPTS)
def test_a_script_whose_workers_cannot_start_is_told_why(experiment, tmp_path, case):
    script = tmp_path / "script.py"
    call = (
        f"run_experiment({str(experiment)!r}, out={str(tmp_path / 'out')!r}, jobs=2, "
        "figures=False)"
    )
    script.write_text(
        "from napari_niche.experiment.runner import run_experiment\n"
        + SCRIPTS[case].format(call=call)
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
        start_new_session=True,
    )
    family = []
    try:
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        family = [p for p in psutil.process_iter() if _in_session(p, proc.pid)]
    said = stdout.decode() + stderr.decode()
    assert 'if __name__ == "__main__":' in said
    assert "out of memory" not in said
    if case == "no guard":
        assert proc.returncode != 0 and str(script) in said
    else:
        assert proc.returncode == 0 and "could not start" in said
    assert_all_gone(family)


def _in_session(process, sid) -> bool:
    try:
        return os.getsid(process.pid) == sid
    except OSError:
        return False
