"""Generate GAP instances of types C, D and E as one-problem files (Chu-Yagiura layout).

Rules as in /work/shared/data/README.md (`a` resource use, `c` cost, `b`
capacity, U uniform):

* C: a ~ U{5..25}, c ~ U{10..50}, b_i = 0.8 sum_j a_ij / m
* D: a ~ U{1..100}, c = 111 - a + U{-10..10}, b_i = 0.8 sum_j a_ij / m
* E: a = 1 - 10 ln U(0,1], c = 1000 / a - 10 U[0,1] (both rounded), b as above

Used by the Pareto benchmark (docs/benchmarks/pareto-exact.md) until
`allocator gen gap` exists; same seed, same file.

    python benchmarks/gen_gap.py OUTDIR --sizes 8x60,10x80 --types C,D,E --seeds 0,1,2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def generate(kind: str, m: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cost [m, n], resource [m, n], capacity [m]) as integers."""
    rng = np.random.default_rng([ord(kind), m, n, seed])
    if kind == "C":
        a = rng.integers(5, 26, size=(m, n))
        c = rng.integers(10, 51, size=(m, n))
    elif kind == "D":
        a = rng.integers(1, 101, size=(m, n))
        c = 111 - a + rng.integers(-10, 11, size=(m, n))
    elif kind == "E":
        u = 1.0 - rng.random((m, n))  # U(0, 1]
        af = 1.0 - 10.0 * np.log(u)
        a = np.rint(af).astype(np.int64)
        c = np.rint(1000.0 / af - 10.0 * rng.random((m, n))).astype(np.int64)
    else:
        raise ValueError(f"unknown type {kind!r}; choose C, D or E")
    b = np.floor(0.8 * a.sum(axis=1) / m).astype(np.int64)
    return c.astype(np.int64), a.astype(np.int64), b


def write(path: Path, c: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    m, n = c.shape
    lines = [f"{m} {n}"]
    lines += [" ".join(map(str, row)) for row in c]
    lines += [" ".join(map(str, row)) for row in a]
    lines.append(" ".join(map(str, b)))
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--sizes", default="8x60,10x80")
    ap.add_argument("--types", default="C,D,E")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    for size in args.sizes.split(","):
        m, n = (int(v) for v in size.split("x"))
        for kind in args.types.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                path = args.outdir / f"{kind.lower()}{m:02d}{n}-s{seed}.txt"
                write(path, *generate(kind, m, n, seed))


if __name__ == "__main__":
    main()
