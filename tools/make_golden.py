"""Write tests/data/golden_*.json: reference values computed from the definitions.

Nothing here imports napari_niche: every value comes from the textbook definition (by
enumeration where it is finite) or from the reference library's documented formula, so
``tests/core/test_golden.py`` compares the project's functions against an independent
computation (see docs/conventions.md). Run from the repository root:

    python tools/make_golden.py

The inputs are fixed numbers (no random draws), so the files are reproducible.
"""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy import stats

OUT = Path(__file__).resolve().parents[1] / "tests" / "data"


# -- global envelope test (Myllymäki et al. 2017; R's GET) -------------------------------------
def erl_by_definition(curves: list[list[float]], alternative: str):
    """ERL p-value and extreme-rank p-interval of curve 0 among all curves.

    Pointwise average ranks counted one by one; two-sided min(from below, from above),
    "less" from below, "greater" from above (GET's find_calc_pointwiserank); curves
    compared by their ascending rank vectors, lexicographically. p = curves at least as
    extreme / n (GET's estimate_p_value, ties "conservative"); p-interval = (curves with a
    strictly smaller extreme rank / n, (1 + others with a smaller or equal one) / n)
    (GET's type "rank", ties "liberal" and "conservative").
    """
    n, k = len(curves), len(curves[0])
    vectors = []
    for i in range(n):
        ranks = []
        for r in range(k):
            below = sum(curves[j][r] < curves[i][r] for j in range(n))
            equal = sum(curves[j][r] == curves[i][r] for j in range(n))
            low = below + (equal + 1) / 2
            high = n + 1 - low
            ranks.append({"two-sided": min(low, high), "less": low, "greater": high}[alternative])
        vectors.append(sorted(ranks))
    obs = vectors[0]
    p = sum(v <= obs for v in vectors) / n
    extreme = [v[0] for v in vectors]
    liberal = sum(e < extreme[0] for e in extreme[1:]) / n
    conservative = (1 + sum(e <= extreme[0] for e in extreme[1:])) / n
    return p, (liberal, conservative), extreme[0]


def envelope_cases() -> list[dict]:
    cases = []
    # fixed curve sets: 19 null curves over 3 bins, with ties (counts) and without
    base = [[(7 * j + 3 * r) % 11 + 0.1 * ((j * r) % 3) for r in range(3)] for j in range(19)]
    counts = [[float((5 * j + 2 * r * r) % 4) for r in range(3)] for j in range(19)]
    for name, sims, observed in (
        ("continuous, observed high in bin 0", base, [12.0, 5.05, 4.1]),
        ("continuous, observed low in bin 2", base, [6.0, 5.05, -1.0]),
        ("counts with ties, observed at the top", counts, [3.0, 3.0, 3.0]),
        ("counts with ties, observed in the middle", counts, [1.0, 2.0, 1.0]),
    ):
        for alternative in ("two-sided", "greater", "less"):
            p, interval, rank = erl_by_definition([observed, *sims], alternative)
            cases.append(
                {
                    "name": name,
                    "alternative": alternative,
                    "observed": observed,
                    "simulated": sims,
                    "p_value": p,
                    "p_interval": list(interval),
                    "extreme_rank": rank,
                }
            )
    return cases


# -- Fisher exact test and chi-square without Yates ---------------------------------------------
def fisher_by_enumeration(a: int, b: int, c: int, d: int) -> float:
    """Two-sided Fisher p: the hypergeometric probabilities (exact fractions) of every
    table with the same margins that are no more probable than the observed one."""
    row1, col1, total = a + b, a + c, a + b + c + d

    def prob(x: int) -> Fraction:
        return Fraction(
            math.comb(col1, x) * math.comb(total - col1, row1 - x), math.comb(total, row1)
        )

    observed = prob(a)
    lo, hi = max(0, row1 + col1 - total), min(row1, col1)
    return float(sum(q for q in map(prob, range(lo, hi + 1)) if q <= observed))


def chi_square_by_formula(table: list[list[int]]) -> tuple[float, float, int]:
    """Pearson's X² = sum (O - E)² / E, no continuity correction; p from chi² df."""
    t = np.asarray(table, dtype=float)
    expected = t.sum(axis=1, keepdims=True) * t.sum(axis=0, keepdims=True) / t.sum()
    x2 = float(((t - expected) ** 2 / expected).sum())
    df = (t.shape[0] - 1) * (t.shape[1] - 1)
    return x2, float(stats.chi2.sf(x2, df)), df


def contingency_cases() -> list[dict]:
    cases = []
    # cells and random cells per quadrant Q1..Q4
    for cells, dots in (([12, 3, 20, 5], [10, 15, 60, 15]), ([2, 0, 7, 1], [30, 12, 40, 18])):
        n_c, n_d = sum(cells), sum(dots)
        fisher = []
        for a, c in zip(cells, dots, strict=True):
            b, d = n_c - a, n_d - c
            odds = (a * d) / (b * c) if b * c else (math.inf if a * d else math.nan)
            fisher.append({"p_value": fisher_by_enumeration(a, b, c, d), "odds_ratio": odds})
        used = [j for j in range(4) if cells[j] + dots[j] > 0]
        x2, p, df = chi_square_by_formula([[cells[j] for j in used], [dots[j] for j in used]])
        cases.append(
            {
                "cells": cells,
                "dots": dots,
                "fisher": fisher,
                "chi_square": {"statistic": x2, "p_value": p, "df": df},
            }
        )
    # a 2 x 2 table (two quadrants empty): no Yates correction either
    cells, dots = [6, 0, 14, 0], [20, 0, 20, 0]
    x2, p, df = chi_square_by_formula([[6, 14], [20, 20]])
    cases.append(
        {"cells": cells, "dots": dots, "chi_square": {"statistic": x2, "p_value": p, "df": df}}
    )
    return cases


# -- Kolmogorov-Smirnov ---------------------------------------------------------------------
def ks_statistic(x, y) -> float:
    """sup |F_x - F_y| over the pooled values (ECDFs counted directly)."""
    grid = sorted(set(x) | set(y))
    return max(
        abs(sum(v <= g for v in x) / len(x) - sum(v <= g for v in y) / len(y)) for g in grid
    )


def ks_exact_by_enumeration(x, y) -> tuple[float, float]:
    """D and P(D >= d) over every split of the pooled (distinct) values into the two
    sample sizes: the exact permutation distribution scipy's method "exact" computes."""
    pooled = sorted([*x, *y])
    n1, n = len(x), len(pooled)
    d_obs = ks_statistic(x, y)
    # with distinct values, D depends only on which positions belong to x
    hits = total = 0
    for chosen in itertools.combinations(range(n), n1):
        inx = np.zeros(n, dtype=bool)
        inx[list(chosen)] = True
        f1 = np.cumsum(inx) / n1
        f2 = np.cumsum(~inx) / (n - n1)
        d = np.abs(f1 - f2).max()
        hits += d >= d_obs - 1e-12
        total += 1
    return d_obs, hits / total


def ks_cases() -> list[dict]:
    small_x = [0.3, 1.7, 2.2, 4.9, 5.1, 7.4]
    small_y = [1.1, 2.9, 3.3, 6.0, 8.2, 8.8, 9.5]
    d, p = ks_exact_by_enumeration(small_x, small_y)
    cases = [{"name": "exact (6 vs 7)", "cells": small_x, "dots": small_y, "D": d, "p": p}]
    # more than 10000 random cells: scipy's "asymp" branch, the finite-n Kolmogorov
    # distribution kstwo with n = round(n1 n2 / (n1 + n2)) (R uses the limit instead)
    cells_grid, dots_grid = (0.2, 0.5, 40), (0.0001, 0.002, 12000)  # start, step, n
    cells = [cells_grid[0] + cells_grid[1] * i for i in range(cells_grid[2])]
    dots = [dots_grid[0] + dots_grid[1] * i for i in range(dots_grid[2])]
    d = ks_statistic_fast(cells, dots)
    en = round(len(cells) * len(dots) / (len(cells) + len(dots)))
    cases.append(
        {
            "name": "asymptotic branch (40 vs 12000)",
            "cells_grid": cells_grid,
            "dots_grid": dots_grid,
            "D": d,
            "p": float(stats.kstwo.sf(d, en)),
            "p_kolmogorov_limit": float(stats.kstwobign.sf(d * math.sqrt(en))),
        }
    )
    return cases


def ks_statistic_fast(x, y) -> float:
    """ks_statistic with sorted arrays (same definition, for the large case)."""
    x, y = np.sort(x), np.sort(y)
    grid = np.union1d(x, y)
    fx = np.searchsorted(x, grid, side="right") / x.size
    fy = np.searchsorted(y, grid, side="right") / y.size
    return float(np.abs(fx - fy).max())


# -- Mann-Whitney U ---------------------------------------------------------------------------
def average_ranks(values) -> list[float]:
    order = sorted(values)
    return [order.index(v) + (order.count(v) + 1) / 2 for v in values]


def mann_whitney_exact_by_enumeration(x, y) -> tuple[float, float]:
    """U of x and the exact two-sided permutation p with ties (average ranks): the share
    of all splits whose U is at least as far from n1 n2 / 2 as the observed one."""
    pooled = [*x, *y]
    ranks = average_ranks(pooled)
    n1, n = len(x), len(pooled)
    offset = n1 * (n1 + 1) / 2
    u_obs = sum(ranks[:n1]) - offset
    centre = n1 * (n - n1) / 2
    splits = list(itertools.combinations(range(n), n1))
    far = sum(abs(sum(ranks[i] for i in s) - offset - centre) >= abs(u_obs - centre) - 1e-9
              for s in splits)  # fmt: skip
    return u_obs, far / len(splits)


def mann_whitney_normal(x, y) -> tuple[float, float]:
    """U of x and the two-sided normal approximation with tie correction and continuity
    correction 0.5 (scipy's "asymptotic", R's wilcox.test(correct = TRUE) with ties)."""
    pooled = [*x, *y]
    ranks = average_ranks(pooled)
    n1, n2 = len(x), len(y)
    n = n1 + n2
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    ties = [pooled.count(v) for v in set(pooled)]
    var = n1 * n2 / 12 * ((n + 1) - sum(t**3 - t for t in ties) / (n * (n - 1)))
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(var)
    return u, float(2 * stats.norm.sf(z))


def mann_whitney_cases() -> dict:
    exact = []
    for x, y in (
        ([0.1, 0.0, 0.3], [0.4, 0.6, 0.5]),  # 3 vs 3, apart: 2 / C(6, 3) = 0.1
        ([0.0, 0.2, 0.2, 0.5], [0.2, 0.0, 0.7, 0.9, 0.9]),  # ties across groups
        ([0.25], [0.5]),  # 1 vs 1: p = 1
    ):
        u, p = mann_whitney_exact_by_enumeration(x, y)
        exact.append({"x": x, "y": y, "U": u, "p": p})
    cells = [float(v) for v in (1, 2, 2, 3, 5, 8, 8, 8, 13, 21, 3, 4)]
    dots = [float(v) for v in (2, 3, 5, 5, 8, 9, 10, 12, 13, 15, 20, 21, 25, 30)]
    u, p = mann_whitney_normal(cells, dots)
    return {
        "exact_with_ties": exact,
        "normal": [{"cells": cells, "dots": dots, "U": u, "p": p}],
    }


# -- Holm -----------------------------------------------------------------------------------
def holm_by_definition(p: list[float]) -> list[float]:
    """R's p.adjust(method = "holm"): p_(i) (m - i + 1), running maximum, capped at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, p[i] * (m - rank)))
        out[i] = running
    return out


def holm_cases() -> list[dict]:
    families = ([0.01, 0.04, 0.03, 0.005], [0.2, 0.001, 0.5, 0.04, 0.04], [0.6])
    return [{"p": p, "adjusted": holm_by_definition(p)} for p in families]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    files = {
        "golden_envelope.json": envelope_cases(),
        "golden_contingency.json": contingency_cases(),
        "golden_ks.json": ks_cases(),
        "golden_mann_whitney.json": mann_whitney_cases(),
        "golden_holm.json": holm_cases(),
    }
    for name, data in files.items():
        (OUT / name).write_text(_one_case_per_line(data) + "\n")
        print(f"wrote {OUT / name}")


def _one_case_per_line(data) -> str:
    """JSON with one case (list item or dict entry) per line: small, readable diffs."""
    if isinstance(data, list):
        return "[\n" + ",\n".join(json.dumps(case) for case in data) + "\n]"
    lines = [f"{json.dumps(key)}: {_one_case_per_line(value)}" for key, value in data.items()]
    return "{\n" + ",\n".join(lines) + "\n}"


if __name__ == "__main__":
    main()
