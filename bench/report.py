"""Results as tables: markdown for people, JSON for the CI smoke test."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Table:
    """One titled table; ``notes`` are printed under it."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        """Append a row (cells are rendered with ``str``)."""
        self.rows.append([str(cell) for cell in cells])

    def markdown(self) -> str:
        """The table in GitHub markdown."""
        lines = [f"### {self.title}", ""]
        if self.rows:
            lines.append("| " + " | ".join(self.columns) + " |")
            lines.append("|" + "|".join("---" for _ in self.columns) + "|")
            lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
            lines.append("")
        lines.extend(f"{note}  " for note in self.notes)
        return "\n".join(lines).rstrip() + "\n"


def ratio(value: float, baseline: float) -> str:
    """``value / baseline`` as ``1.23x`` (``n/a`` without a baseline)."""
    return f"{value / baseline:.2f}x" if baseline > 0 else "n/a"


def verdict(met: bool) -> str:
    """How a target reads in a table."""
    return "met" if met else "**not met**"


def write(tables: list[Table], header: str, markdown_path: Path) -> str:
    """Write the markdown (and ``<same name>.json``); return the markdown."""
    text = header.rstrip() + "\n\n" + "\n".join(t.markdown() for t in tables)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(text)
    markdown_path.with_suffix(".json").write_text(
        json.dumps([asdict(t) for t in tables], indent=1)
    )
    return text


@dataclass(frozen=True)
class Target:
    """A target from the issue and where this run landed."""

    name: str
    measured: str
    met: bool


@dataclass
class Result:
    """What a scenario produced."""

    tables: list[Table]
    targets: list[Target] = field(default_factory=list)
    failed: bool = False
