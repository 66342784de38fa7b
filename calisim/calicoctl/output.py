"""The two table layouts calicoctl v1 prints (Go's text/tabwriter and olekukonko/tablewriter)."""

from __future__ import annotations


def padded_columns(headers: list[str] | tuple[str, ...], rows: list[list[str]], padding: int = 3) -> str:
    """`calicoctl get` ps/wide: every cell padded to its column's width plus three spaces."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["".join(str(cell).ljust(width + padding) for cell, width in zip(row, widths))
             for row in [list(headers), *rows]]
    return "\n".join(lines) + "\n"


def boxed_table(headers: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    """`calicoctl node status`: a bordered table, headers centred, cells left-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    rule = "+" + "+".join("-" * (width + 2) for width in widths) + "+"

    def centred(text: str, width: int) -> str:
        left = (width - len(text)) // 2
        return " " * left + text + " " * (width - len(text) - left)

    header = "|" + "|".join(f" {centred(h, w)} " for h, w in zip(headers, widths)) + "|"
    body = ["|" + "|".join(f" {str(c).ljust(w)} " for c, w in zip(row, widths)) + "|" for row in rows]
    return "\n".join([rule, header, rule, *body, rule]) + "\n"
