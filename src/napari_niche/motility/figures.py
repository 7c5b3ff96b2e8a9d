"""Figures of a motility analysis: speeds, ensemble MSD, alpha (matplotlib without pyplot)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_niche.core.msd import MSD_WEIGHTING_TEXT
from napari_niche.style import tab10_colours


def _axes(ax, size=(4.5, 3.5)):
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def speed_figure(
    per_track: pd.DataFrame,
    *,
    metric: str = "mean_speed_um_per_min",
    label: str = "mean speed (µm/min)",
    ax=None,
    rng: int | np.random.Generator | None = 0,
):
    """Plot one point per track for each condition, with the mean +- SD as a bar.

    ``rng`` only jitters the points sideways (seeded, so figures are reproducible).

    Parameters
    ----------
    per_track : DataFrame
        The per-track table (``tracks.csv``) with ``condition``.
    metric : str
        The column to plot.
    label : str
        The y-axis label.
    ax : matplotlib Axes, optional
        Draw here (the dock's canvas); default a new figure.
    rng : int or Generator, optional
        Seed of the sideways jitter.

    Returns
    -------
    Figure
        The figure drawn on.
    """
    fig, ax = _axes(ax)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    names = list(pd.unique(per_track["condition"]))
    for i, (name, color) in enumerate(zip(names, tab10_colours(len(names)), strict=True)):
        v = per_track.loc[per_track["condition"] == name, metric].to_numpy(float)
        v = v[np.isfinite(v)]
        x = i + gen.uniform(-0.18, 0.18, v.size)
        ax.scatter(x, v, s=8, color=color, alpha=0.5, linewidths=0)
        if v.size:
            sd = v.std(ddof=1) if v.size > 1 else 0.0
            ax.errorbar(i + 0.3, v.mean(), yerr=sd, fmt="o", color="k", capsize=3, ms=4)
    ax.set_xticks(
        range(len(names)), [f"{n}\n(n={int((per_track['condition'] == n).sum())})" for n in names]
    )
    ax.set_ylabel(label)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_title("per track; bar: mean ± SD", fontsize=9)
    return fig


def msd_figure(msd: pd.DataFrame, *, ax=None):
    """Plot ensemble MSD / lag against lag on log-log axes, with the bootstrap band.

    MSD / lag is flat for diffusion, falls for confined (sub-diffusive) and rises for
    directed (super-diffusive) motion, so the eye reads alpha - 1 as the slope. The title
    names the weighting of the ensemble (the table's ``msd_weighting``).

    Parameters
    ----------
    msd : DataFrame
        The ensemble MSD table (``msd.csv``).
    ax : matplotlib Axes, optional
        Draw here (the dock's canvas); default a new figure.

    Returns
    -------
    Figure
        The figure drawn on.
    """
    fig, ax = _axes(ax)
    names = list(pd.unique(msd["condition"]))
    for name, color in zip(names, tab10_colours(len(names)), strict=True):
        m = msd[msd["condition"] == name]
        lag = m["lag_s"].to_numpy(float)
        ax.plot(lag, m["msd_um2"] / lag, color=color, label=name, lw=1.5)
        lo, hi = m["msd_ci_low_um2"].to_numpy(float), m["msd_ci_high_um2"].to_numpy(float)
        ok = np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.fill_between(
                lag[ok], lo[ok] / lag[ok], hi[ok] / lag[ok], color=color, alpha=0.25, lw=0
            )
    ax.set_xscale("log")
    if (msd["msd_um2"].to_numpy(float) > 0).any():  # cells that never move: MSD all 0
        ax.set_yscale("log")
    _plain_log_labels(ax)
    ax.set_xlabel("lag (s)")
    ax.set_ylabel("MSD / lag (µm²/s)")
    if names:
        ax.legend(frameon=False, fontsize=8)
    # two lines: one line was wider than the Motility dock and ran off the figure
    ax.set_title(f"ensemble MSD / lag, 95% bootstrap band{_weighting_line(msd)}", fontsize=9)
    return fig


def _weighting_text(table: pd.DataFrame) -> str:
    """`` (how the ensemble weighs tracks)`` for a title, from ``table`` (msd or alpha)."""
    if "msd_weighting" not in table.columns or table.empty:
        return ""
    names = [str(w) for w in pd.unique(table["msd_weighting"])]
    return " (" + ", ".join(MSD_WEIGHTING_TEXT.get(w, w) for w in names) + ")"


def _weighting_line(table: pd.DataFrame) -> str:
    """Put the weighting (:func:`_weighting_text`) as a second title line, if any."""
    text = _weighting_text(table).strip()
    return f"\n{text}" if text else ""


def _plain_log_labels(ax) -> None:
    """Ticks at 1, 2, 5 x 10^k labelled as plain numbers; no crowded minor-tick labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis in (a for a in (ax.xaxis, ax.yaxis) if a.get_scale() == "log"):
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def alpha_figure(per_track: pd.DataFrame, alpha: pd.DataFrame, *, band: float = 0.1, ax=None):
    """Plot per-track alpha per condition, the ensemble alpha with its CI, and the diffusive band.

    Parameters
    ----------
    per_track : DataFrame
        The per-track table (``tracks.csv``).
    alpha : DataFrame
        The per-condition alpha table (``alpha.csv``).
    band : float
        Alpha within ``1 +- band`` is diffusive (shaded).
    ax : matplotlib Axes, optional
        Draw here (the dock's canvas); default a new figure.

    Returns
    -------
    Figure
        The figure drawn on.
    """
    fig, ax = _axes(ax)
    names = list(alpha["condition"])
    ax.axhspan(1 - band, 1 + band, color="0.85", lw=0, label="diffusive band")
    gen = np.random.default_rng(0)
    for i, (name, color) in enumerate(zip(names, tab10_colours(len(names)), strict=True)):
        a = per_track.loc[per_track["condition"] == name, "alpha"].to_numpy(float)
        a = a[np.isfinite(a)]
        ax.scatter(
            i + gen.uniform(-0.18, 0.18, a.size), a, s=8, color=color, alpha=0.5, linewidths=0
        )
        row = alpha[alpha["condition"] == name].iloc[0]
        if np.isfinite(row["alpha_ensemble"]):
            lo, hi = row["alpha_ensemble_ci_low"], row["alpha_ensemble_ci_high"]
            if np.isfinite(lo) and np.isfinite(hi):  # drawn as is: with few resamples
                # (--n-boot 2) a percentile CI need not contain the estimate
                ax.vlines(i + 0.3, lo, hi, color="k", lw=1)
                ax.hlines([lo, hi], i + 0.25, i + 0.35, color="k", lw=1)
            ax.plot(i + 0.3, row["alpha_ensemble"], "D", color="k", ms=4)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("MSD exponent α")
    ax.set_title(f"per track; ◆ ensemble α, 95% CI{_weighting_line(alpha)}", fontsize=9)
    return fig


#: The figures of a saved result, each written in every format of :data:`FIGURE_FORMATS`.
FIGURES: tuple[str, ...] = ("speed", "msd", "alpha")
FIGURE_FORMATS: tuple[str, ...] = ("png", "svg")


def save_figures(
    per_track: pd.DataFrame, msd: pd.DataFrame, alpha: pd.DataFrame, folder, *, band: float
) -> None:
    """Write the speed, MSD and alpha figures into ``folder`` (PNG and SVG, no dates).

    Parameters
    ----------
    per_track, msd, alpha : DataFrame
        The result's per-track, ensemble MSD and alpha tables.
    folder : Path
        Where the files go (a staging folder of the atomic writer).
    band : float
        Half-width of the diffusive band of alpha (``MotilityParams.diffusive_band``).
    """
    from pathlib import Path

    figures = {
        "speed": speed_figure(per_track),
        "msd": msd_figure(msd),
        "alpha": alpha_figure(per_track, alpha, band=band),
    }
    for name, fig in figures.items():
        for ext in FIGURE_FORMATS:
            meta = {"Date": None} if ext == "svg" else {"Software": None}
            fig.savefig(Path(folder) / f"{name}.{ext}", dpi=150, metadata=meta)
