"""The small table the GUI benchmarks print when run on their own (times in ms)."""

from __future__ import annotations


def ms_table(results: list[dict]) -> str:
    """Markdown table of ``rows()`` results: step, size, time (ms), target, pass/fail."""
    header = ("step", "size", "time (ms)", "target", "pass/fail")
    lines = [
        (r["step"], r["size"], f"{1000 * r['time_s']:.1f}", r["target"], r["result"])
        for r in results
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]

    def fmt(cells):
        return (
            "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"
        )

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(header), sep, *map(fmt, lines)])
