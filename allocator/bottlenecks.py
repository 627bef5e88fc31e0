"""What limits a plan, and what one more unit of capacity would be worth.

:func:`bottleneck_report` combines the plan (utilisation per agent and
resource, agents at capacity, the agents whose finish sets the makespan, the
tasks left out with the constraint blocking each) with the duals of the LP
relaxation (:func:`allocator.bounds.lp_relaxation`): the dual of agent i's
capacity row for resource r is the rate at which the relaxed optimum falls
per extra unit of that capacity, i.e. the marginal value of capacity. It
answers "what should I add to go faster or cheaper?".
"""

from __future__ import annotations

import numpy as np

from allocator.bounds import LP_MAX_PAIRS, lp_relaxation
from allocator.constraints import used_capacity
from allocator.objectives import busy_time
from allocator.problem import DENSE_CELLS, Problem, capacity_limit
from models import Plan
from models.bottlenecks import (
    AgentBottleneck,
    BlockedTask,
    BottleneckReport,
    CapacityValue,
    ResourceUse,
)

#: A resource counts as binding on an agent at this share of its capacity.
BINDING_SHARE = 0.999
#: Capacity values smaller than this (relative to the bound) are noise.
VALUE_RTOL = 1e-9




def _capacity_detail(problem: Problem, task: str, used: np.ndarray) -> str:
    """Which resource is short on each eligible agent, e.g. 'gpu on gpu-1 (needs 2, 1 free)'."""
    j = problem.task_index[task]
    group_of, group_agents = problem.skill_groups
    parts = []
    for i in np.flatnonzero(group_agents[group_of[j]]).tolist():
        need = problem.pair_demand(np.array([i]), np.array([j]))[0]
        free = problem.capacity[i] - used[i]
        short = [f"{problem.resources[r]} on {problem.agent_ids[i]} (needs {need[r]:g}, "
                 f"{max(free[r], 0.0):g} free)"
                 for r in range(problem.n_resources) if need[r] > capacity_limit(free[r])]
        parts.extend(short[:1])
    if not parts:
        return "capacity exhausted on its eligible agents by other tasks"
    return "capacity exhausted: " + "; ".join(parts[:4]) + (" ..." if len(parts) > 4 else "")


def bottleneck_report(problem: Problem, plan: Plan, *, with_duals: bool = True,
                      time_limit: float = 30.0) -> BottleneckReport:
    """Bottlenecks of `plan` for `problem` (see module docstring)."""
    agent_of = np.full(problem.n, -1, dtype=np.int64)
    for a in plan.assignments:
        agent_of[problem.task_index[a.task]] = problem.agent_index[a.agent]
    used = used_capacity(problem, agent_of)
    cap = problem.capacity
    with np.errstate(divide="ignore", invalid="ignore"):
        util = np.where(cap > 0, used / cap, np.where(used > 0, np.inf, 0.0))
    up = problem.up
    binding = (util >= BINDING_SHARE) & (cap > 0) & up[:, None]
    load = busy_time(problem, agent_of)
    finish = {a.agent: a.finish for a in plan.metrics.agents} if plan.metrics else {}
    mk_end = max(finish.values()) if finish else 0.0
    critical = {aid for aid, f in finish.items()
                if plan.metrics and plan.metrics.assigned and f >= mk_end - 1e-9 * max(1, mk_end)}

    resources = []
    for r, name in enumerate(problem.resources):
        tot_cap = float(cap[up, r].sum())
        tot_used = float(used[up, r].sum())
        resources.append(ResourceUse(
            resource=name, used=tot_used, capacity=tot_cap,
            utilisation=tot_used / tot_cap if tot_cap > 0 else 0.0,
            binding_agents=[problem.agent_ids[i] for i in np.flatnonzero(binding[:, r])],
        ))
    agents = [
        AgentBottleneck(
            agent=problem.agent_ids[i], busy_time=float(load[i]),
            critical=problem.agent_ids[i] in critical,
            binding=[problem.resources[r] for r in np.flatnonzero(binding[i])],
            utilisation={problem.resources[r]: float(util[i, r])
                         for r in range(problem.n_resources)},
        )
        for i in range(problem.m)
    ]
    blocked = [BlockedTask(task=u.task, code=str(u.code),
                           constraint=_capacity_detail(problem, u.task, used)
                           if u.code == "capacity_exhausted" else u.reason)
               for u in plan.unassigned]

    values: list[CapacityValue] = []
    lp_value = None
    note = None
    if not with_duals:
        note = "duals not computed"
    elif problem.m * problem.n > min(DENSE_CELLS, LP_MAX_PAIRS):
        note = "too large for the pair LP: capacity values not computed"
    else:
        lp = lp_relaxation(problem, time_limit=time_limit)
        if lp is None:
            note = "LP relaxation not solved: capacity values not computed"
        else:
            lp_value = lp.bound
            scale = VALUE_RTOL * max(1.0, abs(lp.bound))
            for i, r in zip(*np.nonzero(-lp.cap_dual > scale), strict=True):
                values.append(CapacityValue(
                    agent=problem.agent_ids[i], resource=problem.resources[r],
                    value=float(-lp.cap_dual[i, r]), utilisation=float(util[i, r])))
            values.sort(key=lambda v: -v.value)
            if not values:
                note = "no capacity constraint binds in the LP relaxation: more capacity " \
                       "would not lower the (relaxed) objective"
    return BottleneckReport(
        resources=resources, agents=agents, capacity_values=values, blocked=blocked,
        makespan_agents=sorted(critical), lp_bound=lp_value, note=note,
    )
