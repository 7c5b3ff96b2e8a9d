"""Timings that used to be assertions inside tests, with the same bounds as targets.

    python benchmarks/bench_test_timings.py         # table; exit 1 if a target fails
    xvfb-run -a python benchmarks/bench_test_timings.py   # without a display (Qt rows)

A test that asserts wall-clock time fails on a busy or slow machine although nothing is
wrong, so the tests keep their results and the times are measured here instead, on the
same inputs (built with the tests' own helpers, so a refactoring of the tests carries
over). Each row is one call, timed with ``time.perf_counter`` after the inputs are built:

- hard-core placement refusing a tissue the cells fill beyond random packing
  (``tests/core/test_hardcore.py``), < 10 s each;
- the density ratio of 5,000 cells against 10^6 random cells with its bootstrap band
  (``tests/core/test_density.py``), < 3 s;
- the synthetic phantom: the small one (20 x 96 x 96, 30 cells; mean of 5 seeds) < 1 s and
  the default one < 6 s (``tests/core/test_synthetic.py``);
- 40 null experiments of the pooling calibration
  (``tests/experiment/test_synthetic_experiment.py``), < 30 s;
- the Tables dock's model: 50,000 rows shown in a view, then sorted by a column
  (``tests/widgets/test_tables_widget.py``), < 1 s each (needs a display).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"


def _test_module(relpath: str):
    """A test file loaded as a module, with tests/ importable as pytest sets it up."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    name = "_bench_" + relpath.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, TESTS / relpath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(step: str, size: str, seconds: float, limit: float) -> dict:
    return {
        "step": step,
        "size": size,
        "time_s": round(seconds, 3),
        "target": f"< {limit:g} s",
        "result": "pass" if seconds < limit else "FAIL",
    }


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def hardcore_rows() -> list[dict]:
    from napari_niche.core.errors import NoRoomError

    hc = _test_module("core/test_hardcore.py")
    out = []
    for fraction in (1.2, 0.75):
        tissue, vessel, labels = hc.crowded_phantom(2, 0.3)
        room = tissue & ~vessel
        wide = np.zeros_like(vessel)
        need = np.count_nonzero(labels) / fraction
        rows = np.flatnonzero(room.any(axis=1))
        k = 0
        while np.count_nonzero(room & ~wide) > need:
            wide[rows[k]] = True
            k += 1

        def refuse(wide=wide, tissue=tissue, vessel=vessel, labels=labels):
            try:
                hc._place(labels, tissue, {"vessel": vessel | wide}, 1.0, dots_per_cell=19,
                          rng=0, max_attempts=20_000)  # fmt: skip
            except NoRoomError:
                return
            raise AssertionError("the too-full tissue was not refused")

        out.append(
            _row(
                f"hard-core: too-full tissue refused (cells fill {fraction:.0%})",
                "64 x 64, 19 dots per cell",
                _timed(refuse),
                10,
            )
        )
    return out


def density_rows() -> list[dict]:
    from napari_niche.core.density import density_ratio

    rng = np.random.default_rng(3)
    cells, dots = rng.exponential(10, 5000), rng.exponential(10, 1_000_000)
    seconds = _timed(lambda: density_ratio(cells, dots, rng=7))
    return [_row("density_ratio with bootstrap band", "5,000 vs 10^6 distances", seconds, 3)]


def synthetic_rows() -> list[dict]:
    from napari_niche.core.synthetic import make_bone_marrow

    small, spacing = (20, 96, 96), (2.0, 0.57, 0.57)
    start = time.perf_counter()
    for seed in range(5):
        make_bone_marrow(small, spacing, n_cells=30, near_vessel_fraction=0.0, rng=seed)
    per_small = (time.perf_counter() - start) / 5
    default = _timed(lambda: make_bone_marrow(rng=1))
    return [
        _row("make_bone_marrow, small (mean of 5 seeds)", "20 x 96 x 96, 30 cells", per_small, 1),
        _row("make_bone_marrow, default", "40 x 256 x 256, 150 cells", default, 6),
    ]


def null_experiment_rows() -> list[dict]:
    se = _test_module("experiment/test_synthetic_experiment.py")
    seconds = _timed(lambda: [se._null_experiment(seed) for seed in range(se.N_NULL)])
    size = f"{se.N_NULL} experiments x 2 images, 19 null sets"
    return [_row("pooling calibration: null experiments", size, seconds, 30)]


def table_rows() -> list[dict]:
    import pandas as pd
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QApplication, QTableView

    from napari_niche._widgets.tables import DataFrameModel

    app = QApplication.instance() or QApplication([])
    rng = np.random.default_rng(0)
    n = 50_000
    table = pd.DataFrame(
        {
            "label": np.arange(1, n + 1),
            **{f"c{i}": rng.random(n) * 100 for i in range(6)},
            "structure": ["vessel"] * n,
        }
    )
    start = time.perf_counter()
    model = DataFrameModel(table, compact=True)
    view = QTableView()
    view.setModel(model)
    view.resize(600, 400)
    view.show()
    QTest.qWaitForWindowExposed(view)
    shown = time.perf_counter() - start
    sort = _timed(lambda: model.sort(2, Qt.SortOrder.AscendingOrder))
    view.close()
    app.processEvents()
    size = f"{n:,} rows x 8 columns"
    return [
        _row("Tables: model built and shown", size, shown, 1),
        _row("Tables: sort by a column", size, sort, 1),
    ]


def rows() -> list[dict]:
    """One row per timing: ``step``, ``size``, ``time_s``, ``target``, ``result``."""
    out = []
    for part in (hardcore_rows, density_rows, synthetic_rows, null_experiment_rows, table_rows):
        out += part()
    return out


def main() -> int:
    table = rows()
    header = ("step", "size", "time (s)", "target", "result")
    cells = [(r["step"], r["size"], f"{r['time_s']:.3f}", r["target"], r["result"]) for r in table]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *cells, strict=True)]

    def line(row):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    print("\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]))
    print("\n".join(line(c) for c in cells))
    return 1 if any(r["result"] == "FAIL" for r in table) else 0


if __name__ == "__main__":
    sys.exit(main())
