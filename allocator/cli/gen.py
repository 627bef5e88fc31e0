"""`allocator gen gap`: generated GAP instances of the published types A-E."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from allocator.cli.app import gen_app, guarded


@gen_app.command("gap")
@guarded
def gen_gap(
    kind: Annotated[str, typer.Option("--type", help="Instance type: a, b, c, d or e.")],
    agents: Annotated[int, typer.Option(help="Agents (m).")],
    tasks: Annotated[int, typer.Option(help="Tasks (n).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="GAP file to write.")],
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same file).")] = 0,
) -> None:
    """Write one GAP instance (rules in allocator/io/gapgen.py; readable by `bench gap`)."""
    from allocator.io.gapgen import generate_gap, write_gap

    inst = generate_gap(kind, agents, tasks, seed)
    write_gap(output, inst)
    typer.echo(f"wrote {inst.name} (type {kind.upper()}, {inst.m} agents x {inst.n} tasks, "
               f"seed {seed}) to {output}")
