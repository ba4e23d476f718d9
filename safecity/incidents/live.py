"""Live fusion: events join incidents as they arrive, without re-fusing the past.

``fusion.fuse`` groups a whole history at once; a live engine cannot afford that on
every arriving gunshot, and must keep an incident's identity while it grows (an
operator has dispatched to it). ``LiveFusion.add`` links a batch of new events to
the recent ones with the same rules and the same linking code (``fusion._link_pairs``),
and builds every incident the batch changes in one call of ``fuse``'s own code
(``fusion._records``). An arriving event joins the incident of any event it links to,
opens one when it links to none, and, when it links two open incidents, merges the
younger into the older (the younger is returned with status ``merged``). Only events younger than
``horizon_s`` before the newest are kept in memory: nothing older can link to a new
one (the longest window of the rules), save events arriving later than that.

Given events in time order, the grouping is the one ``fuse`` gives on the whole
history (tests/test_live_fusion.py); incident ids are those ``fuse`` would give the
first batch of members, and stay fixed after.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from safecity.data import schema
from safecity.incidents import fusion

_MEMBER_COLUMNS = [*schema.columns("events"), "_dup", "_canon"]


class LiveFusion:
    """Incremental fusion: ``add(events)`` returns the incidents that the batch created or changed."""

    def __init__(self, rules: fusion.FusionRules | None = None, horizon_s: float | None = None):
        self.rules = rules or fusion.FusionRules()
        self.horizon_s = horizon_s
        self.recent_ = schema.empty("events").assign(  # events that may still link
            _dup=pd.Series(dtype=bool), _canon=pd.Series(dtype=object))
        self.incident_of_: dict[str, str] = {}                # event_id -> incident (recent)
        self.members_: dict[str, pd.DataFrame] = {}           # open incident -> its members
        self.records_: dict[str, dict] = {}                   # open incident -> its row
        self._member_arrays: dict[str, tuple] = {}  # incident -> (members_ frame, its arrays)

    @property
    def _horizon(self) -> float:
        if self.horizon_s is not None:
            return self.horizon_s
        return 2 * max(self.rules.reach()[0], self.rules.dedup_s)

    def seed(self, incidents: pd.DataFrame, events: pd.DataFrame) -> "LiveFusion":
        """Resume from stored incidents and the recent events (after a restart)."""
        events = schema.validate(events.drop_duplicates("event_id"), "events")
        by_id = events.set_index("event_id", drop=False)
        for row in incidents.itertuples(index=False):
            ids = [i for i in json.loads(row.event_ids) if i in by_id.index]
            if not ids or row.status == "merged":
                continue
            members = by_id.loc[ids].reset_index(drop=True)
            members = members.assign(_dup=False, _canon=members["event_id"])
            self.members_[row.incident_id] = members[_MEMBER_COLUMNS]
            self.records_[row.incident_id] = row._asdict()
            for i in ids:
                self.incident_of_[i] = row.incident_id
        known = pd.concat(list(self.members_.values())) if self.members_ else None
        if known is not None:
            self.recent_ = known.reset_index(drop=True)
        rest = events[~events["event_id"].isin(self.incident_of_)]
        self._prune()
        if len(rest):
            self.add(rest)
        return self

    def add(self, events: pd.DataFrame, validated: bool = False) -> pd.DataFrame:
        """Take in a batch; return the new or changed incidents (``merged`` ones included).

        ``validated``: the events come from ``schema.validate`` already (the engine's
        ingest), so they are not checked again.
        """
        ev = events.drop_duplicates("event_id")
        if not validated:
            ev = schema.validate(ev, "events")
        # a set lookup per new event: Series.isin on the (large) dict of known ids, with
        # Arrow strings, cost more than the fusion itself (bench/ingest.py)
        ev = ev[[e not in self.incident_of_ for e in ev["event_id"]]]
        if ev.empty:
            return schema.empty("incidents")
        reach = max(self.rules.reach()[0], self.rules.dedup_s)
        old = self.recent_[self.recent_["ts"] >= ev["ts"].min() - pd.Timedelta(seconds=reach)]
        # every row is validated already (the batch above, the recent ones when they came)
        both = pd.concat([old[schema.columns("events")].assign(_new=False), ev.assign(_new=True)],
                         ignore_index=True)
        window, canon = fusion._prepare(both, self.rules, validated=True)
        is_new = window.pop("_new").to_numpy(bool)
        incident = window["event_id"].map(self.incident_of_).to_numpy(object)
        labels = self._components(window, canon, is_new, incident)
        window = window.assign(_dup=canon != np.arange(len(window)),
                               _canon=window["event_id"].to_numpy()[canon])
        changed = self._grow(window[_MEMBER_COLUMNS], labels, is_new, incident)
        self.recent_ = pd.concat([self.recent_, window[is_new][_MEMBER_COLUMNS]],
                                 ignore_index=True)
        self._prune()
        # rows built by fusion._records from validated events: the store validates them again
        out = pd.DataFrame(changed, columns=schema.columns("incidents"))
        return out.sort_values(["ts", "incident_id"], ignore_index=True)

    def _components(self, window, canon, is_new, incident) -> np.ndarray:
        """Groups of the window: rule links involving a new event, plus each incident's members."""
        i, j = fusion._link_pairs(window, self.rules, among=is_new)
        rows, cols = [np.arange(len(window)), i], [canon, j]
        owned = pd.Series(incident).dropna()
        for idx in owned.groupby(owned).indices.values():  # chain the members of each incident
            members = owned.index.to_numpy()[idx]
            rows.append(members[:-1])
            cols.append(members[1:])
        r, c = np.concatenate(rows), np.concatenate(cols)
        graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(len(window),) * 2)
        return connected_components(graph, directed=False)[1]

    def _grow(self, window: pd.DataFrame, labels: np.ndarray, is_new: np.ndarray,
              incident: np.ndarray) -> list[dict]:
        """A group's new members join its oldest incident (or a new one); its other incidents
        merge into that one. Every incident the batch changes is built in one ``_records``
        call (one DataFrame per incident cost milliseconds each)."""
        new = np.nonzero(is_new)[0]
        new = new[np.argsort(labels[new], kind="stable")]
        touched, at = np.unique(labels[new], return_index=True)
        at = np.append(at, len(new)).tolist()
        owners_of: dict[int, set[str]] = {}
        for label, inc in zip(labels.tolist(), incident.tolist()):
            if isinstance(inc, str):
                owners_of.setdefault(label, set()).add(inc)
        groups, frames, layout, sizes = [], [], [], []
        offset = len(window)  # the owners' members come after the window's rows, in ``rows`` below
        for k, label in enumerate(touched.tolist()):
            owners = sorted(owners_of.get(label, ()), key=lambda i: (self.records_[i]["ts"], i))
            known = [o for o in owners if o in self.members_]
            fresh = new[at[k]:at[k + 1]]
            for o in known:  # an incident's members: its owners' (oldest first), then the new ones
                frames.append(self.members_[o])
                layout.append(np.arange(offset, offset + len(frames[-1])))
                offset += len(frames[-1])
            layout.append(fresh)
            sizes.append(sum(len(self.members_[o]) for o in known) + len(fresh))
            groups.append((owners, known, fresh))
        rows = np.concatenate(layout)
        arrays = fusion._Members.from_frame(window)
        members = fusion._Members.concat(
            [arrays] + [self._arrays(o) for _, known, _ in groups for o in known]).take(rows)
        records = fusion._record_dicts(fusion._records(members, np.array(sizes), self.rules))
        every = pd.concat([window, *frames], ignore_index=True).take(rows)
        out, start = [], 0
        for (owners, known, fresh), record, size in zip(groups, records, sizes):
            keep = owners[0] if owners else record["incident_id"]  # a new one: the hash of its members
            record["incident_id"] = keep
            for gone in owners[1:]:
                merged = self.records_.pop(gone)
                self.members_.pop(gone, None)
                out.append({**merged, "status": "merged",
                            "summary": f"Merged into {keep}: {merged['summary']}"})
            if keep in self.records_:  # an operator's status is the engine's to keep, not ours
                record["status"] = self.records_[keep].get("status", record["status"])
            self.members_[keep] = every.iloc[start:start + size]
            self._member_arrays[keep] = (self.members_[keep], members.take(slice(start, start + size)))
            self.records_[keep] = record
            moved = [arrays.event_id[fresh]] + [self._member_arrays.pop(o)[1].event_id
                                                for o in owners[1:] if o in known]
            for event_id in np.concatenate(moved).tolist():
                self.incident_of_[event_id] = keep
            out.append(record)
            start += size
        return out

    def _arrays(self, incident_id: str) -> fusion._Members:
        """An incident's members as arrays, kept while its member frame stays the same."""
        frame = self.members_[incident_id]
        cached = self._member_arrays.get(incident_id)
        if cached is None or cached[0] is not frame:
            cached = (frame, fusion._Members.from_frame(frame))
            self._member_arrays[incident_id] = cached
        return cached[1]

    def adopt(self, incidents: pd.DataFrame, events: pd.DataFrame) -> None:
        """Take in incidents another fusion made or changed (another server's), with their events.

        A merged incident is forgotten (its events come back with the one it merged
        into); an incident whose members this fusion lacks takes them from ``events``
        (validated events), so a new event here links to it as to one of our own;
        otherwise only its row (status, summary) is taken.
        """
        by_id = events.drop_duplicates("event_id").set_index("event_id", drop=False)
        for row in incidents.itertuples(index=False):
            if row.status == "merged":
                self.records_.pop(row.incident_id, None)
                self.members_.pop(row.incident_id, None)
                continue
            ids = json.loads(row.event_ids)
            known = self.members_.get(row.incident_id)
            if known is not None and set(ids) <= set(known["event_id"]):
                self.records_[row.incident_id] = row._asdict()
                continue
            found = [i for i in ids if i in by_id.index]
            if not found:  # none of its events stored: too old to link to anything new
                continue
            members = by_id.loc[found, schema.columns("events")].reset_index(drop=True)
            members = members.assign(_dup=False, _canon=members["event_id"])[_MEMBER_COLUMNS]
            self.members_[row.incident_id] = members
            self.records_[row.incident_id] = row._asdict()
            for event_id in found:
                self.incident_of_[event_id] = row.incident_id
            fresh = members[~members["event_id"].isin(set(self.recent_["event_id"]))]
            if len(fresh):
                self.recent_ = pd.concat([self.recent_, fresh], ignore_index=True)
        self._prune()

    def set_status(self, incident_id: str, status: str) -> None:
        if incident_id in self.records_:
            self.records_[incident_id]["status"] = status

    def _prune(self) -> None:
        """Forget events and incidents too old to link to anything that may still arrive."""
        if self.recent_.empty:
            return
        cutoff = self.recent_["ts"].max() - pd.Timedelta(seconds=self._horizon)
        old = self.recent_["ts"] < cutoff
        if not old.any():
            return
        self.recent_ = self.recent_[~old].reset_index(drop=True)
        alive = set(self.recent_["event_id"])
        for inc in [i for i in self.members_ if alive.isdisjoint(self._arrays(i).event_id.tolist())]:
            del self.members_[inc], self.records_[inc]
        for inc in [i for i in self._member_arrays if i not in self.members_]:
            del self._member_arrays[inc]
        self.incident_of_ = {e: i for e, i in self.incident_of_.items() if e in alive}
