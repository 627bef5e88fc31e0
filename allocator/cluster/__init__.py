"""Wide jobs on a parallel machine: SWF jobs holding `width` processors, replayed
under FCFS, EASY and conservative backfilling, SJF and the project's policies.

`read_swf_cluster` reads a log (machine size from its header),
`simulate` replays it under one policy (allocator.cluster.sim),
`check_schedule` checks the result with separate code (allocator.cluster.validate),
`replay_row` gives the row `allocator replay --json` prints (allocator.cluster.metrics).
See docs/workloads.md ("Wide jobs").
"""

from allocator.cluster.jobs import ClusterJobs, ClusterTrace, read_swf_cluster
from allocator.cluster.policies import (
    DEFAULT_POLICIES,
    describe_policies,
    is_cluster_policy,
    parse_policy,
    policy_names,
)
from allocator.cluster.sim import ClusterSchedule, simulate

__all__ = [
    "DEFAULT_POLICIES",
    "ClusterJobs",
    "ClusterSchedule",
    "ClusterTrace",
    "describe_policies",
    "is_cluster_policy",
    "parse_policy",
    "policy_names",
    "read_swf_cluster",
    "simulate",
]
