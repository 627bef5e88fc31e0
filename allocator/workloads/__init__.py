"""Importing real workloads for replay: SWF logs, Alibaba PAI pods, generic CSV/Parquet tables.

Every reader returns a :class:`Trace`: a polars frame of replayable tasks
(arrival, work, demand, deadline, priority, tenant) plus a report of the rows
it could not use. See docs/workloads.md.
"""

from allocator.workloads.alibaba import read_alibaba_pods
from allocator.workloads.base import BadRows, Trace, finalize, parse_window
from allocator.workloads.swf import read_swf, read_swf_frame
from allocator.workloads.table import read_table, read_trace, scan_table

__all__ = [
    "BadRows",
    "Trace",
    "finalize",
    "parse_window",
    "read_alibaba_pods",
    "read_swf",
    "read_swf_frame",
    "read_table",
    "read_trace",
    "scan_table",
]
