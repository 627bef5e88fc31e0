"""Reading and writing snapshots, plans and benchmark files."""

from allocator.io.gap import GapInstance, gap_to_snapshot, read_gap
from allocator.io.snapshots import (
    parse_snapshot,
    read_plan,
    read_snapshot,
    write_json_atomic,
    write_plan,
)

__all__ = [
    "GapInstance",
    "gap_to_snapshot",
    "parse_snapshot",
    "read_gap",
    "read_plan",
    "read_snapshot",
    "write_json_atomic",
    "write_plan",
]
