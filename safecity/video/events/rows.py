"""Event rules' output as rows of the ``events`` table (``safecity.data.schema``)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

#: The ``source`` of every event a camera's rules raise.
SOURCE = "video"


def to_event_rows(found: list[dict], camera_id: str, start_ts, lon: float | None = None,
                  lat: float | None = None) -> pd.DataFrame:
    """``events`` rows (``safecity.data.schema``) from detector output; ``start_ts`` is the clip's frame 0."""
    from safecity.data.schema import empty, validate

    if not found:
        return empty("events")
    start = pd.Timestamp(start_ts)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    rows = []
    for k, ev in enumerate(found):
        missing = [c for c in ("kind", "frame", "time_s", "score") if c not in ev]
        if missing:
            raise ValueError(f"event {k} from camera {camera_id} lacks {missing}: {ev}")
        ts = start + pd.Timedelta(seconds=float(ev["time_s"]))
        details = {c: v for c, v in ev.items() if c not in ("kind", "score")}
        rows.append({"event_id": f"{ev['kind']}-{SOURCE}-{camera_id}-{ts:%Y%m%dT%H%M%S.%fZ}-{k}",
                     "ts": ts, "kind": ev["kind"], "sensor_id": str(camera_id),
                     "lon": np.nan if lon is None else lon, "lat": np.nan if lat is None else lat,
                     "score": ev["score"], "source": SOURCE,
                     "details": json.dumps(details, default=_plain)})
    return validate(pd.DataFrame(rows), "events")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} into event details")
