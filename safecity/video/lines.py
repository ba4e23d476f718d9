"""Counting lines: people crossing a configured line, in and out, per time bin.

A line is two image points, directed from the first to the second. A person
whose feet (the bottom centre of the box) cross it from the line's right-hand
side to its left-hand side, as seen on the screen looking from the first point
to the second, goes *in*; the other way, *out* (``supervision.LineZone``'s
convention; a line drawn left to right counts people walking up the image as
in). Only the segment counts, not its extension.

The pipeline adds each bin's counts to ``observations`` as metrics ``line_in``
and ``line_out`` of the sensor ``"{camera}:{line}"`` (the shape of the zones'
``"{camera}:{zone}"`` metrics); ``line_counts`` reads them back per hour.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import supervision as sv


class LineCounter:
    """In and out crossings of each named line (``{name: [[x1, y1], [x2, y2]]}``) by tracked people."""

    def __init__(self, lines: dict):
        self.lines = {name: sv.LineZone(sv.Point(*map(float, a)), sv.Point(*map(float, b)),
                                        triggering_anchors=(sv.Position.BOTTOM_CENTER,))
                      for name, (a, b) in (lines or {}).items()}

    def update(self, people: sv.Detections) -> dict[str, tuple[int, int]]:
        """``{line: (in, out)}`` crossings in this frame (``people``: tracked, ``tracker_id`` set)."""
        out = {}
        for name, zone in self.lines.items():
            crossed_in, crossed_out = zone.trigger(people)
            out[name] = (int(np.count_nonzero(crossed_in)), int(np.count_nonzero(crossed_out)))
        return out


def line_counts(observations: pd.DataFrame, camera: str | None = None, line: str | None = None,
                start=None, end=None, freq: str = "1h") -> pd.DataFrame:
    """People in and out per camera, line and ``freq`` period (UTC) from ``observations`` rows.

    Columns: ``camera``, ``line``, ``ts`` (the period's start), ``in``, ``out``. ``start``
    (inclusive) and ``end`` (exclusive) bound the bins' times.
    """
    from safecity.video.dwell import _select, _split

    rows = _select(observations, ("line_in", "line_out"), camera, line, start, end)
    if rows.empty:
        return pd.DataFrame({"camera": pd.Series(dtype=object), "line": pd.Series(dtype=object),
                             "ts": pd.Series(dtype="datetime64[ns, UTC]"),
                             "in": pd.Series(dtype=int), "out": pd.Series(dtype=int)})
    rows = _split(rows, "line")
    rows["ts"] = rows["ts"].dt.floor(freq)
    table = rows.pivot_table(index=["camera", "line", "ts"], columns="metric", values="value",
                             aggfunc="sum", fill_value=0.0)
    table = table.reindex(columns=["line_in", "line_out"], fill_value=0.0)
    table = table.rename(columns={"line_in": "in", "line_out": "out"}).round().astype(int)
    table.columns.name = None
    return table.reset_index()
