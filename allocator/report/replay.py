"""HTML report of a trace replay: one page, no server, PNGs embedded as base64.

`write_replay_report(results, out_dir, ...)` writes `index.html` and, next
to it, the same figures as PNG files:

- `wait_cdf.png`: empirical CDF of the wait time per policy (log x axis);
- `utilisation.png`: busy share of all agents over time per policy;
- `queues.png`: queue length per agent over time (one heat map per policy;
  the last row is the global queue);
- `miss_by_class.png`: deadline-miss rate per priority class and policy.

matplotlib runs on the Agg backend (no display needed).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import polars as pl
from matplotlib.figure import Figure

from allocator.report import units
from allocator.workloads.base import Trace
from allocator.workloads.replay import ReplayResult, utilisation_series

#: Columns of the comparison table, in order, with their format: a format string, or a
#: function of the value (then the header comes from `units.header`, with its unit).
Column = tuple[str, "str | units.Formatter"]
TABLE_COLUMNS: tuple[Column, ...] = (
    ("policy", "{}"), *((k, units.formatter(k)) for k in (
        "agents", "tasks", "completed", "rejected", "failed", "miss_rate", "mean_wait",
        "p50_wait", "p95_wait", "p99_wait", "mean_bounded_slowdown", "utilisation", "jain",
        "jain_tenants", "steals", "migrations", "span")),
    ("wall_s", "{:.2f}"),
)
CLASSES = ("critical", "high", "normal", "low")


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column] =
                 TABLE_COLUMNS) -> list[list[str]]:
    """Rows as strings (header first), for text and HTML tables alike."""
    cols = [(k, f) for k, f in columns if any(k in r for r in rows)]
    out = [[k if isinstance(f, str) else units.header(k) for k, f in cols]]
    for r in rows:
        out.append([("" if k not in r else f.format(r[k]) if isinstance(f, str) else f(r[k]))
                    for k, f in cols])
    return out


def text_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column] =
               TABLE_COLUMNS) -> str:
    """A fixed-width text table (what the CLI prints)."""
    cells = format_table(rows, columns)
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    lines = []
    for j, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if j and i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _png(fig: Figure, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    data = buf.getvalue()
    path.write_bytes(data)
    return base64.b64encode(data).decode("ascii")


def plot_wait_cdf(results: Sequence[ReplayResult]) -> Figure:
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for r in results:
        w = np.sort(r.records.filter(pl.col("wait").is_not_null())["wait"].to_numpy())
        if w.size == 0:
            continue
        y = np.arange(1, w.size + 1) / w.size
        ax.step(np.maximum(w, 1e-3), y, where="post", label=r.policy, lw=1.3)
    ax.set_xscale("log")
    ax.set_xlabel("wait (s, log; zero waits drawn at 1e-3)")
    ax.set_ylabel("share of tasks waiting at most x")
    ax.set_title("Wait-time CDF per policy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return fig


def plot_utilisation(results: Sequence[ReplayResult], bins: int = 120) -> Figure:
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for r in results:
        x, u = utilisation_series(r.records, r.agents, bins)
        if x.size:
            ax.plot(x, u, label=r.policy, lw=1.0)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("busy share of agents")
    ax.set_ylim(0, 1.05)
    ax.set_title("Utilisation over time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=3)
    return fig


def plot_queues(results: Sequence[ReplayResult]) -> Figure:
    n = len(results)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    vmax = max((float(r.queue_samples.drop("time").to_numpy().max())
                for r in results if r.queue_samples.height), default=1.0) or 1.0
    im = None
    for k, r in enumerate(results):
        ax = axes[k // cols][k % cols]
        q = r.queue_samples
        if q.height == 0:
            ax.set_axis_off()
            continue
        mat = q.drop("time").to_numpy().T.astype(float)
        t = q["time"].to_numpy()
        im = ax.imshow(mat, aspect="auto", interpolation="nearest", cmap="viridis",
                       vmin=0, vmax=vmax, extent=(float(t[0]), float(t[-1]),
                                                  mat.shape[0] - 0.5, -0.5))
        labels = q.columns[1:]
        step = max(1, len(labels) // 8)
        ax.set_yticks(range(0, len(labels), step), labels[::step], fontsize=7)
        ax.set_title(r.policy, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].set_axis_off()
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label="queued tasks")
    fig.suptitle("Queue length per agent over time (last row: global queue)")
    return fig


def plot_miss_by_class(results: Sequence[ReplayResult]) -> Figure:
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    data = [r.miss_by_class() for r in results]
    classes = [c for c in CLASSES if any(c in d for d in data)]
    width = 0.8 / max(1, len(results))
    x = np.arange(len(classes))
    for i, (r, d) in enumerate(zip(results, data, strict=True)):
        ax.bar(x + i * width - 0.4 + width / 2, [d.get(c, 0.0) for c in classes], width,
               label=r.policy)
    ax.set_xticks(x, classes)
    ax.set_ylabel("deadline-miss rate")
    ax.set_ylim(0, 1.0)
    ax.set_title("Miss rate per priority class")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, ncol=3)
    return fig


_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:12px;margin:8px 0 20px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f2f2f2} td.best{font-weight:bold;background:#eaf6ea}
img{max-width:100%;border:1px solid #ddd;margin:6px 0 18px}
pre{background:#f7f7f7;padding:8px;font-size:12px}
"""

#: Columns where lower is better, bolded per column in the HTML table.
_LOWER_BETTER = ("miss_rate", "mean_wait", "p50_wait", "p95_wait", "p99_wait",
                 "mean_bounded_slowdown")


def html_table(rows: Sequence[dict[str, Any]]) -> str:
    cells = format_table(rows)
    head = cells[0]
    best: dict[str, float] = {}
    for k in _LOWER_BETTER:
        vals = [r[k] for r in rows if k in r]
        if vals:
            best[k] = min(vals)
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for r, row in zip(rows, cells[1:], strict=True):
        tds = []
        for k, c in zip(head, row, strict=True):
            cls = ' class="best"' if k in best and r.get(k) == best[k] and len(rows) > 1 else ""
            tds.append(f"<td{cls}>{html.escape(c)}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def write_replay_report(results: Sequence[ReplayResult], out_dir: str | Path, *,
                        workload: Trace | None = None, title: str = "Trace replay",
                        notes: Sequence[str] = ()) -> Path:
    """Write `index.html` and the PNGs into `out_dir`; return the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = [
        ("wait_cdf.png", "Wait-time CDF", plot_wait_cdf(results)),
        ("utilisation.png", "Utilisation over time", plot_utilisation(results)),
        ("queues.png", "Queue length per agent", plot_queues(results)),
        ("miss_by_class.png", "Miss rate per priority class", plot_miss_by_class(results)),
    ]
    imgs = [(name, cap, _png(fig, out / name)) for name, cap, fig in figs]
    rows = [r.row() for r in results]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    if workload is not None:
        parts.append(f"<pre>{html.escape(workload.summary())}</pre>")
    for n in notes:
        parts.append(f"<p>{html.escape(n)}</p>")
    parts.append("<h2>Policies side by side</h2>")
    parts.append(html_table(rows))
    parts.append("<p>wait = first start − arrival; bounded slowdown = max(1, response / "
                 "max(run time, 10 s)); jain = Jain's index of per-agent utilisation; "
                 "jain_tenants = Jain's index of per-tenant mean bounded slowdown; "
                 "miss_rate counts late, rejected and failed deadline tasks. Bold: best "
                 "in column.</p>")
    for name, cap, b64 in imgs:
        parts.append(f"<h2>{html.escape(cap)}</h2><img alt='{html.escape(cap)}' "
                     f"src='data:image/png;base64,{b64}'><br><small>{name}</small>")
    parts.append("</body></html>")
    path = out / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
