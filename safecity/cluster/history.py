"""The usual-level baseline over a Dask dataframe of the history, partitioned by sensor.

A city's history outgrows one machine (20,000 sensors at one-minute bins is 10
billion rows a year), but almost everything ``UsualLevel`` learns is per
sensor: a sensor's levels, noise and scores depend on its own rows, the bin
grid and the calendar only. So the rows are partitioned by sensor (every
sensor's rows in one partition, ``by_sensor`` or ``read_sensor_blocks``), each
partition is turned into a sensors x bins matrix on the worker that holds it,
fitted and scored there, and only small things cross the network:

* the grid (first and last bin, the step: from each partition's distinct
  timestamps), so every partition works on the very grid one process would;
* the thresholds: the calibration replays a seeded sample of the sensors, drawn
  from the sorted ids as one process draws it; each partition replays its
  sampled sensors and sends their calibration-day scores (at most
  ``max_calibration_sensors`` x calibration bins in all), and the thresholds are
  solved once, here, by the same code (``calibration.solve_thresholds``);
* the group anomalies: each partition counts, per bin, its members of each
  group reporting and departing; the counts add up to the city's and zones'
  shares, whose alarm periods are found here; the members' bins of those
  periods only come back to make the group rows;
* the sensor alarm rows, made where the scores are.

What a worker holds, so memory per worker is bounded by the partition size,
not by the number of sensors: while it fits a partition, that partition's rows
(about 20 bytes a row as arrays), its sensors x bins matrix and the fit's
temporaries; after, only the partition's scores of the test bins (``Departures``)
or, without a test period, its |scores| beyond the lowest possible threshold.
The fitted per-sensor arrays (``SENSOR_STATE``, about 121 kB a sensor at
one-minute bins) are dropped once the partition is scored.

The results are identical to one process (``UsualLevel.fit``, ``replay_live``,
``alarm_periods``) on the same data: the same float32 arithmetic on the same
rows of the same grid, and the same row order wherever values are summed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from safecity.baseline.calibration import (
    calibration_sample,
    calibration_scores,
    calibration_start,
    solve_thresholds,
)
from safecity.baseline.grid import Departures, to_matrix
from safecity.baseline.periods import (
    GroupSegment,
    MemberBins,
    group_counts,
    group_members,
    group_period,
    group_segments,
    periods_table,
    sensor_periods,
)
from safecity.baseline.replay import replay_live
from safecity.baseline.usual import UsualLevel

COLUMNS = ("ts", "sensor_id", "value")


# --------------------------------------------------------------------------- the workers' memory

#: glibc's allocator in the workers: Dask sets MALLOC_TRIM_THRESHOLD_ to 64 kB, which also turns off
#: glibc's adaptive mmap threshold, so every large numpy temporary is mapped, page-faulted and unmapped
#: again (measured: a block's fit twice as slow, most of it in the kernel). Freed memory kept for reuse.
WORKER_MALLOC = {"MALLOC_TRIM_THRESHOLD_": 1 << 30, "MALLOC_MMAP_THRESHOLD_": 1 << 30}


def numpy_workers():
    """A ``dask.config.set`` for worker processes started inside it (``local:N``) to use ``WORKER_MALLOC``.

    Workers started elsewhere (``dask worker`` on other machines) take these
    variables from their own environment.
    """
    import dask

    return dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC.items()})


# --------------------------------------------------------------------------- partitioning


#: Up to this many partitions, a task-based shuffle: the peer-to-peer one costs seconds to set up.
TASK_SHUFFLE_PARTITIONS = 64


def by_sensor(history, npartitions: int | None = None):
    """The long history (ts, sensor_id, value) shuffled so that every sensor's rows are in one partition.

    A few partitions are shuffled by tasks, many by Dask's peer-to-peer shuffle
    (its memory stays bounded, its setup costs seconds).
    """
    npartitions = npartitions or history.npartitions
    method = "tasks" if max(npartitions, history.npartitions) <= TASK_SHUFFLE_PARTITIONS else None
    return history.shuffle(on="sensor_id", npartitions=npartitions, shuffle_method=method)


def sensor_blocks(sensor_ids, n_blocks: int) -> list[list[str]]:
    """The sorted sensor ids cut into ``n_blocks`` contiguous blocks of (nearly) equal size."""
    ids = sorted(set(map(str, sensor_ids)))
    return [list(b) for b in np.array_split(np.asarray(ids, dtype=object), n_blocks) if len(b)]


def read_sensor_blocks(path, blocks: list[list[str]]):
    """One partition per block of sensors, read from the Parquet files at ``path`` with a filter on sensor_id.

    Each task reads its own sensors' rows only; files written sorted by sensor
    let Parquet skip the row groups of other sensors.
    """
    import dask.dataframe as dd

    meta = pd.DataFrame({"ts": pd.Series(dtype="datetime64[ns, UTC]"), "sensor_id": pd.Series(dtype=object),
                         "value": pd.Series(dtype=float)})
    return dd.from_map(_read_block, blocks, path=str(path), meta=meta, enforce_metadata=False)


def _read_block(block: list[str], path: str) -> pd.DataFrame:
    """The block's rows; sensor ids as a categorical (one string per sensor, not one per row).

    Only the row groups whose sensor_id statistics overlap the block's ids are
    read (a dataset filter with ``isin`` scans every row group of the file:
    each block would read the whole history, 0.6 s per block of a 4,000-sensor
    week against 0.2 s). Files written sorted by sensor make that a few row
    groups per block; a block whose ids span every row group is scanned.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    wanted = pa.array(sorted(map(str, block)), pa.string())
    lo, hi = (wanted[0].as_py(), wanted[-1].as_py()) if len(wanted) else ("", "")
    tables = []
    for file in ds.dataset(path, format="parquet").files:
        parquet = pq.ParquetFile(file, read_dictionary=["sensor_id"])
        meta = parquet.metadata
        leaves = [meta.schema.column(j).path for j in range(meta.num_columns)]
        if "sensor_id" not in leaves:
            raise ValueError(f"{file}: no sensor_id column (the file has {', '.join(leaves)})")
        column = leaves.index("sensor_id")
        groups = [g for g in range(meta.num_row_groups) if _may_hold(meta.row_group(g).column(column), lo, hi)]
        if len(groups) == meta.num_row_groups:  # no pruning (ids spread over the file): a filtered scan
            tables.append(ds.dataset(file, format=ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(
                dictionary_columns=["sensor_id"]))).to_table(columns=list(COLUMNS),
                                                             filter=ds.field("sensor_id").isin(wanted)))
        elif groups:
            table = parquet.read_row_groups(groups, columns=list(COLUMNS))
            tables.append(table.filter(pc.is_in(table.column("sensor_id"), value_set=wanted)))
    if not tables:
        return pd.DataFrame({"ts": pd.Series(dtype="datetime64[ns, UTC]"),
                             "sensor_id": pd.Series(dtype="category"), "value": pd.Series(dtype=float)})
    return pa.concat_tables(tables).to_pandas()


def _may_hold(column_chunk, lo: str, hi: str) -> bool:
    """Whether a row group's sensor_id chunk may hold ids in [lo, hi] (without statistics: it may)."""
    stats = column_chunk.statistics
    if stats is None or not stats.has_min_max:
        return True
    return not (stats.max < lo or stats.min > hi)


# --------------------------------------------------------------------------- on the workers


@dataclass
class SensorRows:
    """A partition's rows as arrays: time (ns, UTC), the sensor's position in ``ids`` (sorted), the value."""

    t: np.ndarray
    sensor: np.ndarray
    value: np.ndarray
    ids: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> SensorRows:
        ts = pd.to_datetime(frame["ts"], utc=True)
        keep = ts.notna().to_numpy()  # a row with a missing value still makes its sensor known, as to_matrix
        codes, ids = _sorted_codes(frame["sensor_id"], keep)
        t = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")[keep].view(np.int64)
        return cls(t, codes, frame["value"].to_numpy(float)[keep], np.asarray(ids, dtype=object))

    def before(self, cut: int | None, before: bool = True) -> np.ndarray:
        if cut is None:
            return np.ones(len(self.t), bool)
        return self.t < cut if before else self.t >= cut

    def facts(self, cut: int | None) -> dict:
        """Distinct times and sensors before and after ``cut`` (the grid and the sensors of the whole)."""
        out = {"worker": _worker(), "ids": self.ids}
        for name, before in (("train", True), ("test", False)):
            rows = self.before(cut, before)
            out[name] = (_distinct(self.t[rows]),
                         self.ids[np.flatnonzero(np.bincount(self.sensor[rows], minlength=len(self.ids)))])
        return out

    def matrix(self, rows: np.ndarray, index: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
        """(ids, sensors x bins float32) on ``index`` of the rows selected, as ``grid.to_matrix`` makes it.

        Rows of one sensor in one bin are summed, missing values left out (in
        float64, then float32, as ``to_matrix``'s group-by); a bin without a value is NaN.
        """
        t, s, v = self.t[rows], self.sensor[rows], self.value[rows]
        present = np.flatnonzero(np.bincount(s, minlength=len(self.ids)))  # np.unique(s), in one pass
        position = np.zeros(len(self.ids), np.int64)
        position[present] = np.arange(len(present))
        col = position[s]
        step = int((index[1] - index[0]).value) if len(index) > 1 else 1
        t0 = int(index[0].value)
        off = t - t0
        if (off % step).any():
            bad = pd.Timestamp(int(t[np.nonzero(off % step)[0][0]]), tz="UTC")
            raise ValueError(f"observations: timestamp {bad.isoformat()} is not on the "
                             f"{pd.Timedelta(step)} grid starting at {index[0].isoformat()}")
        flat = col * len(index) + off // step
        size = len(present) * len(index)
        missing = np.isnan(v)
        total = np.bincount(flat, weights=np.where(missing, 0.0, v), minlength=size)
        n_values = np.bincount(flat, weights=~missing, minlength=size)
        Y = np.where(n_values == 0, np.nan, total).astype(np.float32).reshape(len(present), -1)
        return self.ids[present], Y


#: Distinct times on whole seconds over at most this many seconds (about 3 years) are found by marking a
#: bitmap, ten times faster than hashing every row; others are hashed.
_BITMAP_SECONDS = 100_000_000


def _distinct(t: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``t`` (ns): ``np.unique`` without sorting millions of rows."""
    if not len(t):
        return t
    lo, second = int(t.min()), 1_000_000_000
    offset = t - lo
    seconds = offset // second
    top = int(seconds.max())
    if top < _BITMAP_SECONDS and np.array_equal(seconds * second, offset):
        seen = np.zeros(top + 1, bool)
        seen[seconds] = True
        return np.flatnonzero(seen).astype(np.int64) * second + lo
    return np.sort(pd.unique(t))


def _sorted_codes(sensor_id: pd.Series, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each kept row's position in the sorted distinct ids, those ids as str): ``factorize(sort=True)``.

    A categorical column (Parquet read with a dictionary) is coded without
    making a string per row.
    """
    if isinstance(sensor_id.dtype, pd.CategoricalDtype) and not sensor_id.isna().any():
        codes = sensor_id.cat.codes.to_numpy()[keep]
        names = np.asarray(sensor_id.cat.categories.astype(str), dtype=object)
        used = np.flatnonzero(np.bincount(codes, minlength=len(names)))
        order = np.argsort(names[used], kind="stable")
        rank = np.full(len(names), -1, np.int32)
        rank[used[order]] = np.arange(len(used), dtype=np.int32)
        return rank[codes], names[used[order]]
    codes, ids = pd.factorize(sensor_id.astype(str).to_numpy()[keep], sort=True)
    return codes.astype(np.int32), np.asarray(ids, dtype=object)


def _worker() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None


@dataclass
class Grid:
    """What every partition must share: the train and test bins, the calibration sample."""

    train: pd.DatetimeIndex
    test: pd.DatetimeIndex | None
    step: pd.Timedelta
    sample_ids: np.ndarray
    calibration_start: int | None


#: The fitted model's per-sensor arrays (about 121 kB a sensor at one-minute bins): dropped once a
#: partition is scored, so that a worker holds its partitions' scores, not their models.
SENSOR_STATE = ("level_", "count_", "streak_", "profile_", "profile_n_", "noise_", "spread_", "spread_n_")


@dataclass
class PartFit:
    """A partition's scores of the test bins, its sampled sensors' calibration scores, what it holds.

    ``model`` has the partition's sensor ids, groups and calendar but not its
    per-sensor arrays (``SENSOR_STATE``), dropped once the test bins are scored.
    Without a test period, ``tail`` holds the |scores| of the whole grid above
    the lowest threshold a calibration can give (``gaussian_threshold``), for
    ``score_summary``; ``max_abs`` the largest.
    """

    model: UsualLevel
    departures: Departures | None
    calibration: tuple[np.ndarray, np.ndarray] | None  # (sensor ids, z)
    worker: str | None
    ids: np.ndarray  # every sensor of the partition
    tail: np.ndarray | None = None
    max_abs: float = float("nan")


def _fit_part(rows: SensorRows, grid: Grid, params: dict, cut: int | None, calendar, sensors,
              mode: str) -> PartFit:
    """Fit the partition's sensors on the shared grid; score the test bins (``mode``: replay, static, none).

    Without a test period (``cut`` None) the whole grid is scored instead.
    """
    ids, Y = rows.matrix(rows.before(cut), grid.train)
    model = UsualLevel(**params).fit_matrix(grid.train, ids, Y, grid.step, calendar=calendar, sensors=sensors,
                                            calibrate_thresholds=False)
    calibration = None
    local = np.nonzero(np.isin(ids, grid.sample_ids))[0]
    if grid.calibration_start is not None and len(local):
        bins = model._bins_for(grid.train)
        calibration = (ids[local], calibration_scores(model, grid.train, Y, bins, local, grid.calibration_start))
    tail, max_abs = None, float("nan")
    if cut is None:
        tail, max_abs = _whole_grid_tail(model, grid, ids, Y)
    del Y
    departures = None
    if grid.test is not None and mode != "none":
        test_ids, T = rows.matrix(rows.before(cut, before=False), grid.test)
        if len(test_ids):
            test = pd.DataFrame(T.T, index=grid.test, columns=test_ids, copy=False)
            departures = model.departures(test) if mode == "static" else replay_live(model, test)
    for name in SENSOR_STATE:
        delattr(model, name)
    return PartFit(model, departures, calibration, _worker(), rows.ids, tail, max_abs)


def _whole_grid_tail(model: UsualLevel, grid: Grid, ids: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, float]:
    """(sorted |scores| of the fitted grid above the lowest possible threshold, the largest |score|)."""
    from safecity.baseline.alarms import gaussian_threshold

    z = np.abs(model.score_samples(pd.DataFrame(Y.T, index=grid.train, columns=ids, copy=False)).to_numpy())
    floor = gaussian_threshold(model.rate, model.slots_per_day_)
    with np.errstate(invalid="ignore"):
        tail = np.sort(z[z > floor])
    finite = z[np.isfinite(z)]
    return tail, float(finite.max()) if len(finite) else float("nan")


def _score_summary(part: PartFit, threshold: float) -> dict:
    """The bench's check figures of a partition: scores of the whole grid (``score_samples``)."""
    if part.tail is None:
        raise ValueError("score_summary: the model was fitted with train_until; it scores the whole history")
    return {"alarm_bins": int(len(part.tail) - np.searchsorted(part.tail, threshold, side="right")),
            "max_abs_score": part.max_abs, "sensors": len(part.ids), "worker": part.worker}


def _facts_of(frame: pd.DataFrame, cut: int | None) -> dict:
    return SensorRows.of(frame).facts(cut)


def _fit_frame(frame: pd.DataFrame, grid: Grid, params: dict, cut: int | None, calendar, sensors,
               mode: str) -> PartFit:
    """``_fit_part`` of a partition: its rows are released when the fit is made."""
    return _fit_part(SensorRows.of(frame), grid, params, cut, calendar, sensors, mode)


def _held_by(part: PartFit) -> tuple[str | None, np.ndarray]:
    return part.worker, part.ids


def _calibration_of(part: PartFit):
    return part.calibration


def _counts_of(part: PartFit, groups: dict[str, list[str]]):
    return {} if part.departures is None else group_counts(part.model, part.departures, groups)


def _members_of(part: PartFit, groups, segments: list[GroupSegment]) -> list[MemberBins] | None:
    return None if part.departures is None else group_members(part.model, part.departures, segments, groups)


def _sensor_rows_of(part: PartFit, threshold: float, claimed) -> list[dict]:
    if part.departures is None:
        return []
    part.model.threshold_ = threshold
    return sensor_periods(part.model, part.departures, claimed)


# --------------------------------------------------------------------------- the whole, here


@dataclass
class ClusterFit:
    """A baseline fitted on a cluster: the thresholds and sensors (``model``) here, the rest on the workers.

    ``model`` is a ``UsualLevel`` without per-sensor arrays: its sensor ids,
    groups, calendar and thresholds are those one process would have.
    ``parts`` are futures of each partition's ``PartFit``; ``workers`` maps a
    worker's address to the sensors it holds.
    """

    model: UsualLevel
    parts: list
    grid: Grid
    workers: dict[str, list[str]]
    pin: list[dict]


def fit(client, history, estimator: UsualLevel, *, train_until=None, calendar=None, sensors=None,
        score: str = "replay") -> ClusterFit:
    """Fit ``estimator``'s parameters on ``history`` (a Dask dataframe, every sensor's rows in one partition).

    With ``train_until`` the bins before it are learnt and those after it are
    scored (``score``: "replay" as the live model would, learning each day
    after scoring it; "static" with the fitted model; "none").
    """
    import distributed

    params = estimator.get_params()
    cut = None if train_until is None else pd.Timestamp(train_until).tz_convert("UTC").value
    # Each partition is computed twice, once for the grid and once to fit on it, so that a worker holds
    # one partition's rows at a time (a shuffled history the caller can ``persist`` first instead).
    from dask import delayed

    partitions = history.to_delayed()
    facts = client.gather(client.compute([delayed(_facts_of)(p, cut) for p in partitions]))
    every = np.concatenate([f["ids"] for f in facts])
    if len(np.unique(every)) < len(every):
        raise ValueError("history: a sensor's rows are in several partitions (partition it with by_sensor)")
    train_ids = np.asarray(sorted(np.concatenate([f["train"][1] for f in facts]).tolist()), dtype=object)
    test_ids = np.asarray(sorted(np.concatenate([f["test"][1] for f in facts]).tolist()), dtype=object)
    train_t = np.unique(np.concatenate([f["train"][0] for f in facts]))
    if not len(train_t):
        raise ValueError("observations: no rows")
    index, step = _grid(train_t, None)
    test_index = None
    if cut is not None:
        test_t = np.unique(np.concatenate([f["test"][0] for f in facts]))
        test_index = _grid(test_t, step)[0] if len(test_t) else None
    model = UsualLevel(**params)
    model._validate_params()
    model._setup(index, train_ids, step, calendar, sensors)
    bins = model._bins_for(index)
    model.day_types_ = tuple(int(t) for t in np.unique(bins.day_type))
    start = calibration_start(model, bins)
    sample_ids = train_ids[calibration_sample(model.random_state, len(train_ids), model.max_calibration_sensors)] \
        if start is not None else np.array([], dtype=object)
    grid = Grid(index, test_index, step, sample_ids, start)
    mode = score if cut is not None else "none"
    parts = client.compute([delayed(_fit_frame)(p, grid, params, cut, calendar, sensors, mode)
                            for p in partitions])
    distributed.wait(parts)
    where = {k: v[0] for k, v in client.who_has(parts).items()}
    pin = [{"workers": [where[p.key]], "allow_other_workers": False} for p in parts]
    calibration = [c for c in client.gather([client.submit(_calibration_of, p, **w) for p, w in zip(parts, pin)])
                   if c is not None]
    if start is None:
        solve_thresholds(model, None, sample_ids)
    else:
        got = np.concatenate([ids for ids, _ in calibration]) if calibration else np.array([], object)
        order = np.argsort(got, kind="stable")  # the sample's order (sorted ids), as one process replays it
        z = np.concatenate([z for _, z in calibration])[order] if calibration else np.zeros((0, 0), np.float32)
        solve_thresholds(model, z, got[order])
    if mode == "replay" and model.update_every is not None:
        # The live model learns the test sensors it did not know (partial_fit), in the test's order.
        new = [s for s in test_ids if s not in set(train_ids)]
        if new:
            model.sensor_ids_ = np.r_[model.sensor_ids_, np.asarray(new, dtype=object)]
            model._set_sensors(None)
        model.calendar_, model.calendar_start_, model.calendar_end_ = model._calendar_over(test_index)
    held: dict[str, list[str]] = {}
    for worker, ids in client.gather([client.submit(_held_by, p, **w) for p, w in zip(parts, pin)]):
        held.setdefault(worker, []).extend(map(str, ids))
    return ClusterFit(model, parts, grid, held, pin)


def _grid(t: np.ndarray, step: pd.Timedelta | None) -> tuple[pd.DatetimeIndex, pd.Timedelta]:
    """The full bin grid over distinct times ``t`` (ns), checked and stepped as ``grid.to_matrix`` does."""
    frame = pd.DataFrame({"_": np.zeros(len(t), np.float32)}, index=pd.DatetimeIndex(t.astype("datetime64[ns]"),
                                                                                     tz="UTC"))
    index, _, _, step = to_matrix(frame, None, step)
    return index, step


def alarm_periods(client, fitted: ClusterFit) -> pd.DataFrame:
    """The periods table of the test bins, as ``baseline.periods.alarm_periods`` gives it in one process."""
    model, parts = fitted.model, fitted.parts
    if fitted.grid.test is None:
        from safecity.baseline.periods import empty_periods

        return empty_periods()
    groups = model._all_groups()
    pin = fitted.pin
    counts = client.gather([client.submit(_counts_of, p, groups, **w) for p, w in zip(parts, pin)])
    total = {}
    for c in counts:
        for name, v in c.items():
            total[name] = total[name] + v if name in total else v
    index = fitted.grid.test
    segments = group_segments(model, index, total)
    day_type = model._bins_for(index).day_type
    out, claimed = [], []
    if segments:
        members = client.gather([client.submit(_members_of, p, groups, segments, **w)
                                 for p, w in zip(parts, pin)])
        members = [m for m in members if m is not None]
        for i, seg in enumerate(segments):
            m = MemberBins.concat([part[i] for part in members], groups[seg.group])
            row, attached = group_period(model, seg, m, index, day_type)
            out.append(row)
            claimed += [(s, seg.first, seg.last, seg.direction) for s in attached]
    sensor_rows = [r for rows in client.gather([client.submit(_sensor_rows_of, p, model.threshold_, claimed, **w)
                                                for p, w in zip(parts, pin)]) for r in rows]
    # One process lists high alarms before low ones, each by sensor (sorted ids), then time.
    sensor_rows.sort(key=lambda r: (r["direction"] != "high", r["sensor_id"]))
    return periods_table(out + sensor_rows)


def score_summary(client, fitted: ClusterFit) -> dict:
    """Scores of the whole history (``score_samples``) on the workers: alarm bins and the largest |score|."""
    got = client.gather([client.submit(_score_summary, p, fitted.model.threshold_, **w)
                         for p, w in zip(fitted.parts, fitted.pin)])
    return {"alarm_bins": sum(g["alarm_bins"] for g in got),
            "max_abs_score": max(g["max_abs_score"] for g in got), "parts": got}
