"""Continuous analytics of a running engine: anomalies as bins close, the forecast kept fresh.

``LiveAnalytics`` hangs on a ``LiveEngine``: every batch of observations the engine
accepts is queued (``on_rows``), and every engine tick (``tick``) scores the bins
that have closed with the usual-level model (``baseline.live.LiveScorer``) and runs
what the forecast schedule says is due (``forecast.live.ForecastSchedule``: a refit
in a background thread nightly, a refresh hourly). What they raise (``anomaly`` and
``gathering_forecast`` events) goes back into the engine through ``ingest``, as a
source's events would, so it is stored, fused into incidents and shown the same way.

Models start once the store holds enough history (``min_days`` of observations for
the usual level; the forecaster says itself when it cannot fit yet, and the page
shows the time-of-week profile, labelled as such, until its first forecast). The
fits run in background threads: a tick never waits for one.
"""
from __future__ import annotations

import threading

import pandas as pd

from safecity.baseline.live import LiveScorer
from safecity.data.inbox import json_rows
from safecity.forecast.live import Due, ForecastSchedule


class LiveAnalytics:
    """The usual-level scorer and the forecast schedule of one engine."""

    def __init__(self, engine, min_days: float = 3.0, history_days: float = 28.0,
                 capacity=None, usual_params: dict | None = None, forecast_min_days: float = 8.0,
                 check_every_s: float = 60.0):
        self.engine = engine
        self.min_days = min_days
        self.history_days = history_days
        self.usual_params = {"tz": engine.city.config.tz, "rate": 0.1, **(usual_params or {})}
        self.scorer: LiveScorer | None = None
        sensors = engine.city.sensors if len(engine.city.sensors) else None
        self.forecasts = ForecastSchedule(sensors=sensors, capacity=capacity) if sensors is not None \
            else None
        self.forecast_min_days = forecast_min_days
        self.check_every_s = check_every_s  # how often (wall seconds) to look at the history's span
        self.last_error: str | None = None
        self._span: tuple[float, pd.Timedelta] | None = None
        self._queue: list[pd.DataFrame] = []
        self._lock = threading.Lock()
        self._fitting = False
        engine.analytics.append(self.on_rows)

    def on_rows(self, engine, table: str, rows: pd.DataFrame) -> None:
        if table == "observations" and len(rows):
            with self._lock:
                self._queue.append(rows)

    def history(self, now: pd.Timestamp) -> pd.DataFrame:
        """The observations of the last ``history_days`` before ``now`` (history and inbox)."""
        start = now - pd.Timedelta(days=self.history_days)
        store, inbox = self.engine.store, self.engine.inbox
        both = pd.concat([store.read("observations", start=start),
                          inbox.read("observations", since=start, pending_only=True)])
        return both[both["ts"] <= now].drop_duplicates(["ts", "sensor_id", "metric"])

    def tick(self, now) -> None:
        """Score what closed, start a fit or a forecast when due, post what they raised."""
        now = pd.Timestamp(now, tz="UTC") if pd.Timestamp(now).tz is None else pd.Timestamp(now)
        with self._lock:
            rows, self._queue = self._queue, []
        if self.scorer is None:
            self._maybe_fit(now)
        else:
            new = pd.concat(rows, ignore_index=True) if rows else None
            self._post(self.scorer.add(new if new is not None else _no_rows(), now))
        if self.forecasts is not None:
            if rows:
                self.forecasts.observe(pd.concat(rows, ignore_index=True))
            due = self.forecasts.due(now)
            if due is Due.REFIT and self.forecasts.model is None and \
                    self.span(now) < pd.Timedelta(days=self.forecast_min_days):
                due = Due.NOTHING  # not enough history for a first fit yet
            if due is Due.REFIT:
                self.forecasts.start_refit(lambda: (self.history(now), self.engine.city.calendar), now)
            elif due is Due.REFRESH:
                try:
                    _, events = self.forecasts.refresh(now)
                    self._post(events)
                except Exception as exc:  # the page keeps the previous forecast
                    self.last_error = f"forecast refresh: {exc}"

    def span(self, now: pd.Timestamp) -> pd.Timedelta:
        """How much observation history there is (looked at once per ``check_every_s``)."""
        import time

        if self._span is None or time.monotonic() - self._span[0] >= self.check_every_s:
            ts = self.history(now)["ts"]
            self._span = (time.monotonic(), ts.max() - ts.min() if len(ts) else pd.Timedelta(0))
        return self._span[1]

    def _maybe_fit(self, now: pd.Timestamp) -> None:
        if self._fitting or self.span(now) < pd.Timedelta(days=self.min_days):
            return
        history = self.history(now)
        self._fitting = True

        def fit() -> None:
            try:
                sensors = self.engine.city.sensors if len(self.engine.city.sensors) else None
                scorer = LiveScorer.from_history(history, now, calendar=self.engine.city.calendar,
                                                 sensors=sensors, **self.usual_params)
                scorer.remember(self.engine.inbox.read("events", since=now - pd.Timedelta(days=2)))
                self.scorer = scorer
            except Exception as exc:  # reported in health; tried again at a later tick
                self.last_error = f"usual level fit: {exc}"
            finally:
                self._fitting = False

        threading.Thread(target=fit, name="usual-level-fit", daemon=True).start()

    def _post(self, events: pd.DataFrame) -> None:
        if events is not None and len(events):
            self.engine.ingest("events", json_rows(events), source="analytics")

    def status(self) -> dict:
        return {"usual_level": "scoring" if self.scorer is not None else
                ("fitting" if self._fitting else "waiting for history"),
                "scored_bins": self.scorer.scored_bins if self.scorer is not None else 0,
                "forecast_issued": None if self.forecasts is None or self.forecasts.issued_at is None
                else self.forecasts.issued_at.isoformat(),
                "error": self.last_error}


def _no_rows() -> pd.DataFrame:
    from safecity.data.schema import empty

    return empty("observations")
