"""`ol.methods()`: the capability table of the gradient methods, for people and widgets."""

from __future__ import annotations

import dataclasses
import html

from ..solve.gradient_method import Capabilities

_COLUMNS = ("method", "systems", "gradient", "jvp", "second order", "nested", "exact", "memory",
            "cost", "stiff problems")


@dataclasses.dataclass(frozen=True)
class MethodRow:
    name: str
    capabilities: Capabilities
    applies_to: tuple[str, ...] = ("ode",)
    planned: str | None = None  # the planned memory for a given solve, in words

    def cells(self) -> tuple[str, ...]:
        c = self.capabilities
        yes = lambda b: "yes" if b else "no"
        grad = "reverse" if c.reverse else ("forward" if c.forward else "no")
        return (
            self.name, ", ".join(self.applies_to), grad, yes(c.forward or c.reverse),
            ", ".join(c.second_order) or "no",
            yes(c.nested), "discrete-exact" if c.exact else "approximate", c.memory, c.cost,
            c.stiff,
        ) + (() if self.planned is None else (self.planned,))


class MethodTable:
    """The rows of `ol.methods()`: one per gradient method, with what it can do."""

    def __init__(self, rows: list[MethodRow]):
        self.rows = rows
        self.columns = _COLUMNS + (
            ("planned memory",) if rows and rows[0].planned is not None else ())

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> Capabilities:
        for row in self.rows:
            if row.name == name:
                return row.capabilities
        raise KeyError(name)

    def names(self) -> list[str]:
        return [r.name for r in self.rows]

    def to_records(self) -> list[dict]:
        """Plain dicts (JSON-able), one per method."""
        return [
            {"name": r.name, "applies_to": list(r.applies_to), **dataclasses.asdict(r.capabilities),
             **({} if r.planned is None else {"planned_memory": r.planned})}
            for r in self.rows
        ]

    def __repr__(self) -> str:
        cells = [self.columns] + [r.cells() for r in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r.cells()) + "</tr>"
            for r in self.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
