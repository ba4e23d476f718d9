"""Fusion: turn a stream of events from many sources into incidents an operator acts on.

A gunshot is heard by three detectors and phoned in twice; a panic button is
pressed twice and a caller reports the same robbery. Each of those is one
incident, not five. Events are linked when they are close in time *and* space
(a window and a radius that may depend on the pair of kinds); incidents are the
connected components of that link graph. Duplicate reports (the same
``event_id`` twice, or one sensor repeating itself within seconds) are kept as
members but counted once.

Police log entries are free text typed by people and pasted from elsewhere:
they are untrusted. Fusion only ever puts their text into a summary as a quoted
plain-text string; ``incident_html`` escapes every field before it reaches a
web page.

The rules are data (``FusionRules``, loadable from YAML) so a city tunes them
without code; ``grouping_sweep`` shows how the grouping moves with them
(``safecity.evaluation.incidents.pairwise_scores`` measures them against a known truth).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import html
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from safecity.data import geo
from safecity.data import schema

#: Urgency per event kind (1 = most urgent). Kinds not listed get ``default_priority``.
DEFAULT_PRIORITY = {
    "gunshot": 1, "fire": 1, "weapon": 1,
    "panic": 2, "person_on_ground": 2,
    "abandoned_object": 3, "excessive_density": 3, "crowd_movement": 3, "call": 3,
    "police_log": 4, "forbidden_zone": 4, "anomaly": 4, "drone": 4, "loitering": 4,
    "gathering_forecast": 4, "repeated_presence": 5, "wrong_way": 5,
    # a camera's own health: a blinded camera may hide what happens next, a dead one is a repair
    "camera_tampered": 3, "camera_offline": 4, "camera_frozen": 4,
    # what an emergency call is about (``details.category``)
    "medical": 2, "assault": 2, "traffic_accident": 3, "theft": 4, "disturbance": 4,
}

#: Units a dispatcher should consider per kind (the dispatch module decides).
DEFAULT_NEEDS = {
    "gunshot": {"police": 2}, "weapon": {"police": 2}, "fire": {"fire": 1},
    "panic": {"police": 1}, "person_on_ground": {"ambulance": 1},
    "abandoned_object": {"police": 1}, "excessive_density": {"police": 1},
    "forbidden_zone": {"police": 1}, "call": {"police": 1}, "police_log": {"police": 1},
    "medical": {"ambulance": 1}, "assault": {"police": 1}, "theft": {"police": 1},
    "traffic_accident": {"police": 1, "ambulance": 1}, "disturbance": {"police": 1},
    # a camera's own health needs a technician, not a unit: no unit is recommended
    "camera_offline": {}, "camera_frozen": {}, "camera_tampered": {},
}

#: How far a single report of each source is to be believed. Independent sources
#: combine as 1 - prod(1 - c): two weak sources agreeing make a strong incident.
DEFAULT_SOURCE_CONFIDENCE = {
    "acoustic": 0.7, "sf_shotspotter": 0.8, "panic_button": 0.6, "video": 0.6,
    "emergency_call": 0.5, "montgomery_911": 0.5, "police_log": 0.7, "drone": 0.6,
}

#: Per pair of kinds: (window_s, radius_m). A caller phones minutes after the
#: shot and stands a street away; detectors of one shot agree within seconds.
#: Crowd kinds from venue cameras are separate happenings per camera, so they
#: only merge when really together.
DEFAULT_PAIR_RULES = {
    ("gunshot", "gunshot"): (60.0, 400.0),
    ("call", "gunshot"): (900.0, 400.0),
    ("call", "call"): (900.0, 300.0),
    ("call", "panic"): (900.0, 300.0),
    ("panic", "panic"): (300.0, 50.0),
    ("crowd_movement", "crowd_movement"): (60.0, 50.0),
    ("excessive_density", "excessive_density"): (60.0, 50.0),
}

_NOUNS = {  # kind -> (singular, plural) for summaries
    "gunshot": ("detection", "detections"),
    "call": ("emergency call", "emergency calls"),
    "panic": ("panic button press", "panic button presses"),
    "police_log": ("police log entry", "police log entries"),
}


@dataclass
class FusionRules:
    """What links two events, and what an incident of a kind means.

    ``pairs`` maps a pair of kinds (order free) to ``(window_s, radius_m)``;
    pairs not listed use ``window_s`` and ``radius_m``. ``dedup_s``: one sensor
    reporting the same kind again within that many seconds is a duplicate.
    """

    window_s: float = 120.0
    radius_m: float = 200.0
    pairs: dict[tuple[str, str], tuple[float, float]] = field(
        default_factory=lambda: dict(DEFAULT_PAIR_RULES))
    priority: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PRIORITY))
    default_priority: int = 4
    needs: dict[str, dict[str, int]] = field(default_factory=lambda: dict(DEFAULT_NEEDS))
    source_confidence: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_SOURCE_CONFIDENCE))
    default_confidence: float = 0.5
    dedup_s: float = 5.0

    def __post_init__(self) -> None:
        self.pairs = {_pair_key(*k): (float(w), float(r)) for k, (w, r) in self.pairs.items()}
        problems = []
        if self.window_s < 0 or self.radius_m < 0 or self.dedup_s < 0:
            problems.append("window_s, radius_m and dedup_s must be >= 0")
        for k, (w, r) in self.pairs.items():
            if w < 0 or r < 0:
                problems.append(f"pairs[{k[0]}, {k[1]}]: window and radius must be >= 0")
        for k, p in {**self.priority, "(default)": self.default_priority}.items():
            if not 1 <= int(p) <= 5:
                problems.append(f"priority[{k}] = {p}: must be 1..5")
        for k, c in {**self.source_confidence, "(default)": self.default_confidence}.items():
            if not 0 <= float(c) <= 1:
                problems.append(f"source_confidence[{k}] = {c}: must be 0..1")
        if problems:
            raise ValueError("invalid fusion rules: " + "; ".join(problems))

    def link(self, kind_a: str, kind_b: str) -> tuple[float, float]:
        """``(window_s, radius_m)`` for a pair of kinds."""
        return self.pairs.get(_pair_key(kind_a, kind_b), (self.window_s, self.radius_m))

    def reach(self) -> tuple[float, float]:
        """The longest window (s) and the largest radius (m) any pair of kinds may link over."""
        windows = [self.window_s] + [w for w, _ in self.pairs.values()]
        radii = [self.radius_m] + [r for _, r in self.pairs.values()]
        return max(max(windows), 1e-9), max(max(radii), 1e-9)

    def units_needed(self, kind: str) -> dict[str, int]:
        """Unit kinds and counts to send to an incident of ``kind`` (police by default)."""
        return dict(self.needs.get(kind, {"police": 1}))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FusionRules":
        """Rules from plain data (a parsed YAML file); unspecified parts keep their defaults.

        ``pairs`` is a list of ``{kinds: [a, b], window_s, radius_m}`` (either
        may be omitted to use the default); ``priority``, ``needs`` and
        ``source_confidence`` are merged over the defaults.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(d) - known))  # YAML keys may be null or numbers
        if unknown:
            raise ValueError(f"invalid fusion rules: unknown key(s) {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})")
        base = cls()
        kw: dict[str, Any] = {k: _rule_number(k, d[k]) for k in (
            "window_s", "radius_m", "default_priority", "default_confidence", "dedup_s") if k in d}
        window, radius = kw.get("window_s", base.window_s), kw.get("radius_m", base.radius_m)
        pairs = dict(base.pairs)
        if not isinstance(d.get("pairs") or [], list):
            raise ValueError("invalid fusion rules: pairs: expected a list of {kinds: [a, b], ...}")
        for i, p in enumerate(d.get("pairs") or []):
            kinds = p.get("kinds") if isinstance(p, Mapping) else None
            if not isinstance(kinds, list) or len(kinds) != 2 or not all(isinstance(k, str) for k in kinds):
                raise ValueError(f"invalid fusion rules: pairs[{i}] needs 'kinds: [a, b]'")
            pairs[_pair_key(*kinds)] = (_rule_number(f"pairs[{i}].window_s", p.get("window_s", window)),
                                        _rule_number(f"pairs[{i}].radius_m", p.get("radius_m", radius)))
        kw["pairs"] = pairs
        for name in ("priority", "needs", "source_confidence"):
            given = d.get(name) or {}
            if not isinstance(given, Mapping):
                raise ValueError(f"invalid fusion rules: {name}: expected a mapping, got {given!r:.80}")
            for key, value in given.items():
                if name == "needs":
                    if not isinstance(value, Mapping):
                        raise ValueError(f"invalid fusion rules: needs[{key}]: expected a mapping "
                                         f"of unit kind to count, got {value!r:.80}")
                    value = {str(k): _rule_number(f"needs[{key}][{k}]", v) for k, v in value.items()}
                else:
                    _rule_number(f"{name}[{key}]", value)
            kw[name] = {**getattr(base, name), **{str(k): v for k, v in given.items()}}
        return cls(**kw)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "FusionRules":
        import yaml

        try:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as err:  # syntax errors, and tags such as !!python/object
            mark = getattr(err, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise ValueError(f"{where}: not valid fusion rules YAML: "
                             f"{getattr(err, 'problem', None) or err}") from None
        except (UnicodeDecodeError, OSError) as err:
            raise ValueError(f"{path}: cannot read the fusion rules: {err}") from None
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: fusion rules must be a mapping")
        try:
            return cls.from_dict(data)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None

    def uniform(self, window_s: float, radius_m: float) -> "FusionRules":
        """The same rules with one window and radius for every pair (for sweeps)."""
        return dataclasses.replace(self, window_s=window_s, radius_m=radius_m, pairs={})


def _rule_number(where: str, value) -> float:
    """A rules value that must be a number (YAML may give text, lists or booleans)."""
    if isinstance(value, int) and abs(value) > 1e15:
        raise ValueError(f"invalid fusion rules: {where}: {value!r:.80} is too large")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(float(value)):
        raise ValueError(f"invalid fusion rules: {where}: expected a finite number, got {value!r:.80}")
    return value


def _pair_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


# --------------------------------------------------------------------------- linking

def _prepare(events: pd.DataFrame, rules: FusionRules, validated: bool = False
             ) -> tuple[pd.DataFrame, np.ndarray]:
    """Validated events sorted by time, and for each row the row it duplicates (or itself).

    ``validated``: the rows were validated already (live fusion's window), and their
    extra columns are kept.
    """
    ev = events.drop_duplicates("event_id")
    if not validated:
        ev = schema.validate(ev, "events")
    ev = ev.sort_values(["ts", "event_id"], ignore_index=True)
    canon = np.arange(len(ev))
    has_sensor = ev["sensor_id"].notna()
    if has_sensor.any() and rules.dedup_s > 0:
        sub = ev[has_sensor]
        t = sub["ts"].astype("int64").to_numpy() / 1e9
        # Within one (source, sensor, kind) run, a report within dedup_s of the
        # previous one repeats it; chains collapse onto the first report.
        for _, idx in sub.groupby(["source", "sensor_id", "kind"], sort=False).indices.items():
            rows = sub.index.to_numpy()[idx]
            tt = t[idx]
            gap = np.diff(tt, prepend=-np.inf) > rules.dedup_s
            first = rows[np.maximum.accumulate(np.where(gap, np.arange(len(rows)), 0))]
            canon[rows] = first
    return ev, canon


def _link_pairs(ev: pd.DataFrame, rules: FusionRules, among: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``(i, j)`` of ``ev`` (sorted, validated) that ``rules`` link.

    ``among`` (a boolean mask) keeps only pairs with at least one row in it: what
    live fusion asks when a batch arrives, so that it never re-links the past.
    """
    none = (np.zeros(0, dtype=int), np.zeros(0, dtype=int))
    t = ev["ts"].astype("int64").to_numpy() / 1e9
    lon, lat = ev["lon"].to_numpy(float), ev["lat"].to_numpy(float)
    keep = np.nonzero(np.isfinite(lon) & np.isfinite(lat))[0]
    if len(keep) < 2:
        return none
    w_max, r_max = rules.reach()
    lat0 = np.nanmean(lat[keep])
    x = lon[keep] * 111_320.0 * np.cos(np.radians(lat0))
    y = lat[keep] * geo._M_PER_DEG_LAT
    # One KD-tree over (x, y, t) scaled by the largest radius and window:
    # a Chebyshev ball of 1 holds every pair any rule could link; the exact
    # per-pair test follows on those candidates only.
    points = np.column_stack([x / r_max, y / r_max, t[keep] / w_max])
    tree = cKDTree(points)
    if among is None:
        pairs = tree.query_pairs(1.0, p=np.inf, output_type="ndarray")
    else:
        asked = np.nonzero(among[keep])[0]
        if not len(asked):
            return none
        near = tree.query_ball_point(points[asked], 1.0, p=np.inf)
        a = np.repeat(asked, [len(n) for n in near])
        b = np.concatenate(near).astype(int) if len(a) else np.zeros(0, dtype=int)
        pairs = np.column_stack([a, b])[a != b]
    if not len(pairs):
        return none
    i, j = keep[pairs[:, 0]], keep[pairs[:, 1]]
    names, code = np.unique(ev["kind"].to_numpy(str), return_inverse=True)
    table = np.array([[rules.link(a, b) for b in names] for a in names]).reshape(
        len(names), len(names), 2)  # kinds x kinds x (window, radius)
    wr = table[code[i], code[j]]
    dt = np.abs(t[i] - t[j])
    d = geo.distance_m(lon[i], lat[i], lon[j], lat[j])
    ok = (dt <= wr[:, 0]) & (d <= wr[:, 1])
    return i[ok], j[ok]


def _components(ev: pd.DataFrame, canon: np.ndarray, rules: FusionRules,
                extra: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Component label per row of ``ev`` (sorted, validated) under ``rules``.

    ``extra`` adds edges of the caller's (live fusion joins an incident's members).
    """
    n = len(ev)
    if n == 0:
        return np.zeros(0, dtype=int)
    i, j = _link_pairs(ev, rules)
    extra = extra if extra is not None else (np.zeros(0, dtype=int), np.zeros(0, dtype=int))
    r = np.concatenate([np.arange(n), i, extra[0]])
    c = np.concatenate([canon, j, extra[1]])
    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


# --------------------------------------------------------------------------- fuse

def fuse(events: pd.DataFrame, rules: FusionRules | None = None
         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group ``events`` into incidents: ``(incidents, membership)``.

    ``incidents`` is a validated ``incidents`` table (status ``open``), one row
    per group, newest last. ``membership`` has one row per distinct input
    event: event_id, incident_id, and ``duplicate_of`` (the event_id it
    repeats, else missing). Incident ids are a hash of the member ids, so
    fusing the same events again gives the same ids and the store upserts.
    """
    rules = FusionRules() if rules is None else rules
    ev, canon = _prepare(events, rules)
    if ev.empty:
        return schema.empty("incidents"), pd.DataFrame(
            {"event_id": pd.Series(dtype=str), "incident_id": pd.Series(dtype=str),
             "duplicate_of": pd.Series(dtype=object)})
    labels = _components(ev, canon, rules)
    ev = ev.assign(_group=labels, _dup=canon != np.arange(len(ev)),
                   _canon=ev["event_id"].to_numpy()[canon])
    records, member_ids = [], []
    for _, g in ev.groupby("_group", sort=False):
        inc = _incident(g, rules)
        records.append(inc)
        member_ids.append(pd.DataFrame({
            "event_id": g["event_id"].to_numpy(), "incident_id": inc["incident_id"],
            "duplicate_of": np.where(g["_dup"], g["_canon"], None)}))
    incidents = schema.validate(pd.DataFrame(records).sort_values(["ts", "incident_id"]),
                                "incidents")
    membership = pd.concat(member_ids, ignore_index=True)
    return incidents, membership


def _incident(g: pd.DataFrame, rules: FusionRules) -> dict:
    """One incident from its member events (duplicates included, counted once)."""
    ids = sorted(g["event_id"])
    real = g[~g["_dup"]]
    # A call says what it is about (details.category); that, not "call", sets its urgency.
    topics = real["kind"].where(real["kind"] != "call",
                                real["details"].map(_category).fillna("call"))
    prio = {k: int(rules.priority.get(k, rules.default_priority)) for k in topics.unique()}
    counts = Counter(topics)
    # The incident is named for its most urgent kind; among equals, the most reported.
    kind = min(prio, key=lambda k: (prio[k], -counts[k], k))
    confidence = 1.0 - np.prod([1.0 - rules.source_confidence.get(s, rules.default_confidence)
                                for s in sorted(set(real["source"]))])
    located = real[real["lon"].notna() & real["lat"].notna()]
    lon = round(float(located["lon"].mean()), 7) if len(located) else None
    lat = round(float(located["lat"].mean()), 7) if len(located) else None
    return {
        "incident_id": "inc-" + hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16],
        "ts": real["ts"].min(), "kind": kind, "priority": min(prio.values()),
        "confidence": round(float(confidence), 4), "status": "open",
        "lon": lon, "lat": lat, "summary": summarize(real, kind, g["_dup"].sum()),
        "event_ids": json.dumps(ids),
    }


def summarize(members: pd.DataFrame, kind: str, duplicates: int = 0) -> str:
    """A plain-language line: what, how many reports from what, over what time and space.

    Police log text is included only as a JSON-quoted string (quotes, newlines
    and control characters escaped), cut to 200 characters: it can never end
    the sentence early or pass for the system's own words.
    """
    parts = []
    for k, n in sorted(Counter(members["kind"]).items(), key=lambda kv: (kv[0] != kind, kv[0])):
        one, many = _NOUNS.get(k, (f"{k.replace('_', ' ')} detection",
                                   f"{k.replace('_', ' ')} detections"))
        phrase = f"{n} {one if n == 1 else many}"
        sensors = members.loc[members["kind"] == k, "sensor_id"].dropna().nunique()
        if sensors > 1:
            phrase += f" by {sensors} sensors"
        parts.append(phrase)
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    t = members["ts"]
    span = (t.max() - t.min()).total_seconds()
    line = f"{kind.replace('_', ' ').capitalize()}: {text}"
    if len(members) > 1:
        located = members[members["lon"].notna() & members["lat"].notna()]
        apart = _extent_m(located["lon"].to_numpy(float), located["lat"].to_numpy(float))
        line += f" within {_duration(span)}" + (f", {apart:.0f} m apart" if len(located) > 1 else "")
    if duplicates:
        line += f" ({int(duplicates)} duplicate report{'s' if duplicates > 1 else ''} merged)"
    logs = [_log_text(d) for d in members.loc[members["kind"] == "police_log", "details"]]
    for quoted in logs[:3]:
        line += f"; police log: {quoted}"
    return line


def _category(details) -> str | None:
    try:
        d = json.loads(details) if isinstance(details, str) else None
    except ValueError:
        return None
    c = d.get("category") if isinstance(d, dict) else None
    return str(c) if isinstance(c, str) and c.isidentifier() else None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _extent_m(lon: np.ndarray, lat: np.ndarray) -> float:
    """The largest distance between two of the points (over their convex hull when many)."""
    if len(lon) > 64:
        from scipy.spatial import ConvexHull, QhullError

        with contextlib.suppress(QhullError, ValueError):  # all on a line: every point stays
            hull = ConvexHull(np.column_stack([lon * np.cos(np.radians(np.nanmean(lat))), lat]))
            lon, lat = lon[hull.vertices], lat[hull.vertices]
    return _pairwise_extent_m(lon, lat)


def _pairwise_extent_m(lon: np.ndarray, lat: np.ndarray) -> float:
    """Largest distance between two of the points, over all pairs."""
    if len(lon) < 2:
        return 0.0
    return float(np.max(geo.distance_m(lon[:, None], lat[:, None], lon[None, :], lat[None, :])))


def _log_text(details) -> str:
    """The free text of a police log entry as a quoted, escaped plain string."""
    text = details
    if isinstance(details, str):
        try:
            parsed = json.loads(details)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            text = parsed.get("text", parsed.get("note", details))
    text = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
    if len(text) > 200:
        text = text[:199] + "…"
    return json.dumps(text, ensure_ascii=False)


# --------------------------------------------------------------------------- display

def incident_html(row: Mapping[str, Any] | pd.Series | Any) -> str:
    """An incident as an HTML fragment; every field is escaped, so text stays text."""
    if hasattr(row, "_asdict"):
        row = row._asdict()
    fields = [(c, row[c]) for c in schema.columns("incidents") if c in row]
    items = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(_show(v))}</dd>"
                    for k, v in fields)
    priority = html.escape(_show(row.get("priority", "")))
    return f'<article class="incident" data-priority="{priority}"><dl>{items}</dl></article>'


def _show(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    return str(v)


def grouping_sweep(events: pd.DataFrame, windows: Iterable[float], radii: Iterable[float],
                   rules: FusionRules | None = None) -> pd.DataFrame:
    """Incident counts for every (window, radius), one rule for all kinds.

    Returns a long table: window_s, radius_m, events, incidents, multi (incidents
    of more than one event), largest (events in the biggest incident).
    """
    rules = FusionRules() if rules is None else rules
    ev, canon = _prepare(events, rules)
    rows = []
    for w in windows:
        for r in radii:
            labels = _components(ev, canon, rules.uniform(float(w), float(r)))
            sizes = np.bincount(labels) if len(labels) else np.zeros(0, int)
            rows.append({"window_s": float(w), "radius_m": float(r), "events": len(ev),
                         "incidents": int(len(sizes)), "multi": int((sizes > 1).sum()),
                         "largest": int(sizes.max()) if len(sizes) else 0})
    return pd.DataFrame(rows)
