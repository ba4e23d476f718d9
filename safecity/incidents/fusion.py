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
    dup = canon != np.arange(len(ev))
    # groups in the order of their first event, each group's members in time order
    _, first, label = np.unique(labels, return_index=True, return_inverse=True)
    group = np.argsort(np.argsort(first))[label]
    order = np.argsort(group, kind="stable")
    sizes = np.bincount(group)
    records = _records(_Members.from_frame(ev, dup).take(order), sizes, rules)
    incidents = schema.validate(pd.DataFrame(records).sort_values(["ts", "incident_id"]),
                                "incidents")
    ids = ev["event_id"].to_numpy(object)
    membership = pd.DataFrame({
        "event_id": ids[order], "incident_id": np.repeat(records["incident_id"], sizes),
        "duplicate_of": pd.Series(np.where(dup, ids[canon], None)[order], dtype=object)})
    return incidents, membership


@dataclass
class _Members:
    """Member events as arrays (one row each, grouped rows contiguous): what an incident is made of.

    Building incidents from these instead of a DataFrame per incident is what makes
    batch fusion fast (pandas costs milliseconds per small frame).
    """

    event_id: np.ndarray   # object (str)
    ts: np.ndarray         # int64, ns since the epoch (UTC)
    kind: np.ndarray       # object (str)
    sensor_id: np.ndarray  # object (str, or NaN/None when missing)
    lon: np.ndarray        # float
    lat: np.ndarray        # float
    source: np.ndarray     # object (str)
    details: np.ndarray    # object (str, or NaN/None)
    dup: np.ndarray        # bool: repeats an earlier member (kept, counted once)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, dup: np.ndarray | None = None) -> "_Members":
        """From events (``dup`` given, else the frame's ``_dup`` column)."""
        dup = df["_dup"].to_numpy(bool) if dup is None else np.asarray(dup, bool)
        return cls(event_id=df["event_id"].to_numpy(object),
                   ts=pd.DatetimeIndex(df["ts"]).as_unit("ns").asi8,
                   kind=df["kind"].to_numpy(object), sensor_id=df["sensor_id"].to_numpy(object),
                   lon=df["lon"].to_numpy(float), lat=df["lat"].to_numpy(float),
                   source=df["source"].to_numpy(object), details=df["details"].to_numpy(object),
                   dup=dup)

    def take(self, rows: np.ndarray | slice) -> "_Members":
        return _Members(**{f.name: getattr(self, f.name)[rows] for f in dataclasses.fields(self)})

    @classmethod
    def concat(cls, parts: list["_Members"]) -> "_Members":
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in dataclasses.fields(cls)})


def _incident(g: pd.DataFrame, rules: FusionRules) -> dict:
    """One incident from its member events (a ``_dup`` column: duplicates, counted once)."""
    return _record_dicts(_records(_Members.from_frame(g), np.array([len(g)]), rules))[0]


def _record_dicts(columns: Mapping[str, Any]) -> list[dict]:
    """``_records``' columns as one dict per incident, in plain Python values (None: no place)."""
    lon, lat = (np.where(np.isnan(columns[c]), None, columns[c]).tolist() for c in ("lon", "lat"))
    return [{"incident_id": i, "ts": t, "kind": k, "priority": p, "confidence": c,
             "status": "open", "lon": x, "lat": y, "summary": s, "event_ids": e}
            for i, t, k, p, c, x, y, s, e in zip(
                columns["incident_id"], columns["ts"], columns["kind"],
                columns["priority"].tolist(), columns["confidence"].tolist(), lon, lat,
                columns["summary"], columns["event_ids"])]


def _records(m: _Members, sizes: np.ndarray, rules: FusionRules) -> dict[str, Any]:
    """The incidents of groups of members (``sizes``: rows per group, in order), as columns.

    Duplicates are members but count once: an incident's time, kind, confidence,
    place and summary come from its other members. Where a figure is a float
    computed from several members (a mean, an extent), it is computed as pandas
    did, over the same contiguous values, so the incidents are those of the
    per-incident code this replaced (tests/test_fusion_same.py).
    """
    n_groups = len(sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    group = np.repeat(np.arange(n_groups), sizes)
    real = ~m.dup
    r = np.nonzero(real)[0]
    if np.bincount(group[r], minlength=n_groups).min(initial=1) == 0:  # misaligned columns otherwise
        raise ValueError("an incident needs a member that is not a duplicate (its original)")
    # A call says what it is about (details.category); that, not "call", sets its urgency.
    topic = m.kind[r].copy()
    calls = np.nonzero(topic == "call")[0]
    topic[calls] = [_category(d) or "call" for d in m.details[r[calls]]]
    kind, priority = _named_kind(group[r], topic, rules)
    ts = np.minimum.reduceat(np.where(real, m.ts, np.iinfo(np.int64).max), starts)
    confidence = _confidence(group[r], m.source[r], n_groups, rules)
    located = real & ~np.isnan(m.lon) & ~np.isnan(m.lat)
    lon, lat = m.lon[located], m.lat[located]
    n_located = np.bincount(group[located], minlength=n_groups)
    centre = _group_means(lon, lat, n_located)
    incident_id, event_ids = _member_ids(m.event_id, sizes)
    return {
        "incident_id": incident_id,
        "ts": pd.to_datetime(ts, unit="ns", utc=True), "kind": kind, "priority": priority,
        "confidence": confidence, "status": "open", "lon": centre[0], "lat": centre[1],
        "summary": _summaries(m, group, kind, ts, (lon, lat, n_located)),
        "event_ids": event_ids,
    }


def _member_ids(event_id: np.ndarray, sizes: np.ndarray) -> tuple[list[str], list[str]]:
    """Per group, its incident id (a hash of the sorted member ids: the same members, the
    same id) and its sorted member ids as a JSON list."""
    ids, hashes, lists, s = event_id.tolist(), [], [], 0
    for size in sizes.tolist():
        members = sorted(ids[s:s + size])
        hashes.append("inc-" + hashlib.sha1("\n".join(members).encode()).hexdigest()[:16])
        lists.append(json.dumps(members))
        s += size
    return hashes, lists


def _summaries(m: _Members, group: np.ndarray, kind: list[str], ts: np.ndarray,
               located: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[str]:
    """Per group, a plain-language line: what, how many reports from what, over what time and space.

    ``located``: the lon and lat of the members that have both (grouped) and their
    count per group. Police log text is included only as a JSON-quoted string
    (quotes, newlines and control characters escaped), cut to 200 characters: it can
    never end the sentence early or pass for the system's own words.
    """
    n_groups = len(kind)
    r = np.nonzero(~m.dup)[0]
    # per (group, kind) of the members: reports, distinct sensors
    kcode, knames = pd.factorize(m.kind[r])
    pair, reports = np.unique(group[r] * len(knames) + kcode, return_counts=True)
    with_sensor = np.nonzero(pd.notna(m.sensor_id[r]))[0]
    scode = pd.factorize(m.sensor_id[r][with_sensor])[0]
    n_sensors = scode.max(initial=0) + 1
    sensor_pairs = np.unique((group[r][with_sensor] * len(knames) + kcode[with_sensor]) * n_sensors
                             + scode) // n_sensors
    sensors = np.zeros(len(pair), int)
    np.add.at(sensors, np.searchsorted(pair, sensor_pairs), 1)
    pair_at = np.searchsorted(pair // len(knames), np.arange(n_groups + 1)).tolist()
    pair_kind = [knames[k] for k in (pair % len(knames)).tolist()]
    nouns = {k: _NOUNS.get(k, (f"{k.replace('_', ' ')} detection",
                               f"{k.replace('_', ' ')} detections")) for k in knames}
    reports, sensors = reports.tolist(), sensors.tolist()
    # per group: members counted, time span, duplicates, police log entries
    starts = np.searchsorted(group, np.arange(n_groups))
    n_real = np.bincount(group[r], minlength=n_groups).tolist()
    span = (np.maximum.reduceat(np.where(m.dup, ts[group], m.ts), starts) - ts).tolist()
    duplicates = np.add.reduceat(m.dup.astype(int), starts).tolist()
    logs = r[m.kind[r] == "police_log"]
    log_at = np.searchsorted(group[logs], np.arange(n_groups + 1)).tolist()
    log_details = m.details[logs].tolist()
    lon, lat, n_located = located
    located_at = np.concatenate([[0], np.cumsum(n_located)]).tolist()

    out = []
    for gi, name in enumerate(kind):
        parts = sorted(range(pair_at[gi], pair_at[gi + 1]),
                       key=lambda p: (pair_kind[p] != name, pair_kind[p]))
        phrases = []
        for p in parts:
            one, many = nouns[pair_kind[p]]
            phrases.append(f"{reports[p]} {one if reports[p] == 1 else many}"
                           + (f" by {sensors[p]} sensors" if sensors[p] > 1 else ""))
        text = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        line = f"{name.replace('_', ' ').capitalize()}: {text}"
        if n_real[gi] > 1:
            line += f" within {_duration(pd.Timedelta(span[gi]).total_seconds())}"
            a, b = located_at[gi], located_at[gi + 1]
            if b - a > 1:
                line += f", {_extent_m(lon[a:b], lat[a:b]):.0f} m apart"
        if duplicates[gi]:
            line += f" ({duplicates[gi]} duplicate report{'s' if duplicates[gi] > 1 else ''} merged)"
        for d in log_details[log_at[gi]:min(log_at[gi + 1], log_at[gi] + 3)]:
            line += f"; police log: {_log_text(d)}"
        out.append(line)
    return out


def _named_kind(group: np.ndarray, topic: np.ndarray, rules: FusionRules
                ) -> tuple[list[str], np.ndarray]:
    """Each group's kind and priority: its most urgent topic; among equals, the most reported,
    then the first by name."""
    code, names = pd.factorize(topic)
    prio = np.array([int(rules.priority.get(k, rules.default_priority)) for k in names], int)
    by_name = np.empty(len(names), int)
    by_name[sorted(range(len(names)), key=lambda i: names[i])] = np.arange(len(names))
    pair, count = np.unique(group * len(names) + code, return_counts=True)
    g, c = pair // len(names), pair % len(names)
    best = np.lexsort((by_name[c], -count, prio[c], g))
    best = best[np.r_[True, g[best][1:] != g[best][:-1]]]
    return [names[i] for i in c[best]], prio[c[best]]


def _confidence(group: np.ndarray, source: np.ndarray, n_groups: int, rules: FusionRules
                ) -> np.ndarray:
    """1 - prod(1 - c) over each group's distinct sources, c their confidence."""
    code, names = pd.factorize(source)
    # each group's set of sources as a bit mask (62 sources a word): one product per distinct set
    bits = np.zeros((n_groups, len(names) // 62 + 1), np.int64)
    np.bitwise_or.at(bits, (group, code // 62), np.left_shift(1, code % 62))
    sets, which = np.unique(bits, axis=0, return_inverse=True)
    value = []
    for words in sets:
        chosen = [names[w * 62 + b] for w, word in enumerate(words.tolist())
                  for b in range(62) if word >> b & 1]
        c = 1.0 - np.prod([1.0 - rules.source_confidence.get(s, rules.default_confidence)
                           for s in sorted(chosen)])
        value.append(round(float(c), 4))
    return np.array(value, float)[which.ravel()]


def _group_means(lon: np.ndarray, lat: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group of consecutive points, the mean of lon and of lat rounded to 7 decimals
    (NaN for none): the sum over each group's values, as ``Series.mean`` gives it."""
    out = np.full((2, len(counts)), np.nan)
    at = np.concatenate([[0], np.cumsum(counts)])
    one = np.nonzero(counts == 1)[0]
    out[0, one], out[1, one] = lon[at[one]], lat[at[one]]
    for gi in np.nonzero(counts > 1)[0].tolist():
        a, b = at[gi], at[gi + 1]
        out[0, gi], out[1, gi] = lon[a:b].sum() / (b - a), lat[a:b].sum() / (b - a)
    # Python's round (correctly rounded decimal), not np.round (scaled, off by one ulp at times)
    return tuple(np.array([round(v, 7) for v in row.tolist()], float) for row in out)


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
