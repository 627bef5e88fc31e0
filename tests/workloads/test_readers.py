"""Trace readers: SWF (header comments, -1 unknowns, gzip), Alibaba pods, generic tables."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from allocator.errors import InvalidInputError
from allocator.workloads import (
    read_alibaba_pods,
    read_swf,
    read_swf_frame,
    read_table,
    read_trace,
    scan_table,
)
from tests.conftest import DATA

SWF = """\
; Version: 2.2
; Computer: toy
;
  1   0  5  100  4  -1 -1  4  200 -1 1 7 3 -1  0 -1 -1 -1
  2  10  0   50 -1  -1 -1  2   -1 -1 1 8 3 -1  1 -1 -1 -1

  3  20  0   30 -1  -1 -1 -1   60 -1 0 -1 -1 -1 -1 -1 -1 -1
  4  30  0   -1  1  -1 -1  1   60 -1 5 7 3 -1  1 -1 -1 -1
  5  40  0   10  1
  6  abc 0   10  1  -1 -1  1   60 -1 1 7 3 -1  1 -1 -1 -1
  7  50  0    0  1  -1 -1  1   60 -1 1 9 3 -1  1 -1 -1 -1
"""


@pytest.fixture
def swf_path(tmp_path: Path) -> Path:
    p = tmp_path / "toy.swf"
    p.write_text(SWF)
    return p


def test_swf_header_comments_and_blank_lines_are_skipped(swf_path: Path) -> None:
    rows, _bad, header = read_swf_frame(swf_path)
    assert header[0] == "; Version: 2.2" and len(header) == 3
    assert rows["job"].to_list() == [1.0, 2.0, 3.0, 7.0]
    assert rows["line"].to_list() == [4, 5, 7, 11]  # 1-based lines of the file


def test_swf_unknowns_and_bad_rows(swf_path: Path) -> None:
    w = read_swf(swf_path, deadline="estimate", deadline_factor=2.0)
    t = w.tasks
    assert t["id"].to_list() == ["1", "2", "3", "7"]
    assert t["arrival"].to_list() == [0.0, 10.0, 20.0, 50.0]
    assert t["work"].to_list() == [100.0, 50.0, 30.0, 0.0]
    # width: allocated, else requested, else 1 (and counted as filled)
    assert t["demand"].to_list() == [4.0, 2.0, 1.0, 1.0]
    assert w.filled == {"width from requested processors": 1, "width unknown (used 1)": 1}
    # deadline: submit + requested time, or submit + k x run time when unknown (-1)
    assert t["deadline"].to_list() == [200.0, 10.0 + 2 * 50.0, 80.0, 110.0]
    # user -1 -> no tenant; queue 0 (interactive) -> high, others normal
    assert t["tenant"].to_list() == ["7", "8", None, "9"]
    assert t["priority"].to_list() == ["high", "normal", "normal", "normal"]
    assert w.rows_read == 7
    assert w.bad.counts == {"unknown run time": 1, "expected 18 fields, got 5": 1,
                            "non-numeric field": 1}
    assert [ln for ln, _, _ in w.bad.examples] == [8, 9, 10]
    assert "3 bad rows" in w.bad.summary()


def test_swf_gzip_is_detected_from_content(swf_path: Path, tmp_path: Path) -> None:
    gz = tmp_path / "toy.swf.gz"
    gz.write_bytes(gzip.compress(swf_path.read_bytes()))
    plain, zipped = read_swf(swf_path), read_swf(gz)
    assert zipped.tasks.equals(plain.tasks)
    assert zipped.bad.counts == plain.bad.counts


def test_swf_on_bad_raise_names_the_line(swf_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="line 8: unknown run time"):
        read_swf(swf_path, on_bad="raise")


def test_swf_window_scale_status_and_limit(swf_path: Path) -> None:
    w = read_swf(swf_path, window=(10, 50), time_scale=0.5, arrival_scale=2.0,
                 deadline="none")
    assert w.tasks["id"].to_list() == ["2", "3"]
    assert w.tasks["arrival"].to_list() == [0.0, 10.0]  # (20 - 10) x 0.5 x 2
    assert w.tasks["work"].to_list() == [25.0, 15.0]
    assert w.tasks["deadline"].null_count() == 2
    assert w.filtered == {"outside window": 2}
    w = read_swf(swf_path, statuses=[1], limit=1)
    assert w.tasks["id"].to_list() == ["1"]
    assert w.filtered == {"status not selected": 1, "beyond limit": 2}


def test_swf_fair_share_priorities(swf_path: Path) -> None:
    # user 7 holds 100 of 180 work -> heaviest half -> low; user 8 (50) normal;
    # unknown user (30) and user 9 (0) are the light tail -> high
    w = read_swf(swf_path, priority="fair_share")
    got = dict(zip(w.tasks["id"], w.tasks["priority"], strict=True))
    assert got == {"1": "low", "2": "normal", "3": "high", "7": "high"}


def test_kth_reference_log_reads_clean() -> None:
    w = read_swf(DATA / "traces" / "KTH-SP2-1996-2.1-cln.swf.gz")
    assert len(w) == 27_992 and not w.bad
    assert w.tasks["arrival"].is_sorted() and w.tasks["arrival"][0] == 0.0
    assert (w.tasks["work"] >= 0).all()


PODS = """\
name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
p0,12000,16384,1,1000,,LS,Running,100,1100,150
p1,6000,12288,2,500,,BE,Succeeded,200,500,200
p2,4000,1000,0,0,,Guaranteed,Failed,300,400,310
p3,4000,1000,1,1000,,LS,Pending,400,450,
p4,4000,1000,1,1000,,Burstable,Running,oops,900,500
p5,4000,1000,1,1000,,BE,Running,600,550,600
"""


def test_alibaba_pods(tmp_path: Path) -> None:
    p = tmp_path / "pods.csv"
    p.write_text(PODS)
    w = read_alibaba_pods(p)
    t = w.tasks
    assert t["id"].to_list() == ["p0", "p1", "p2"]
    assert t["arrival"].to_list() == [0.0, 100.0, 200.0]
    assert t["work"].to_list() == [950.0, 300.0, 90.0]  # deletion - scheduled
    assert t["demand"].to_list() == [1.0, 1.0, 0.0]  # GPUs = num_gpu x gpu_milli / 1000
    assert t["priority"].to_list() == ["high", "low", "critical"]
    assert t["tenant"].to_list() == ["LS", "BE", "Guaranteed"]
    assert t["deadline"].to_list() == [3 * 950.0, 100 + 900.0, 200 + 270.0]
    assert w.bad.counts == {"non-numeric field": 1, "deleted before created": 1}
    assert [ln for ln, _, _ in w.bad.examples] == [6, 7]
    assert w.filtered == {"never scheduled (no run time)": 1}
    assert w.rows_read == 6
    pend = read_alibaba_pods(p, pending="arrival", demand="cpu")
    assert pend.tasks.filter(pl.col("id") == "p3")["work"].to_list() == [50.0]
    assert pend.tasks["demand"][0] == 12.0


def test_alibaba_reference_trace_counts() -> None:
    w = read_trace(DATA / "traces" / "openb_pod_list_default.csv")
    assert w.rows_read == 8152
    assert len(w) + w.filtered["never scheduled (no run time)"] + w.bad.total == 8152
    assert set(w.tasks["priority"].unique()) <= {"critical", "high", "normal", "low"}


TABLE = """\
job,t_submit,t_end,cores,who,class,due
a,1000,4000,2,alice,high,9000
b,2000,2500,,bob,3,
c,x,1,1,bob,low,
d,3000,2000,1,carol,normal,
"""


def test_generic_csv_with_mapping_and_time_unit(tmp_path: Path) -> None:
    p = tmp_path / "jobs.csv"
    p.write_text(TABLE)
    mapping = {"id": "job", "arrival": "t_submit", "end": "t_end", "demand": "cores",
               "user": "who", "priority": "class", "deadline": "due"}
    w = read_table(p, mapping=mapping, time_unit=0.001, deadline_factor=4.0)
    t = w.tasks
    assert t["id"].to_list() == ["a", "b"]
    assert t["arrival"].to_list() == pytest.approx([0.0, 1.0])
    assert t["work"].to_list() == pytest.approx([3.0, 0.5])  # end - arrival, in seconds
    assert t["demand"].to_list() == [2.0, 1.0]
    assert t["priority"].to_list() == ["high", "low"]  # names and ranks 0..3
    assert t["tenant"].to_list() == ["alice", "bob"]
    assert t["deadline"].to_list() == pytest.approx([8.0, 1.0 + 4 * 0.5])
    assert w.bad.counts == {"non-numeric field": 1, "negative work": 1}
    assert [ln for ln, _, _ in w.bad.examples] == [4, 5]
    lazy = scan_table(p, mapping=mapping).filter(pl.col("reason").is_null()).collect()
    assert lazy["id"].to_list() == ["a", "b"]


def test_generic_parquet_default_names(tmp_path: Path) -> None:
    p = tmp_path / "t.parquet"
    pl.DataFrame({"arrival": [5.0, 0.0], "work": [1.0, 2.0], "tenant_x": ["u", "v"]}
                 ).write_parquet(p)
    w = read_table(p, deadline="none")
    assert w.tasks["arrival"].to_list() == [0.0, 5.0]
    assert w.tasks["id"].to_list() == ["2", "1"]  # row numbers when there is no id column
    assert w.tasks["tenant"].null_count() == 2


def test_generic_table_errors(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("when,size\n1,2\n")
    with pytest.raises(InvalidInputError, match="no arrival column"):
        read_table(p)
    with pytest.raises(InvalidInputError, match="unknown mapping fields"):
        read_table(p, mapping={"arrivl": "when"})
    with pytest.raises(InvalidInputError, match="no such file"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(InvalidInputError, match="time_scale"):
        read_table(p, mapping={"arrival": "when", "work": "size"}, time_scale=0)


def test_nan_and_inf_are_bad_rows_not_infinite_work(tmp_path: Path) -> None:
    """'nan' and 'inf' parse as floats: a row with one is counted as non-finite, not replayed
    (an infinite work made the offered load inf and the replay's means NaN)."""
    p = tmp_path / "t.csv"
    p.write_text("id,arrival,work,demand\na,0,5,1\nb,1,inf,1\nc,nan,5,1\nd,2,5,-inf\ne,3,5,\n")
    w = read_table(p)
    assert w.tasks["id"].to_list() == ["a", "e"]
    assert w.bad.counts == {"non-finite number": 3}
    pods = tmp_path / "pods.csv"
    pods.write_text(PODS.splitlines()[0] + "\n"
                    + "q0,1000,1024,0,0,,LS,Running,0,100,1\n"
                    + "q1,nan,1024,0,0,,LS,Running,0,100,1\n"
                    + "q2,1000,1024,0,0,,LS,Running,nan,100,1\n"
                    + "q3,1000,1024,0,0,,LS,Running,0,inf,1\n")
    w = read_alibaba_pods(pods)
    assert w.tasks["id"].to_list() == ["q0"]
    assert w.bad.counts == {"non-finite number": 3}
