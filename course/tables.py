"""The summary tables of ``course check``, ``course grade`` and ``course notebooks --execute``, at any width.

Each row is a few short cells a reader scans for (an exercise, its
passed/total) and one long note (its first failure). The short cells always
stay whole, on one line; the note gets the room they leave. Every caller
prints each note in full below its table, so a narrow terminal loses nothing
when the table leaves the notes out.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table
from rich.text import Text

NOTE_MIN = 20  # a note cut narrower than this says too little to be worth its column
_CELL_EXTRA = 3  # rich's default table: one space of padding each side and one border per column (plus one at the end)


def cut(text: str, width: int) -> str:
    """``text`` shortened to ``width`` characters, with an ellipsis where it was cut."""
    return text if len(text) <= width else text[: width - 1] + "…"


def note_room(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> int:
    """The characters left for a last column of notes beside ``headers``/``rows`` (rich markup) on ``width`` columns."""
    widths = [max(Text.from_markup(cell).cell_len for cell in column) for column in zip(headers, *rows)]
    return width - sum(widths) - _CELL_EXTRA * (len(headers) + 1) - 1


def summary_table(title: str, headers: Sequence[str], note_header: str,
                  rows: Sequence[tuple[Sequence[str], str]], *, width: int) -> Table:
    """A table of short cells and one note per row that fits ``width`` columns, one line per row.

    Args:
      title: the table's title (plain text).
      headers: the short columns' headers.
      note_header: the notes' header.
      rows: ``(cells, note)`` per row: the short cells in rich markup, the note plain text.
      width: the console's width in characters.

    Returns:
      A table whose short cells are never cut or wrapped; the notes are cut to
      the room left, or left out where under :data:`NOTE_MIN` characters remain.
    """
    room = note_room(headers, [cells for cells, _ in rows], width)
    with_notes = room >= NOTE_MIN
    table = Table(title=escape(title))
    for header in headers:
        table.add_column(header, no_wrap=True)
    if with_notes:
        table.add_column(note_header, no_wrap=True)
    for cells, note in rows:
        table.add_row(*cells, *([escape(cut(note, room))] if with_notes else []))
    return table
