"""Rich tables whose cells are data: ids and names from the user's input, never markup."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = ["DataTable", "escape"]


class DataTable(Table):
    """A `rich.table.Table` that shows string cells as they are.

    Rich reads a string cell as console markup, so a valid agent id like
    `[/bold]` raised MarkupError (the command failed) and `[red]t[/red]`
    lost its brackets. `Text` cells are neither markup nor emoji codes.
    """

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*(Text(c) if isinstance(c, str) else c for c in renderables), **kwargs)
