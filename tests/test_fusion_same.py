"""Batch fusion builds its incidents from arrays, and gives what the per-incident pandas code gave.

``reference_fuse`` is the implementation of ``fusion.fuse`` before issue 17 (one
DataFrame per incident, about 5 ms each), copied here unchanged as an oracle: the
fast code must give the same incidents (ids, members, summaries, every column and
dtype) and the same membership, on the synthetic ground truth and on random events
full of near-ties. ``bench/fusion.py`` times both.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from safecity.data import geo, schema
from safecity.incidents import fusion
from safecity.incidents.live import LiveFusion
from safecity.sim import city as sim

T0 = pd.Timestamp("2026-06-01 22:00", tz="UTC")


# --------------------------------------------------------------------------- the oracle
# safecity/incidents/fusion.py at 0bdfc93: fuse's grouping loop, _incident, summarize.

def reference_fuse(events: pd.DataFrame, rules: fusion.FusionRules | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    rules = fusion.FusionRules() if rules is None else rules
    ev, canon = fusion._prepare(events, rules)
    if ev.empty:
        return schema.empty("incidents"), pd.DataFrame(
            {"event_id": pd.Series(dtype=str), "incident_id": pd.Series(dtype=str),
             "duplicate_of": pd.Series(dtype=object)})
    labels = fusion._components(ev, canon, rules)
    ev = ev.assign(_group=labels, _dup=canon != np.arange(len(ev)),
                   _canon=ev["event_id"].to_numpy()[canon])
    records, member_ids = [], []
    for _, g in ev.groupby("_group", sort=False):
        inc = reference_incident(g, rules)
        records.append(inc)
        member_ids.append(pd.DataFrame({
            "event_id": g["event_id"].to_numpy(), "incident_id": inc["incident_id"],
            "duplicate_of": np.where(g["_dup"], g["_canon"], None)}))
    incidents = schema.validate(pd.DataFrame(records).sort_values(["ts", "incident_id"]),
                                "incidents")
    membership = pd.concat(member_ids, ignore_index=True)
    return incidents, membership


def reference_incident(g: pd.DataFrame, rules: fusion.FusionRules) -> dict:
    ids = sorted(g["event_id"])
    real = g[~g["_dup"]]
    topics = real["kind"].where(real["kind"] != "call",
                                real["details"].map(fusion._category).fillna("call"))
    prio = {k: int(rules.priority.get(k, rules.default_priority)) for k in topics.unique()}
    counts = Counter(topics)
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
        "lon": lon, "lat": lat, "summary": reference_summarize(real, kind, g["_dup"].sum()),
        "event_ids": json.dumps(ids),
    }


def reference_summarize(members: pd.DataFrame, kind: str, duplicates: int = 0) -> str:
    parts = []
    for k, n in sorted(Counter(members["kind"]).items(), key=lambda kv: (kv[0] != kind, kv[0])):
        one, many = fusion._NOUNS.get(k, (f"{k.replace('_', ' ')} detection",
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
        apart = fusion._extent_m(located["lon"].to_numpy(float), located["lat"].to_numpy(float))
        line += (f" within {fusion._duration(span)}"
                 + (f", {apart:.0f} m apart" if len(located) > 1 else ""))
    if duplicates:
        line += f" ({int(duplicates)} duplicate report{'s' if duplicates > 1 else ''} merged)"
    logs = [fusion._log_text(d) for d in members.loc[members["kind"] == "police_log", "details"]]
    for quoted in logs[:3]:
        line += f"; police log: {quoted}"
    return line


class ReferenceLiveFusion(LiveFusion):
    """Live fusion growing one incident at a time with ``reference_incident`` (live.py at 0bdfc93)."""

    def _grow(self, window, labels, is_new, incident):
        changed = []
        for label in np.unique(labels[is_new]):
            in_group = labels == label
            fresh = window[in_group & is_new]
            owners = sorted({i for i in incident[in_group] if isinstance(i, str)},
                            key=lambda i: (self.records_[i]["ts"], i))
            changed += self._grow_one(owners, fresh)
        return changed

    def _grow_one(self, owners, fresh):
        if owners:
            keep = owners[0]
        else:
            keep = "inc-" + hashlib.sha1("\n".join(sorted(fresh["event_id"])).encode()).hexdigest()[:16]
        parts = [self.members_.get(o) for o in owners] + [fresh]
        members = pd.concat([p for p in parts if p is not None], ignore_index=True)
        record = reference_incident(members, self.rules) | {"incident_id": keep}
        out = []
        for gone in owners[1:]:
            merged = self.records_.pop(gone)
            self.members_.pop(gone, None)
            out.append({**merged, "status": "merged",
                        "summary": f"Merged into {keep}: {merged['summary']}"})
        if keep in self.records_:
            record["status"] = self.records_[keep].get("status", record["status"])
        self.members_[keep] = members
        self.records_[keep] = record
        moved = [fresh] + [p for p in parts[1:-1] if p is not None]
        for part in moved:
            for event_id in part["event_id"]:
                self.incident_of_[event_id] = keep
        return out + [record]


# --------------------------------------------------------------------------- inputs

KINDS = ["gunshot", "gunshot", "call", "call", "call", "panic", "police_log", "fire",
         "crowd_movement", "excessive_density", "person_on_ground", "abandoned_object"]
SOURCES = ["acoustic", "sf_shotspotter", "emergency_call", "panic_button", "video",
           "police_log", "drone", "a-source-no-rule-knows"]
DETAILS = [None, "{}", '{"category": "medical"}', '{"category": "gunshot"}',
           '{"category": "fire"}', '{"category": "assault"}', '{"category": "not an id"}',
           '{"category": 3}', "not json", '{"text": "shots near \\"the\\" bar\\nsend help"}',
           '{"note": "<script>alert(1)</script>"}', json.dumps({"text": "x" * 300}),
           '{"text": null}', '["a list"]', '{"category": "unknown_topic"}']


def random_events(n: int, seed: int) -> pd.DataFrame:
    """Events made to tie: few instants and places, repeated ids, sensors that repeat themselves."""
    rng = np.random.default_rng(seed)
    x, y = geo.to_xy(5.38, 43.30)
    spots = rng.uniform(-10_000, 10_000, (max(n // 25, 2), 2))
    where = spots[rng.integers(0, len(spots), n)]
    jitter = rng.choice([0.0, 1.0, 40.0, 150.0], n, p=[0.4, 0.2, 0.3, 0.1])[:, None]
    where = where + rng.normal(0, 1, (n, 2)) * jitter
    lon, lat = geo.to_lonlat(x + where[:, 0], y + where[:, 1])
    lon, lat = np.asarray(lon, float).copy(), np.asarray(lat, float).copy()
    lon[rng.random(n) < 0.04] = np.nan
    lat[rng.random(n) < 0.04] = np.nan
    seconds = np.sort(rng.integers(0, 1800, max(n // 3, 1)))[rng.integers(0, max(n // 3, 1), n)]
    seconds = seconds + rng.choice([0, 0, 1, 3, 7], n)  # the same instant, or seconds apart
    ids = [f"ev-{i:05d}" if i % 7 else f"é{i}" for i in rng.permutation(n)]
    if n > 6:
        ids[5] = ids[6]  # the same event sent twice
    sensors = np.array([None, None, "s-1", "s-2", "s-3", "det-9"], dtype=object)
    frame = pd.DataFrame({
        "event_id": ids, "ts": T0 + pd.to_timedelta(seconds, unit="s"),
        "kind": rng.choice(KINDS, n), "sensor_id": sensors[rng.integers(0, len(sensors), n)],
        "lon": lon, "lat": lat, "score": rng.random(n),
        "source": rng.choice(SOURCES, n),
        "details": np.array(DETAILS, dtype=object)[rng.integers(0, len(DETAILS), n)]})
    return frame


def _same(events: pd.DataFrame, rules: fusion.FusionRules | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    incidents, membership = fusion.fuse(events, rules)
    want_incidents, want_membership = reference_fuse(events, rules)
    pd.testing.assert_frame_equal(incidents, want_incidents, check_exact=True)
    pd.testing.assert_frame_equal(membership, want_membership, check_exact=True)
    return incidents, membership


# --------------------------------------------------------------------------- tests

def test_same_incidents_as_the_reference_on_the_synthetic_ground_truth():
    city = sim.simulate_city(seed=0, days=14, n_counters=2, zones=geo.builtin_zones())
    incidents, membership = _same(city.events)
    assert len(incidents) < len(membership) == len(city.events)  # some events were fused


@pytest.mark.parametrize("seed", [0, 1])
def test_same_incidents_as_the_reference_on_random_near_ties(seed):
    events = random_events(2500, seed)
    incidents, membership = _same(events)
    sizes = membership.groupby("incident_id").size()
    assert sizes.max() > 3 and (sizes == 1).any()
    assert membership["duplicate_of"].notna().any()  # sensors repeating themselves
    assert incidents["summary"].str.contains("police log: ").any()
    assert incidents["lon"].isna().any()  # an incident of unlocated events


def test_same_incidents_as_the_reference_with_wide_rules_and_large_incidents():
    events = random_events(1500, 2)
    incidents, membership = _same(events, fusion.FusionRules().uniform(900, 1500))
    assert membership.groupby("incident_id").size().max() > 64  # the convex hull's case


def test_same_incidents_as_the_reference_on_edge_cases():
    _same(schema.empty("events"))
    _same(random_events(2, 3))
    one = random_events(40, 4).assign(lon=np.nan, lat=np.nan, sensor_id="s-1", kind="panic",
                                      source="panic_button")
    _same(one)  # nothing located; one sensor repeating itself


def test_an_incident_of_duplicates_only_is_refused():
    members = random_events(3, 7).assign(_dup=[False, True, True])
    with pytest.raises(ValueError, match="not a duplicate"):
        fusion._records(fusion._Members.from_frame(members), np.array([1, 2]), fusion.FusionRules())


def test_one_incident_record_as_the_reference_gives_it():
    """``_incident`` (what live fusion calls as an incident grows) gives the reference's dict."""
    events = random_events(600, 5)
    rules = fusion.FusionRules()
    ev, canon = fusion._prepare(events, rules)
    labels = fusion._components(ev, canon, rules)
    ev = ev.assign(_dup=canon != np.arange(len(ev)), _canon=ev["event_id"].to_numpy()[canon])
    for _, g in ev.groupby(labels, sort=False):
        got, want = fusion._incident(g, rules), reference_incident(g, rules)
        assert got == want
        assert [type(v) for v in got.values()] == [type(v) for v in want.values()]


def test_live_fusion_gives_the_reference_records_batch_after_batch():
    """Events arriving in batches: live fusion returns what the per-incident live code returned
    (new, grown and merged incidents, an operator's status kept), and holds the same members."""
    events = random_events(400, 6).drop_duplicates("event_id")
    events = events.sort_values(["ts", "event_id"]).reset_index(drop=True)
    live, reference = LiveFusion(), ReferenceLiveFusion()
    statuses = []
    for start in range(0, len(events), 40):
        batch = events.iloc[start:start + 40]
        got, want = live.add(batch), reference.add(batch)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        statuses += got["status"].tolist()
        if len(got):  # an operator dispatches to the newest: growing must keep that status
            for fusion_ in (live, reference):
                fusion_.set_status(got["incident_id"].iloc[-1], "dispatched")
        assert live.members_.keys() == reference.members_.keys()
        for inc in live.members_:
            assert live.members_[inc]["event_id"].tolist() == reference.members_[inc]["event_id"].tolist()
    assert {"open", "merged", "dispatched"} <= set(statuses)
