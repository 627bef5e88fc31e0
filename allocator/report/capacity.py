"""The capacity curve plot (PNG): SLA metrics against the agent count."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from allocator.planning.planner import CapacityPlan


def plot_curve(plan: CapacityPlan, path: str | Path) -> Path:
    """SLA metrics vs agent count: predicted (line), simulated (markers), limit (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [c for c in plan.sla if c.metric != "utilisation"] or plan.sla
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    xs = [r["agents"] for r in plan.curve]
    for ax, c in zip(axes[0], metrics, strict=True):
        pred = [r.get(f"predicted_{c.metric}", math.nan) for r in plan.curve]
        sim = [r.get(f"simulated_{c.metric}", math.nan) for r in plan.curve]
        label = ("estimate (trace-driven Erlang C)" if plan.estimator == "trace"
                 else "estimate (Erlang C / Allen–Cunneen)")
        ax.plot(xs, pred, "-", label=label)
        ax.plot(xs, sim, "o", label=f"simulated ({plan.policy}, mean of runs)")
        ax.axhline(c.limit, ls="--", color="red", lw=1, label=f"SLA {c}")
        if plan.mix is not None:
            ax.axvline(sum(plan.mix), color="green", lw=1, alpha=0.6, label="chosen")
        ax.set_xlabel("agents")
        ax.set_ylabel(c.metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("SLA metrics vs agent count")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
