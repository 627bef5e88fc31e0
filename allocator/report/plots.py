"""Plan plots: a Gantt chart per agent and the load per agent before and after.

Drawn with matplotlib's object API on an Agg canvas (no global backend, no
display needed). The file extension picks the format: `.png`, `.svg`, or
`.html` (a self-contained page with the chart as inline SVG and the loads as
a table).

Gantt: one row per agent (split into lanes when the agent runs several tasks
at once); bars coloured by priority class; a deadline is a short vertical
tick on the task's lane (red when the task ends after it); migrated tasks
have a thick outline and hatching.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from allocator.errors import InvalidInputError
from allocator.io.snapshots import write_json_atomic
from allocator.objectives import busy_time
from allocator.problem import compile_snapshot
from models import Plan, Priority, Snapshot

#: Colour per priority class (colour-blind-safe Okabe-Ito hues).
PRIORITY_COLOURS: dict[Priority, str] = {
    Priority.CRITICAL: "#D55E00",
    Priority.HIGH: "#E69F00",
    Priority.NORMAL: "#0072B2",
    Priority.LOW: "#999999",
}

FORMATS = (".png", ".svg", ".html")


def loads_before(snapshot: Snapshot) -> dict[str, float] | None:
    """Busy time per agent under the tasks' current agents; None if no task has one."""
    if not any(t.current_agent for t in snapshot.tasks):
        return None
    problem = compile_snapshot(snapshot)
    load = busy_time(problem, problem.current)
    return {a: float(x) for a, x in zip(problem.agent_ids, load, strict=True)}


def loads_after(snapshot: Snapshot, plan: Plan) -> dict[str, float]:
    """Busy time per agent in the plan (work / speed, divided by concurrency)."""
    agents = {a.id: a for a in snapshot.agents}
    out = {a.id: 0.0 for a in snapshot.agents}
    for asg in plan.assignments:
        if asg.agent in agents:
            out[asg.agent] += (asg.end - asg.start) / agents[asg.agent].concurrency
    return out


def _lanes(spans: list[tuple[float, float, str]]) -> dict[str, int]:
    """Lane of each task on one agent: the first lane free at its start."""
    free: list[float] = []
    lane: dict[str, int] = {}
    for s, e, t in sorted(spans):
        for k, f in enumerate(free):
            if f <= s + 1e-9:
                free[k] = e
                lane[t] = k
                break
        else:
            free.append(e)
            lane[t] = len(free) - 1
    return lane


def build_figure(snapshot: Snapshot, plan: Plan, *, title: str | None = None) -> Figure:
    """The two-panel figure (Gantt on the left, loads on the right)."""
    tasks = {t.id: t for t in snapshot.tasks}
    agent_ids = [a.id for a in snapshot.agents]
    row = {a: k for k, a in enumerate(agent_ids)}
    migrated = {m.task for m in plan.migrations}
    by_agent: dict[str, list[tuple[float, float, str]]] = {a: [] for a in agent_ids}
    for asg in plan.assignments:
        by_agent.setdefault(asg.agent, []).append((asg.start, asg.end, asg.task))

    height = max(3.0, 0.55 * len(agent_ids) + 1.5)
    fig = Figure(figsize=(13, height), layout="constrained")
    FigureCanvasAgg(fig)
    gantt, bars = fig.subplots(1, 2, width_ratios=[3, 1])

    for agent, spans in by_agent.items():
        if agent not in row or not spans:
            continue
        lanes = _lanes(spans)
        n_lanes = max(lanes.values()) + 1
        h = 0.8 / n_lanes
        for s, e, t in spans:
            task = tasks.get(t)
            prio = task.priority if task else Priority.NORMAL
            y = row[agent] - 0.4 + lanes[t] * h
            moved = t in migrated
            gantt.broken_barh([(s, max(e - s, 1e-9))], (y, h * 0.92),
                              facecolors=PRIORITY_COLOURS[prio],
                              edgecolor="black" if moved else "white",
                              linewidth=2.0 if moved else 0.5, hatch="//" if moved else None)
            if len(spans) <= 40:
                gantt.text((s + e) / 2, y + h * 0.46, t, ha="center", va="center",
                           fontsize=6, color="white", clip_on=True)
            if task is not None and task.deadline is not None:
                late = e > task.deadline + 1e-9
                gantt.vlines(task.deadline, y, y + h * 0.92, colors="red" if late else "black",
                             linewidth=1.5)
    gantt.set_yticks(range(len(agent_ids)),
                     labels=[f"{a.id} ({a.status})" if a.status != "up" else a.id
                             for a in snapshot.agents])
    gantt.invert_yaxis()
    gantt.set_xlabel("time")
    gantt.set_title(title or f"{snapshot.name or 'plan'}: {plan.solver}, {plan.status}")
    handles = [Patch(facecolor=c, label=str(p)) for p, c in PRIORITY_COLOURS.items()]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", linewidth=2,
                         label="migrated"))
    gantt.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12),
                 ncol=len(handles), fontsize=7, frameon=False)
    gantt.grid(axis="x", alpha=0.3)

    after = loads_after(snapshot, plan)
    before = loads_before(snapshot)
    ys = np.arange(len(agent_ids))
    if before is not None:
        bars.barh(ys - 0.2, [before[a] for a in agent_ids], height=0.4, color="#CC79A7",
                  label="before")
        bars.barh(ys + 0.2, [after[a] for a in agent_ids], height=0.4, color="#009E73",
                  label="after")
        bars.legend(fontsize=7)
    else:
        bars.barh(ys, [after[a] for a in agent_ids], height=0.6, color="#009E73")
    bars.set_yticks(ys, labels=agent_ids)
    bars.invert_yaxis()
    bars.set_xlabel("busy time")
    bars.set_title("load per agent")
    return fig


def _html(snapshot: Snapshot, plan: Plan, svg: str) -> str:
    after = loads_after(snapshot, plan)
    before = loads_before(snapshot)
    rows = "".join(
        f"<tr><td>{html.escape(a)}</td>"
        + (f"<td>{before[a]:.4g}</td>" if before is not None else "")
        + f"<td>{after[a]:.4g}</td></tr>"
        for a in after
    )
    head = "<th>agent</th>" + ("<th>before</th>" if before is not None else "") + "<th>after</th>"
    moves = "".join(
        f"<li>{html.escape(m.task)}: {html.escape(m.source)} &rarr; {html.escape(m.target)}"
        f" (cost {m.cost:.4g}" + (f", gain {m.gain:.4g}" if m.gain is not None else "")
        + ")</li>"
        for m in plan.migrations
    )
    name = html.escape(snapshot.name or "plan")
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'>"
        f"<title>{name}</title><style>body{{font-family:sans-serif}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
        "text-align:right}</style></head><body>"
        f"<h1>{name}</h1><p>solver {html.escape(plan.solver)}, status {plan.status}, "
        f"objective {plan.objective}</p>{svg}<h2>Load per agent</h2><table><tr>{head}</tr>"
        f"{rows}</table><h2>Migrations ({len(plan.migrations)})</h2><ul>{moves}</ul>"
        "</body></html>\n"
    )


def plot_plan(snapshot: Snapshot, plan: Plan, path: str | Path, *,
              title: str | None = None) -> Path:
    """Write the plan's chart to `path` (.png, .svg or .html, atomically)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in FORMATS:
        raise InvalidInputError(f"unknown plot format {ext or '(none)'!r}; use "
                                + ", ".join(FORMATS), field="plot")
    fig = build_figure(snapshot, plan, title=title)
    p.parent.mkdir(parents=True, exist_ok=True)
    if ext == ".png":
        tmp = p.with_name(f".{p.name}.tmp")
        try:
            fig.savefig(tmp, format="png", dpi=110)
            tmp.replace(p)
        finally:
            tmp.unlink(missing_ok=True)
        return p
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    write_json_atomic(p, svg if ext == ".svg" else _html(snapshot, plan, svg[svg.find("<svg"):]))
    return p
