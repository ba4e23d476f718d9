"""The alarm ledger as a tab of the operator's page: the ledger's tables on the live engine.

``LedgerView(engine, tz=...)`` reads the engine's verdicts (and its history's
observations, for the camera-hours) and shows precision per detector, per
camera and per hour of day. ``refresh()`` is called on the page's periodic
callback: it recomputes only when ``engine.version`` moved (a verdict bumps it),
so an idle page costs one integer comparison.
"""
from __future__ import annotations

import pandas as pd
import panel as pn
import param

from safecity.evaluation.ledger import Ledger, alarms_from, build_ledger

#: Columns shown in each table, after the grouping columns.
SHOWN = ["reviewed", "confirmed", "false_alarm", "unsure", "precision", "precision_low",
         "precision_high"]


def _shown(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return df[by + SHOWN].round({"precision": 3, "precision_low": 3, "precision_high": 3})


class LedgerView(param.Parameterized):
    """The ledger's tables on a live engine, recomputed when the engine's state changes."""

    tz = param.String(default="Europe/Paris", doc="The city's time zone, for the hours of day.")
    computed_version = param.Integer(default=-1, doc="The engine version the tables show.")

    def __init__(self, engine, **params):
        super().__init__(**params)
        self.engine = engine
        self.ledger: Ledger | None = None
        table = {"disabled": True, "show_index": False, "sizing_mode": "stretch_width",
                 "height": 260, "layout": "fit_data_table"}
        self.tables = {name: pn.widgets.Tabulator(pd.DataFrame(), **table)
                       for name in ("detector", "camera", "hour", "false_alarms")}
        self.summary = pn.pane.Markdown("", css_classes=["ledger-summary"])
        self.refresh()

    def compute(self) -> Ledger:
        """The ledger of every verdict on the engine, with its history's camera-hours; the share
        reviewed counts the alarms raised since the first reviewed one."""
        store = self.engine.store
        verdicts = self.engine.verdicts()
        start = verdicts["alarm_ts"].min() if len(verdicts) else None
        observations = store.read("observations", start=start, columns=["sensor_id", "ts"])
        alarms = None
        if start is not None:
            events = pd.concat([store.read("events", start=start),
                                self.engine.inbox.read("events", since=start)])  # not yet flushed
            alarms = alarms_from(events.drop_duplicates("event_id"), self.engine.incidents)
            alarms = alarms[alarms["ts"] >= start]  # the share reviewed since reviewing began
        return build_ledger(verdicts, self.tz, observations=observations, alarms=alarms)

    def refresh(self) -> bool:
        """Recompute if the engine changed since the last time; True when it did."""
        version = self.engine.version
        if version == self.computed_version:
            return False
        self.ledger = self.compute()
        self.tables["detector"].value = _shown(self.ledger.by_detector, ["alarm_type", "kind"])
        self.tables["camera"].value = _shown(self.ledger.by_camera, ["sensor_id"])
        self.tables["hour"].value = _shown(self.ledger.by_hour, ["hour"])
        self.tables["false_alarms"].value = self.ledger.false_alarm_rates.round(4)
        o = self.ledger.overall
        if o["reviewed"]:
            share = (f" · {o['share_reviewed']:.0%} of {o['alarms']} alarms reviewed"
                     if "share_reviewed" in o and o["alarms"] else "")
            precision = ("n/a" if pd.isna(o["precision"]) else
                         f"**{o['precision']:.2f}** ({o['precision_low']:.2f}–{o['precision_high']:.2f})")
            self.summary.object = (
                f"**{o['reviewed']}** verdicts: {o['confirmed']} confirmed, {o['false_alarm']} false "
                f"alarms, {o['unsure']} unsure{share}. Precision {precision}, 95% Wilson interval.")
        else:
            self.summary.object = "No verdict yet: confirm or dismiss alarms to fill the ledger."
        self.computed_version = version
        return True

    def layout(self) -> pn.viewable.Viewable:
        return pn.Column(
            "### Alarm ledger", self.summary,
            pn.Tabs(("Per detector", self.tables["detector"]), ("Per camera", self.tables["camera"]),
                    (f"Per hour ({self.tz})", self.tables["hour"]),
                    ("False alarms per camera-hour", self.tables["false_alarms"])),
            css_classes=["alarm-ledger"], sizing_mode="stretch_width")
