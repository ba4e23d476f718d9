"""Score observations as they arrive: each bin once, when it closes, and raise ``anomaly`` events at once.

A live engine receives observations a few at a time, late or out of order.
``LiveScorer`` buffers them per bin of a fitted ``UsualLevel`` and, once a bin
is closed (its end plus a lateness allowance has passed), scores it with
``UsualLevel.departures`` and learns each ``update_every`` step (a local day)
with ``partial_fit`` once all its bins are scored: exactly what
``safecity.baseline.replay.replay_live`` does to a recorded period, so the
live flags are those of the replay the threshold was calibrated on, and the
alarm rate is the calibrated one.

    scorer = LiveScorer.from_history(store.read("observations"), now, calendar=cal, sensors=sensors)
    events = scorer.add(new_rows, now)          # on every post, or on a timer with no rows

Events. An alarm period (``safecity.baseline.periods``) is raised when it
starts: at each closed bin, the periods of the last ``merge_gap`` (plus one
bin) of scores are listed by ``alarm_periods`` and those starting at that bin
become ``anomaly`` events (``anomaly_events``): a sensor's alarm, or a group
anomaly (a zone, the city) listing its departing sensors. What a period
says (observed, expected, band, the group's sensors) is read at its first bin
only, so the same bin scored again by the same model gives the same row,
whatever the batches the rows came in. A period that goes on is not raised
again; a group anomaly that starts later than its sensors' own alarms lists
them in ``attached`` but cannot withdraw them (the batch table, seeing the
whole period, would attach them instead).

Event ids are ``anomaly-<metric>-<sensor or group-zone>-<high|low>-<start>``:
the alarm's identity, not its values, so a store deduplicates a re-send. An
event row is immutable in the store (the same id with other values is a
conflict), so an id is never raised twice by one scorer, and ``remember``
tells a scorer started after a restart which ids the store already has.

Thread-safe: ``add``, ``scores`` and ``remember`` take one lock,
so a dashboard may read the scores while the engine adds rows.
"""
from __future__ import annotations

import functools
import json
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from safecity.baseline.grid import Departures
from safecity.baseline.periods import alarm_periods, anomaly_events
from safecity.baseline.usual import UsualLevel
from safecity.data.schema import empty, validate

KIND = "anomaly"


@dataclass(frozen=True)
class LiveScoring:
    """How a live scorer waits and what it keeps.

    lateness : a bin is scored once its end is this far in the past; rows for a
        bin already scored are counted (``late_rows``) and ignored.
    keep : the scores kept for ``scores()`` (a dashboard's anomaly map), and how
        long raised ids are remembered.
    """

    lateness: str = "2min"
    keep: str = "1D"


class LiveScorer:
    """Scores each closed bin once with a fitted ``UsualLevel`` and returns the ``anomaly`` events it raises.

    ``model`` is owned by the scorer from then on (it learns with
    ``partial_fit``). ``sensors`` (sensor_id, lon, lat) places the events
    (default: the sensors table the model was fitted with). ``start`` is the
    first bin to score (default ``model.end_``, the bin after those learnt).
    """

    def __init__(self, model: UsualLevel, *, sensors: pd.DataFrame | None = None,
                 config: LiveScoring = LiveScoring(), start=None):
        check_is_fitted(model, "level_")
        self.model = model
        self.config = config
        self.lateness = pd.Timedelta(config.lateness)
        self.keep = pd.Timedelta(config.keep)
        table = sensors if sensors is not None else getattr(model, "sensors_", None)
        self.sensors = table if table is not None and {"lon", "lat"} <= set(table.columns) else None
        self.freq = model.freq_
        first = model.end_ if start is None else _utc(start)
        if (first - model.end_) % self.freq != pd.Timedelta(0):
            raise ValueError(f"start {first.isoformat()} is not on the model's {self.freq} grid")
        self.next_bin = first  # the first bin not scored yet
        # Learning steps as replay_live cuts them: every update_every from the first local midnight.
        every = model.update_every
        self._every = None if every is None else pd.Timedelta(every)
        anchor = first.tz_convert(model.tz).normalize().tz_convert("UTC")
        self._step_end = None if self._every is None else \
            anchor + self._every * ((first - anchor) // self._every + 1)
        self._pending: list[pd.DataFrame] = []  # rows of bins not scored yet (ts on the grid)
        self._step: list[pd.DataFrame] = []  # wide frames scored in the current step, to learn at its end
        self._tail: Departures | None = None  # the last merge_gap + 1 bins scored: a period's look-back
        self._scores: list[pd.DataFrame] = []
        self._raised: dict[str, pd.Timestamp] = {}
        self._lock = threading.Lock()
        self.late_rows = 0
        self.scored_bins = 0

    @classmethod
    def from_history(cls, observations: pd.DataFrame, now, *, calendar: pd.DataFrame | None = None,
                     sensors: pd.DataFrame | None = None, config: LiveScoring = LiveScoring(),
                     **params) -> "LiveScorer":
        """A scorer whose model is fitted on the bins of ``observations`` closed at ``now``.

        ``params`` go to ``UsualLevel`` (rate, tz, metric...). Rows of bins
        still open at ``now`` are buffered, to be scored when they close.
        """
        model = UsualLevel(**params)
        obs = observations
        if model.metric is not None and "metric" in obs.columns:
            obs = obs[obs["metric"] == model.metric]
        ts = pd.DatetimeIndex(pd.to_datetime(obs["ts"], utc=True))
        step = _bin_of(ts)
        closed = (ts + step + pd.Timedelta(config.lateness) <= _utc(now))
        model.fit(obs[closed], calendar=calendar, sensors=sensors)
        scorer = cls(model, sensors=sensors, config=config)
        scorer.add(obs[~closed], now)
        return scorer

    # ------------------------------------------------------------------ the engine's calls

    def add(self, observations: pd.DataFrame, now) -> pd.DataFrame:
        """Buffer ``observations`` (the data model's table) and score every bin closed at ``now``.

        Returns the ``anomaly`` events of the bins scored (the ``events`` table,
        maybe empty). Rows of other metrics than the model's are ignored; rows
        of a bin already scored are counted in ``late_rows`` and ignored. A
        row's bin is the one its ts falls in (rows of one sensor and bin are
        summed, as ``UsualLevel`` does).
        """
        now = _utc(now)
        with self._lock:
            self._buffer(observations)
            closed_end = self._closed_end(now)
            events = []
            while self.next_bin < closed_end:
                stop = closed_end if self._step_end is None else min(closed_end, self._step_end)
                events.append(self._score(self.next_bin, stop))
                self.next_bin = stop
                if self._step_end is not None and stop == self._step_end:
                    self._learn_step()
                    self._step_end = self._step_end + self._every
            self._forget(now)
        events = [e for e in events if len(e)]
        return validate(pd.concat(events, ignore_index=True), "events") if events else no_events()

    def remember(self, events: pd.DataFrame) -> None:
        """Ids of ``anomaly`` events already stored (after a restart): they are never raised again."""
        with self._lock:
            for row in events.loc[events["kind"] == KIND, ["event_id", "ts"]].itertuples(index=False):
                self._raised[str(row.event_id)] = _utc(row.ts)

    def scores(self, since=None) -> pd.DataFrame:
        """Standardised departures of the bins scored in the last ``keep`` (bins x sensors, NaN: not scored)."""
        with self._lock:
            if not self._scores:
                return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="ts"), dtype=np.float32)
            out = pd.concat(self._scores).sort_index()
        return out if since is None else out[out.index >= _utc(since)]

    # ------------------------------------------------------------------ internals

    def _buffer(self, observations: pd.DataFrame) -> None:
        if observations is None or observations.empty:
            return
        obs = observations
        if self.model.metric is not None and "metric" in obs.columns:
            obs = obs[obs["metric"] == self.model.metric]
        ts = pd.DatetimeIndex(pd.to_datetime(obs["ts"], utc=True)).as_unit("ns")
        origin = self.model.end_
        bins = origin + ((ts - origin) // self.freq) * self.freq
        late = bins < self.next_bin
        self.late_rows += int(late.sum())
        if (~late).any():
            self._pending.append(pd.DataFrame({"ts": bins[~late], "sensor_id": obs["sensor_id"].astype(str)
                                               .to_numpy()[~late], "value": obs["value"].to_numpy(float)[~late]}))

    def _closed_end(self, now: pd.Timestamp) -> pd.Timestamp:
        """The end of the last bin closed at ``now`` (``next_bin`` when none is)."""
        n = (now - self.lateness - self.next_bin) // self.freq
        return self.next_bin + max(int(n), 0) * self.freq

    def _score(self, start: pd.Timestamp, stop: pd.Timestamp) -> pd.DataFrame:
        """Score the bins of [start, stop) (one learning step at most) and raise the periods starting there."""
        rows = pd.concat(self._pending, ignore_index=True) if self._pending else None
        grid = pd.date_range(start, stop, freq=self.freq, inclusive="left", name="ts").as_unit("ns")
        ids = pd.Index(self.model.sensor_ids_.astype(str))
        if rows is not None:
            now_rows = rows["ts"] < stop
            self._pending = [rows[~now_rows]] if (~now_rows).any() else []
            rows = rows[now_rows]
            ids = ids.union(pd.Index(rows["sensor_id"].unique()), sort=False)
            wide = rows.groupby(["ts", "sensor_id"])["value"].sum().unstack("sensor_id")
            wide = wide.reindex(index=grid, columns=ids)
        else:
            wide = pd.DataFrame(np.nan, index=grid, columns=ids)
        wide.columns.name = "sensor_id"
        departures = self.model.departures(wide)
        self._step.append(wide)
        self._scores.append(departures.scores())
        self.scored_bins += len(grid)
        return self._raise(departures)

    def _raise(self, departures: Departures) -> pd.DataFrame:
        """``anomaly`` events of the periods that start at the bins of ``departures``."""
        model = self.model
        look = model._gap() + 1
        both = departures if self._tail is None else _joined(self._tail, departures)
        first = len(both.index) - len(departures.index)
        self._tail = _sliced(both, slice(max(0, len(both.index) - look), None))
        z = np.abs(departures.z)
        with np.errstate(invalid="ignore"):
            candidate = (np.nan_to_num(z) > min(model.threshold_, model.group_z)).any(axis=0)
        out = []
        for i in np.nonzero(candidate)[0]:
            at = first + i
            periods = alarm_periods(model, _sliced(both, slice(max(0, at - look), at + 1)))
            periods = periods[periods["start"] == both.index[at]]
            if len(periods):
                out.append(self._events(periods))
        return pd.concat(out, ignore_index=True) if out else no_events()

    def _events(self, periods: pd.DataFrame) -> pd.DataFrame:
        model = self.model
        events = anomaly_events(periods, sensors=self.sensors, metric=str(model.metric))
        group_rate = model.rate if model.group_rate is None else model.group_rate
        keep = []
        for i, row in events.iterrows():
            details = json.loads(row["details"])
            who = row["sensor_id"] if isinstance(row["sensor_id"], str) else f"group-{details['group']}"
            event_id = f"{KIND}-{model.metric}-{who}-{details['direction']}-{row['ts']:%Y%m%dT%H%MZ}"
            if event_id in self._raised:
                continue
            is_group = details["group"] is not None
            details.update({
                "live": True, "bin_minutes": self.freq / pd.Timedelta(minutes=1),
                # the rate the threshold was solved for, and the rate it gave on the calibration days
                "alarm_rate_per_sensor_day" if not is_group else "alarm_rate_per_group_day":
                    float(group_rate if is_group else model.rate),
                "calibrated_rate": _number(model.group_realised_rate_.get(details["group"], np.nan)
                                           if is_group else model.realised_rate_),
                "threshold": round(float(model.threshold_), 4), "calibrated": bool(model.calibrated_),
            })
            events.loc[i, ["event_id", "details"]] = [event_id, json.dumps(details, ensure_ascii=False)]
            self._raised[event_id] = row["ts"]
            keep.append(i)
        return events.loc[keep]

    def _learn_step(self) -> None:
        """The step is scored: learn it, as ``replay_live`` does after scoring a step."""
        if self._step:
            frame = pd.concat(self._step).sort_index()
            frame.columns.name = "sensor_id"
            self.model.partial_fit(frame)
        self._step = []

    def _forget(self, now: pd.Timestamp) -> None:
        cutoff = now - self.keep
        while self._scores and (len(self._scores[0].index) == 0 or self._scores[0].index[-1] < cutoff):
            self._scores.pop(0)
        self._raised = {k: t for k, t in self._raised.items() if t >= cutoff - self.lateness}


# ---------------------------------------------------------------------- Departures of different sensors

def _joined(a: Departures, b: Departures) -> Departures:
    """``a`` then ``b`` (consecutive bins) on the union of their sensors (NaN where a sensor is absent)."""
    ids = pd.Index(a.sensor_ids).union(pd.Index(b.sensor_ids), sort=False)
    return Departures.concat([_on(a, ids), _on(b, ids)])


def _on(d: Departures, ids: pd.Index) -> Departures:
    if len(ids) == len(d.sensor_ids) and (ids == pd.Index(d.sensor_ids)).all():
        return d
    pos = pd.Index(d.sensor_ids).get_indexer(ids)
    ok = pos >= 0

    def take(a):
        out = np.full((len(ids), a.shape[1]), np.nan, a.dtype)
        out[ok] = a[pos[ok]]
        return out

    return Departures(d.index, np.asarray(ids, dtype=object), take(d.observed), take(d.z), take(d.centre),
                      take(d.scale), d.day_type)


def _sliced(d: Departures, cols: slice) -> Departures:
    return Departures(d.index[cols], d.sensor_ids, d.observed[:, cols], d.z[:, cols], d.centre[:, cols],
                      d.scale[:, cols], d.day_type[cols])


def _bin_of(ts: pd.DatetimeIndex) -> pd.Timedelta:
    """The most common gap between timestamps (the bin ``UsualLevel`` will infer)."""
    t = np.unique(ts.as_unit("ns").asi8)
    if len(t) < 2:
        raise ValueError("observations: one timestamp only; the bin cannot be inferred")
    gaps, counts = np.unique(np.diff(t), return_counts=True)
    return pd.Timedelta(int(gaps[np.argmax(counts)]), "ns")


@functools.cache
def _no_events() -> pd.DataFrame:
    return empty("events")


def no_events() -> pd.DataFrame:
    """An empty ``events`` table (validated once: pandera takes a tenth of a second per table)."""
    return _no_events().copy()


def _utc(t) -> pd.Timestamp:
    t = pd.Timestamp(t)
    return (t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")).as_unit("ns")


def _number(v) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), 4)
