"""The gathering forecaster over a Dask dataframe of the history, partitioned by sensor.

``GatheringForecaster`` is one global model over all sensors, but almost all
of its fit is per sensor: a sensor's hourly counts, weekly level, context
(events near it) and candidate points depend on its own rows, the global
hour grid and the calendar only. So the rows are partitioned by sensor (every
sensor's rows in one partition: ``history.by_sensor`` or
``history.read_sensor_blocks``), each partition builds its sensors' hourly
matrix, levels and candidate points on the worker that holds it, and only
small things cross the network:

* the grid (first and last hour with a count), from each partition;
* the sample: each partition sends a bitmask of its ordinary (no event)
  candidate points (one bit per sensor-hour); the driver lays the masks side
  by side in sorted sensor order and makes the very draw one process makes
  (``GatheringForecaster.draw``: positions in the time-major order of hour,
  then sensor), then sends each partition the points drawn among its own;
* the design rows drawn (at most ``max_samples`` ordinary rows to fit and as
  many to calibrate) and every event row; the boosters and the interval
  tables are fitted here on them, in one process's row order
  (``GatheringForecaster.fit_rows``);
* to forecast, the fitted boosters go to the workers (a few hundred kB);
  each partition forecasts its own sensors, and only which feature columns
  are observed at all (a few bits) is shared first, as a model fills a
  column missing at every point with 0.

The fitted model is identical to ``GatheringForecaster.fit`` in one process
on the same rows: the same predictions, bit for bit (tested). One exception,
in the last bit: a sensor with several rows in one hour whose values are not
whole numbers (counts are), summed in the shuffled order.

What a worker holds, per sensor-hour (measured with tracemalloc, one
partition of 200 sensors x 400 days): the hourly matrix of its rows before the
cut, 8 bytes (about 180 at the peak while one partition's rows become it);
then, over the fit's window (``history_days`` + ``calibration_days`` + 29 days;
the whole history when ``history_days`` is None, the default),
about 50 bytes at rest (counts, level, event context, candidate points) and
190 at the peak while one partition computes its lags; fitted, 9 kB per sensor
(weekly profile, last 29 days). 1,000 sensors and a year's window (10,128
hours): about 0.5 GB at rest, plus one partition in flight.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone

from safecity.data.counts import hourly_as_is, hourly_counts, sensor_positions
from safecity.forecast.features import WEEK_LAGS
from safecity.forecast.model import (
    NO_LEVEL,
    FitRows,
    ForecastPoints,
    GatheringForecaster,
    SensorHours,
    Split,
    weekly_profile,
)
from safecity.forecast.table import HOUR, QUANTILES, check_quantiles, empty_forecast

#: Hours of the global candidate mask unpacked at once on the driver: at most 16 M sensor-hours (16 MB).
MASK_CHUNK = 1 << 24


# --------------------------------------------------------------------------- on the workers


def _worker() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None


def _observations(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The partition's rows as the observations table (a history without ``metric`` is of that metric)."""
    if "metric" in frame.columns:
        frame = frame[frame["metric"] == metric]
    return pd.DataFrame({"ts": pd.to_datetime(frame["ts"], utc=True), "sensor_id": frame["sensor_id"].astype(str),
                         "metric": metric, "value": frame["value"].to_numpy(float)})


def _before(obs: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None) -> pd.DataFrame:
    keep = np.ones(len(obs), bool)
    if start is not None:
        keep &= (obs["ts"] >= start).to_numpy()
    if end is not None:
        keep &= (obs["ts"] < end).to_numpy()
    return obs[keep]


@dataclass
class PartHours:
    """A partition's hourly counts (``hourly_counts`` of its rows before the cut) and its sensor ids."""

    wide: pd.DataFrame
    as_is: bool
    ids: np.ndarray
    worker: str | None


def _hours_of(frame: pd.DataFrame, metric: str, until, as_is: bool | None) -> PartHours:
    obs = _before(_observations(frame, metric), None, until)
    decided = hourly_as_is(obs) if as_is is None else as_is
    wide = hourly_counts(obs, metric, as_is=decided)
    ids = np.asarray(frame["sensor_id"].astype(str).unique(), dtype=object)
    return PartHours(wide, decided, ids, _worker())


def _hour_facts(part: PartHours) -> dict:
    wide = part.wide
    return {"as_is": part.as_is, "ids": part.ids, "values": int(wide.notna().sum().sum()),
            "first": wide.index[0] if len(wide) else None, "last": wide.index[-1] if len(wide) else None}


@dataclass
class PartState:
    """A partition's sensors on the fit's grid: their counts, levels, context and candidate points."""

    wide: pd.DataFrame
    hours: SensorHours
    ids: np.ndarray
    lonlat: np.ndarray
    worker: str | None


def _state_of(part: PartHours, full: pd.DatetimeIndex, start: pd.Timestamp, model: GatheringForecaster,
              sensors) -> PartState:
    """The partition's window (the hours ``model`` reads) with its levels and candidate points."""
    wide = part.wide.reindex(full)
    wide = wide[wide.index >= start]
    wide = wide.loc[:, wide.notna().any()]
    ids = wide.columns.to_numpy(dtype=object)
    lonlat = sensor_positions(sensors, ids)
    hours = model.sensor_hours(wide.to_numpy(float), wide.index, lonlat)
    return PartState(wide, hours, ids, lonlat, _worker())


def _candidate_facts(state: PartState) -> dict:
    """The partition's sensors, first and last candidate hours, and its ordinary candidate points as bits."""
    h = state.hours
    mask = np.zeros(h.Y.shape, bool)
    ordinary = ~h.near_event
    mask[h.rows[ordinary], h.cols[ordinary]] = True
    return {"ids": state.ids, "span": h.span(), "bits": np.packbits(mask, axis=1), "worker": state.worker}


@dataclass
class Drawn:
    """A partition's part of the sample: the fit's design rows with their hour and global sensor position."""

    rows: FitRows
    hour: np.ndarray
    column: np.ndarray


def _rows_of(state: PartState, split: Split, day_lags, columns: np.ndarray,
             picks: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> tuple[Drawn, Drawn]:
    """The design rows of the drawn points of this partition (``picks``: hours, local columns) and of
    every event point, to fit and to calibrate; ``columns`` are its sensors' positions among all."""
    h = state.hours
    width = max(1, h.Y.shape[1])
    key = h.rows.astype(np.int64) * width + h.cols
    is_train, is_cal = h.kinds(split)
    out = []
    for (hour, col), kind in zip(picks, (is_train, is_cal)):
        drawn = np.searchsorted(key, hour.astype(np.int64) * width + col)
        index = np.union1d(drawn, np.nonzero(kind & h.near_event)[0])
        out.append(Drawn(h.rows_at(index, day_lags), h.rows[index], columns[h.cols[index]]))
    return out[0], out[1]


@dataclass
class PartModel:
    """A partition's fitted share: its sensors, their positions, weekly profiles and last 29 days of counts."""

    ids: np.ndarray
    lonlat: np.ndarray
    profile: np.ndarray
    history: pd.DataFrame
    worker: str | None


def _model_of(state: PartState, tz: str, history_start: pd.Timestamp) -> PartModel:
    wide = state.wide
    return PartModel(state.ids, state.lonlat, weekly_profile(wide.to_numpy(float), wide.index, tz),
                     wide[wide.index >= history_start].copy(), _worker())  # not a view of the whole window


def _held_by(part) -> tuple[str | None, np.ndarray]:
    return part.worker, part.ids


def scatter_by_sensor(client, observations: pd.DataFrame, metric: str):
    """A history in this process's memory as a Dask dataframe of one block of sensors per worker (sorted
    ids), each sent to the worker ``fit`` deals it to: a worker never receives another block's rows."""
    import dask.dataframe as dd

    from safecity.cluster.history import sensor_blocks

    workers = sorted(client.scheduler_info()["workers"])
    rows = _observations(observations, metric)[["ts", "sensor_id", "value"]]
    blocks = sensor_blocks(rows["sensor_id"].unique(), max(1, len(workers)))
    scattered = [client.scatter(rows[rows["sensor_id"].isin(b)], workers=[workers[i % len(workers)]] if workers
                                else None) for i, b in enumerate(blocks)]
    return dd.from_delayed(scattered, meta=rows.iloc[:0], verify_meta=False)


# --------------------------------------------------------------------------- the whole, here


@dataclass
class ClusterForecaster:
    """A forecaster fitted on a cluster: the global model here, each partition's share on its worker.

    ``model`` is the ``GatheringForecaster`` one process fits, without
    ``profile_`` and ``history_`` (per sensor, on the workers: ``to_model``
    gathers them). ``parts`` are futures of each partition's ``PartModel``,
    ``pin`` where they are; ``workers`` maps a worker to the sensors it holds;
    ``as_is``: whether the rows were read as they are (whole hours, one row per
    sensor and hour) rather than summed per hour.
    """

    model: GatheringForecaster
    parts: list
    pin: list[dict]
    workers: dict[str, list[str]]
    as_is: bool


def _pinned(client, futures) -> list[dict]:
    import distributed

    distributed.wait(futures)
    where = {k: v[0] for k, v in client.who_has(futures).items()}
    return [{"workers": [where[f.key]], "allow_other_workers": False} for f in futures]


def fit(client, history, estimator: GatheringForecaster, *, calendar=None, sensors=None,
        until=None) -> ClusterForecaster:
    """Fit a clone of ``estimator`` on ``history`` (a Dask dataframe: ts, sensor_id, value and optionally
    metric; every sensor's rows in one partition), on its rows before ``until`` (None: all)."""
    from dask import delayed

    model = clone(estimator)
    model._validate_params()
    metric = model.metric
    cut = None if until is None else pd.Timestamp(until).tz_convert("UTC")
    partitions = history.to_delayed()

    # 1. Each partition's hourly counts; the global choice of reading rows as they are or summing them.
    # The partitions are dealt to the workers in turn (where they were read may be one worker).
    workers = sorted(client.scheduler_info()["workers"]) or [None]
    dealt = [workers[i % len(workers)] for i in range(len(partitions))]
    hours = [client.compute(delayed(_hours_of)(p, metric, cut, None), workers=w)
             for p, w in zip(partitions, dealt)]
    pin = _pinned(client, hours)
    facts = client.gather([client.submit(_hour_facts, h, **w) for h, w in zip(hours, pin)])
    every = np.concatenate([f["ids"] for f in facts])
    if len(np.unique(every)) < len(every):
        raise ValueError("history: a sensor's rows are in several partitions (partition it with by_sensor)")
    as_is = all(f["as_is"] for f in facts)
    if not as_is:  # a partition read as it is, where the whole is summed, is read again
        again = [i for i, f in enumerate(facts) if f["as_is"]]
        redone = [client.compute(delayed(_hours_of)(partitions[i], metric, cut, False), workers=dealt[i])
                  for i in again]
        for i, h, w in zip(again, redone, _pinned(client, redone)):
            hours[i], pin[i] = h, w
        facts = client.gather([client.submit(_hour_facts, h, **w) for h, w in zip(hours, pin)])
    if not sum(f["values"] for f in facts):
        raise ValueError(f"observations: no '{metric}' values to learn from")
    first = min(f["first"] for f in facts if f["first"] is not None)
    last = max(f["last"] for f in facts if f["last"] is not None)
    end = last + HOUR
    full = pd.date_range(first, last, freq="h", name="ts").as_unit("ns")
    start = model.window_start(end)
    grid = full[full >= start]

    # 2. Each partition's levels and candidate points on the grid; their bits come here.
    model.start_fit(end, grid, np.array([], dtype=object), calendar, sensors)
    states = [client.submit(_state_of, h, full, start, model, sensors, **w) for h, w in zip(hours, pin)]
    pin = _pinned(client, states)
    del hours
    facts = client.gather([client.submit(_candidate_facts, s, **w) for s, w in zip(states, pin)])
    ids = np.asarray(sorted(np.concatenate([f["ids"] for f in facts]).tolist()), dtype=object)
    model.sensor_ids_ = ids
    model.sensor_lonlat_ = sensor_positions(sensors, ids)
    spans = [f["span"] for f in facts if f["span"] is not None]
    if not spans:
        raise ValueError(NO_LEVEL)
    split = model.split(min(s[0] for s in spans), max(s[1] for s in spans))

    # 3. The draw, as one process makes it; each partition makes its drawn rows.
    columns = [np.searchsorted(ids, f["ids"]) for f in facts]
    picks = _draw(model, split, grid, facts, columns, len(ids))
    drawn = client.gather([client.submit(_rows_of, s, split, model.day_lags_, c, p, **w)
                           for s, c, p, w in zip(states, columns, picks, pin)])
    model.fit_rows(_in_order([d[0] for d in drawn]), _in_order([d[1] for d in drawn]))

    # 4. Each partition keeps its profiles and last weeks of counts.
    parts = [client.submit(_model_of, s, model.tz, model.history_start(), **w) for s, w in zip(states, pin)]
    pin = _pinned(client, parts)
    del states
    held: dict[str, list[str]] = {}
    for worker, part_ids in client.gather([client.submit(_held_by, p, **w) for p, w in zip(parts, pin)]):
        held.setdefault(worker, []).extend(map(str, part_ids))
    return ClusterForecaster(model, parts, pin, held, as_is)


def _draw(model: GatheringForecaster, split: Split, grid: pd.DatetimeIndex, facts: list[dict],
          columns: list[np.ndarray], n_sensors: int) -> list[tuple]:
    """Per partition, the (hours, local columns) of its ordinary points drawn to fit and to calibrate.

    The candidates are counted per hour from the partitions' bits; the draw
    picks positions in the time-major order of all sensors; the hours holding
    a pick are unpacked, a chunk at a time, to find which sensor each is.
    """
    counts = sum(np.bitwise_count(f["bits"]).sum(axis=1, dtype=np.int64) for f in facts)
    cal0 = int(np.searchsorted(grid, split.calibration_start))
    train0 = 0 if split.train_start is None else int(np.searchsorted(grid, split.train_start))
    train0 = min(train0, cal0)
    ranges = ((train0, cal0), (cal0, len(grid)))
    drawn = model.draw(int(counts[train0:cal0].sum()), int(counts[cal0:].sum()))
    out = [[None, None] for _ in facts]
    for k, ((lo, hi), positions) in enumerate(zip(ranges, drawn)):
        before = np.concatenate([[0], np.cumsum(counts[lo:hi])])  # candidates before each hour of the range
        hour = np.empty(len(positions), np.int64)
        column = np.empty(len(positions), np.int64)
        step = max(1, MASK_CHUNK // max(1, n_sensors))
        for a in range(lo, hi, step):
            b = min(hi, a + step)
            first, stop = before[a - lo], before[b - lo]
            mine = np.flatnonzero((positions >= first) & (positions < stop))
            if not len(mine):
                continue
            block = np.zeros((b - a, n_sensors), bool)
            for f, c in zip(facts, columns):
                block[:, c] = np.unpackbits(f["bits"][a:b], axis=1, count=len(c)).astype(bool)
            r, c = np.nonzero(block)
            hour[mine] = a + r[positions[mine] - first]
            column[mine] = c[positions[mine] - first]
        for i, c in enumerate(columns):
            own = np.isin(column, c)
            out[i][k] = (hour[own], np.searchsorted(c, column[own]))
    return [tuple(o) for o in out]


def _in_order(parts: list[Drawn]) -> FitRows:
    """The partitions' rows in one process's order: by hour, then by sensor (sorted ids)."""
    hour = np.concatenate([d.hour for d in parts])
    order = np.lexsort((np.concatenate([d.column for d in parts]), hour))
    rows = [d.rows for d in parts]

    def cat(name):
        return np.concatenate([getattr(r, name) for r in rows])[order]

    X = np.concatenate([r.X for r in rows])[order]
    return FitRows(X, cat("count"), cat("level"), cat("hour"), cat("near_event"), rows[0].names)


def to_model(client, fitted: ClusterForecaster) -> GatheringForecaster:
    """The whole fitted model in this process: the partitions' profiles and last weeks of counts gathered
    (7 kB per sensor), for a city one process can forecast."""
    import copy

    parts = client.gather(fitted.parts)
    model = copy.copy(fitted.model)
    got = np.concatenate([p.ids for p in parts]) if parts else np.array([], object)
    order = np.argsort(got, kind="stable")
    model.profile_ = np.hstack([p.profile for p in parts])[:, order]
    model.history_ = pd.concat([p.history for p in parts], axis=1).iloc[:, order]
    return model


# --------------------------------------------------------------------------- forecasts, per partition


@dataclass
class Recent:
    """A partition's rows of the weeks a batch of forecasts reads, and per origin whether they are read as they are."""

    obs: pd.DataFrame
    as_is: list[bool]


def _recent_of(frame: pd.DataFrame, metric: str, origins: list[pd.Timestamp], lookback_days: int) -> Recent:
    obs = _before(_observations(frame, metric), min(origins) - pd.Timedelta(days=lookback_days + 1), max(origins))
    return Recent(obs, [hourly_as_is(_window(obs, o, lookback_days)) for o in origins])


def _window(obs: pd.DataFrame, origin: pd.Timestamp, days: int) -> pd.DataFrame:
    """The rows ``history_before`` reads for a forecast from ``origin``."""
    return _before(obs, origin - pd.Timedelta(days=days + 1), origin)


def _as_is_of(recent: Recent) -> list[bool]:
    return recent.as_is


def _local_model(model: GatheringForecaster, part: PartModel) -> GatheringForecaster:
    """The global model with a partition's sensors only."""
    import copy

    local = copy.copy(model)
    local.sensor_ids_, local.sensor_lonlat_, local.profile_ = part.ids, part.lonlat, part.profile
    local.history_ = part.history
    return local


def _points_of(model: GatheringForecaster, part: PartModel, recent: Recent, asked: list[pd.DataFrame],
               as_is: list[bool], calendar) -> list[ForecastPoints]:
    """Each forecast's points of this partition's sensors, from its rows before the origin."""
    local = _local_model(model, part)
    out = []
    lookback = WEEK_LAGS[-1] + 1
    for X, read_as_is in zip(asked, as_is):
        origin = pd.DatetimeIndex(pd.to_datetime(X["ts"], utc=True)).min()
        # The counts before the origin, shaped as the whole city's are (``hourly_counts``' choice).
        local.history_ = hourly_counts(_window(recent.obs, origin, lookback), model.metric, as_is=read_as_is)
        out.append(local.forecast_points(X, calendar=calendar))
    return out


def _seen_of(model: GatheringForecaster, points: list[ForecastPoints]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [model.seen_columns(p) for p in points]


def _forecast_of(model: GatheringForecaster, points: list[ForecastPoints], quantiles, empty) -> list[pd.DataFrame]:
    return [model.forecast_at(p, quantiles, e) for p, e in zip(points, empty)]


def predict(client, fitted: ClusterForecaster, history, asked: list[pd.DataFrame], *, quantiles=QUANTILES,
            calendar=None) -> list[pd.DataFrame]:
    """The forecast tables of each ``X`` in ``asked`` (``forecast_hours``), each partition forecasting its
    sensors from its rows of ``history`` before the forecast's origin: ``model.predict(X, observations=...)``
    of one process, in several blocks of sensors.

    ``history`` must be partitioned as the history fitted (the same sensors in
    the same partitions: the fitted history, or a newer one partitioned alike).
    """
    from dask import delayed

    quantiles = check_quantiles(quantiles)
    model = fitted.model
    origins = [pd.DatetimeIndex(pd.to_datetime(X["ts"], utc=True)).min() for X in asked]
    partitions = history.to_delayed()
    if len(partitions) != len(fitted.parts):
        raise ValueError(f"history: {len(partitions)} partitions, the model was fitted on {len(fitted.parts)}")
    lookback = WEEK_LAGS[-1] + 1
    recent = client.compute([delayed(_recent_of)(p, model.metric, origins, lookback) for p in partitions])
    # The rows follow the fitted partition (only its sensors' weeks move, if they were elsewhere).
    flags = client.gather([client.submit(_as_is_of, r, **w) for r, w in zip(recent, fitted.pin)])
    as_is = [all(f[i] for f in flags) for i in range(len(asked))]
    model_future = client.scatter(model, broadcast=True)
    points = [client.submit(_points_of, model_future, p, r, asked, as_is, calendar, **w)
              for p, r, w in zip(fitted.parts, recent, fitted.pin)]
    seen = client.gather([client.submit(_seen_of, model_future, p, **w) for p, w in zip(points, fitted.pin)])
    del recent
    empty = [(~np.logical_or.reduce([s[i][0] for s in seen]), ~np.logical_or.reduce([s[i][1] for s in seen]))
             for i in range(len(asked))]
    tables = client.gather([client.submit(_forecast_of, model_future, p, quantiles, empty, **w)
                            for p, w in zip(points, fitted.pin)])
    out = []
    for i in range(len(asked)):
        parts = [t[i] for t in tables if len(t[i])]
        out.append(pd.concat(parts, ignore_index=True).sort_values(["ts", "sensor_id"], ignore_index=True)
                   if parts else empty_forecast(quantiles))
    return out
