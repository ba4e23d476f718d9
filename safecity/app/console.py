"""The operator's console: the city on one screen, around the incident an operator works on.

The map in the centre (zones, incidents, units, the cameras' fields of view, and
the selected incident's recommended routes), the incident queue on the left, the
selected incident's evidence and actions on the right, the cameras and the
server's health at the bottom. ``Console`` is one browser session's state; it
reads the process's one engine (``safecity.app.engine.get_engine``), never runs it.

What every session shows of the engine at one version (the queue, the markers,
an incident's evidence and routes) is read and rendered once and shared
(``functools.lru_cache`` keyed by the engine's version): twenty operators cost
the server about what one does. The map's layers update through
``hv.streams.Pipe``, so the zoom an operator chose stays.
"""
from __future__ import annotations

import functools
import html
import time
import json
import threading
from types import SimpleNamespace

import holoviews as hv
import pandas as pd
import panel as pn
import param

from safecity.app import access, views
from safecity.app.camera_wall import CameraWallView, Wall, data_lag, tile_html
from safecity.app.dashboard import _positions_at, _table_html, clock_name
from safecity.data.schema import FALSE_ALARM_REASONS
from safecity.incidents.review import ACTIVE_STATUSES, CLOSE_OUTCOMES

#: Incidents the queue shows: the newest, most urgent first (a live city's queue never ends).
QUEUE_SHOWN = 200
#: Priorities that stand out until an operator acknowledges them.
URGENT = (1, 2)
#: Recommended routes drawn for the selected incident.
ROUTES_SHOWN = 3
#: The page's title; the count of unacknowledged urgent incidents goes before it.
TITLE = "safecity · operations"
#: Queue rows of unacknowledged urgent incidents.
URGENT_STYLE = "background-color: #ffd6d6; font-weight: bold"
QUEUE_COLUMNS = ["ref", "priority", "kind", "place", "age", "sources", "status", "t"]
#: The queue's order on screen (most urgent, then newest), sorted in the browser: the table's
#: own rows keep their places, so a row clicked while new incidents arrive is the row chosen.
#: Wall seconds between updates of the queue's ages (see ``Console._minute``).
AGE_REFRESH_S = 20.0
QUEUE_ORDER = [{"field": "priority", "dir": "asc"}, {"field": "t", "dir": "desc"}]


# =========================================================================== shared reads


def incident_places(incidents: pd.DataFrame, zones: pd.DataFrame) -> pd.Series:
    """Each incident's zone name (its point inside the zone's polygon), by incident id.

    An operator reads places, not coordinates; an incident outside every zone, or
    without a position, is "outside the zones" / "no position".
    """
    import shapely

    names = pd.Series("outside the zones", index=incidents["incident_id"].to_numpy(), dtype=object)
    has = incidents["lon"].notna() & incidents["lat"].notna()
    names[~has.to_numpy()] = "no position"
    if not has.any() or zones.empty:
        return names
    geoms = [shapely.wkt.loads(g) if isinstance(g, str) else g for g in zones["geometry"]]
    points = shapely.points(incidents.loc[has, "lon"].to_numpy(float),
                            incidents.loc[has, "lat"].to_numpy(float))
    ids = incidents.loc[has, "incident_id"].to_numpy()
    label = zones["name"] if "name" in zones else zones["zone_id"]
    for geom, name in zip(geoms, label.astype(str)):
        inside = shapely.contains(geom, points)
        names[ids[inside]] = name
    return names


def unacknowledged_urgent(queue: pd.DataFrame) -> pd.Series:
    """Which incidents stand out: priority 1 or 2, still open (nobody acknowledged them)."""
    return queue["priority"].isin(URGENT) & (queue["status"] == "open")


def page_title(urgent: int) -> str:
    """The browser tab's title: ``(3) safecity · operations`` while 3 urgent incidents wait."""
    return f"({urgent}) {TITLE}" if urgent else TITLE


def _sources(event_ids: str) -> int:
    try:
        return len(json.loads(event_ids))
    except (TypeError, ValueError):
        return 0


@functools.lru_cache(maxsize=8)
def _queue_at(engine, version: int) -> SimpleNamespace:
    """The queue at one version of the engine, shared by every session (ages aside)."""
    queue = engine.incident_queue()  # most urgent first, then newest
    shown = queue[queue.index.isin(queue["ts"].nlargest(QUEUE_SHOWN).index)].reset_index(drop=True)
    places = incident_places(shown, engine.city.zones)
    table = pd.DataFrame({
        "ref": shown["incident_id"].astype(str),
        "priority": shown["priority"].astype(int),
        "kind": shown["kind"].astype(str),
        "place": shown["incident_id"].map(places).astype(str),
        "ts": shown["ts"],
        "t": shown["ts"].astype("int64") // 10**9,  # seconds, for the browser's sorting
        "sources": shown["event_ids"].map(_sources).astype(int),
        "status": shown["status"].astype(str),
    })
    urgent = unacknowledged_urgent(shown)
    return SimpleNamespace(incidents=shown, table=table, urgent=urgent.to_numpy(),
                           n_urgent=int(urgent.sum()), more=len(queue) - len(shown))


@functools.lru_cache(maxsize=16)
def _queue_table(engine, version: int, minute: pd.Timestamp) -> pd.DataFrame:
    """The queue's rows as shown, with ages; recomputed when the engine changes or a minute passes."""
    shared = _queue_at(engine, version)
    now = minute.tz_localize("UTC") if minute.tz is None else minute  # the ages' clock
    table = shared.table.assign(age=[views.age_text(ts, now) for ts in shared.table["ts"]])
    return table[QUEUE_COLUMNS]


@functools.lru_cache(maxsize=8)
def _incident_points(engine, version: int, minute: pd.Timestamp) -> pd.DataFrame:
    """The active incidents the map marks."""
    inc = _queue_at(engine, version).incidents
    return inc[inc["status"].isin(ACTIVE_STATUSES)].dropna(subset=["lon", "lat"]).reset_index(drop=True)


@functools.lru_cache(maxsize=64)
def _incident_at(engine, version: int, incident_id: str) -> SimpleNamespace:
    """One incident's row, evidence, recommended units and routes, shared by sessions."""
    inc = engine.incident_queue()
    row = inc[inc["incident_id"] == incident_id]
    if row.empty:
        raise KeyError(f"unknown incident '{incident_id}'")
    row = row.iloc[0]
    evidence = engine.incident_events(incident_id)
    if row["status"] in ACTIVE_STATUSES:
        recommended = engine.recommended(incident_id)
        routes = engine.routes(incident_id, top=ROUTES_SHOWN)
    else:
        recommended = engine.unit_status().iloc[:0].assign(travel_time_s=[], distance_m=[])
        recommended.attrs["reason"] = f"the incident is {row['status']}"
        routes = pd.DataFrame(columns=["unit_id", "kind", "travel_time_s", "distance_m", "path",
                                       "eta"])
    return SimpleNamespace(row=row, evidence=evidence, recommended=recommended, routes=routes)


# =========================================================================== rendering


def _local(ts, tz: str, now=None) -> str:
    """``ts`` on the city's clock, to the second (with its date when not ``now``'s day)."""
    return views.local_time(ts, tz, now=now) if ts is not None and not pd.isna(ts) else ""


def summary_html(row: pd.Series, place: str, tz: str, now: pd.Timestamp) -> str:
    """The incident in plain words, every field escaped: what, where, when, how sure."""
    what = html.escape(str(row["kind"]).replace("_", " "))
    words = (f"<b>Priority {int(row['priority'])}</b> · {what} in <b>{html.escape(place)}</b>, "
             f"{html.escape(_local(row['ts'], tz, now))} ({html.escape(views.age_text(row['ts'], now))}), "
             f"{_sources(row['event_ids'])} source(s), confidence {float(row['confidence']):.0%}, "
             f"status <b>{html.escape(str(row['status']))}</b>.")
    return (f'<article class="incident selected-incident" data-incident="{html.escape(str(row["incident_id"]))}"'
            f' data-priority="{int(row["priority"])}" data-status="{html.escape(str(row["status"]))}">'
            f'<p class="incident-summary">{words}</p>'
            f'<p class="incident-text">{html.escape(str(row["summary"]))}</p></article>')


def event_text(event: pd.Series) -> str:
    """What an event says: a police log's or a call's text, else its details, as plain text."""
    details = event.get("details")
    try:
        parsed = json.loads(details) if isinstance(details, str) else {}
    except ValueError:
        parsed = {}
    if isinstance(parsed, dict) and "text" in parsed:
        return str(parsed["text"])
    return "" if parsed in ({}, None) else json.dumps(parsed)[:200]


def evidence_html(events: pd.DataFrame, tz: str, wall: Wall | None, now=None) -> str:
    """Each event: source, local time, score, its text escaped; a camera's blurred tile.

    Tiles come from the camera wall or feed (people blurred, never a raw frame).
    """
    if events.empty:
        return "<p>No evidence stored.</p>"
    cameras = set(wall.camera_ids) if wall is not None else set()
    status = wall.health().set_index("camera_id")["status"] if cameras else pd.Series(dtype=str)
    items = []
    for _, e in events.iterrows():
        score = "" if pd.isna(e.get("score")) else f" · score {float(e['score']):.2f}"
        sensor = e.get("sensor_id")
        sensor = "" if sensor is None or pd.isna(sensor) else str(sensor)
        head = (f"{html.escape(str(e['source']))} · {html.escape(str(e['kind']))}"
                f"{' · ' + html.escape(sensor) if sensor else ''} · "
                f"{html.escape(_local(e['ts'], tz, now))}{score}")
        text = event_text(e)
        tile = ""
        if sensor in cameras:
            frames, jpeg = wall.tile(sensor)
            tile = tile_html(sensor, frames, jpeg, str(status.get(sensor, "offline")))
        items.append(f'<li class="evidence-event" data-event="{html.escape(str(e["event_id"]))}">'
                     f"<div>{head}</div>"
                     + (f'<pre class="event-text">{html.escape(text)}</pre>' if text else "")
                     + tile + "</li>")
    return f'<ul class="evidence">{"".join(items)}</ul>'


def recommended_html(recommended: pd.DataFrame, tz: str, now: pd.Timestamp) -> str:
    """The units proposed (fastest first) with their travel time and ETA on the city's clock."""
    if recommended.empty:
        return f'<p class="no-unit">{html.escape(recommended.attrs.get("reason", "no available unit"))}</p>'
    shown = recommended[[c for c in ("unit_id", "kind", "travel_time_s", "distance_m")
                         if c in recommended]].copy()
    if "travel_time_s" in shown:
        shown["eta"] = [_local(now + pd.Timedelta(seconds=float(s)), tz, now) if pd.notna(s) else ""
                        for s in shown["travel_time_s"]]
        shown["travel_time_s"] = shown["travel_time_s"].map(
            lambda s: "" if pd.isna(s) else f"{s / 60:.1f} min")
    if "distance_m" in shown:
        shown["distance_m"] = shown["distance_m"].map(lambda m: "" if pd.isna(m) else f"{m / 1000:.1f} km")
    shown = shown.rename(columns={"travel_time_s": "travel", "distance_m": "distance"})
    return _table_html(shown, "recommended")


def status_bar_html(engine, sessions: int) -> str:
    """The engine's clock and updates, its data lag, its sources' last posts, the sessions."""
    health = engine.health()
    tz = engine.city.config.tz
    lags = []
    for table in ("events", "observations"):
        lag = data_lag(engine, table)
        lags.append(f"{table} {'none yet' if lag is None else f'{lag.total_seconds():.0f} s'}")
    now = pd.Timestamp.now(tz="UTC")
    seen = ", ".join(f"{html.escape(s)} {html.escape(views.age_text(pd.Timestamp(t), now))}"
                     for s, t in health["sources"].items()) or "no source yet"
    return (f'<span class="live-counter">updates: {engine.tick}</span> · '
            f'{clock_name(engine)} {html.escape(_local(pd.Timestamp(engine.now, tz="UTC"), tz, engine.now))} '
            f'({html.escape(tz)}) · <span class="data-lag-bar">lag: {html.escape(", ".join(lags))}</span>'
            f' · queue {health["queue_depth"]} · sources: {seen} · '
            f'<span class="sessions" data-sessions="{sessions}">{sessions} session(s)</span>')


# =========================================================================== sessions

_SESSIONS: set[int] = set()
_SESSIONS_LOCK = threading.Lock()


def _session_started(key: int) -> int:
    with _SESSIONS_LOCK:
        _SESSIONS.add(key)
        return len(_SESSIONS)


def _session_ended(key: int) -> None:
    with _SESSIONS_LOCK:
        _SESSIONS.discard(key)


def live_sessions() -> int:
    with _SESSIONS_LOCK:
        return len(_SESSIONS)


# =========================================================================== the console


class Console(param.Parameterized):
    """One browser session's console of the shared engine.

    ``refresh`` (every second, and at once when the engine changes: see
    ``dashboard.follow_engine``) copies what changed into the widgets; the
    buttons ask the engine to dispatch, acknowledge, close, or record a verdict,
    for a role that may dispatch (``access.can_dispatch``).
    """

    selected = param.String(default=None, allow_None=True, doc="The incident the operator works on.")
    unit = param.Selector(default=None, objects=[], doc="The unit to send.")
    outcome = param.Selector(default=CLOSE_OUTCOMES[0], objects=list(CLOSE_OUTCOMES),
                             doc="How the incident is closed.")
    alarm = param.Selector(default=None, objects=[], doc="What the verdict is about: the incident "
                                                        "or one of its events.")
    reason = param.Selector(default=FALSE_ALARM_REASONS[0], objects=list(FALSE_ALARM_REASONS),
                            doc="Why it is a false alarm.")
    actor = param.String(default="operator", doc="Who acts (written to the audit log).")
    role = param.String(default=None, allow_None=True, constant=True,
                        doc="The session's role (safecity.app.access); only an operator may act.")

    def __init__(self, engine, wall: Wall | None = None, **params):
        params.setdefault("role", access.current_role())
        params.setdefault("actor", access.current_user() or "operator")
        super().__init__(**params)
        self.engine = engine
        self.wall = wall
        self.tz = engine.city.config.tz
        self._doc = pn.state.curdoc
        self._session_key = id(self)
        self._sessions = _session_started(self._session_key)
        if self._doc is not None and self._doc.session_context is not None:
            key = self._session_key
            pn.state.on_session_destroyed(lambda _ctx, key=key: _session_ended(key))
        self._seen = None  # (version, minute) last shown
        self._age_clock, self._age_wall = None, 0.0  # see _minute
        self._shown_urgent = None  # the queue's highlighted rows
        self._shown_units = None
        self._shown_incidents = None
        self._shown_detail = None  # (version, incident) of the detail panel
        self._unit_for = None
        self.may_act = access.can_dispatch(self.role)

        # ---- queue (left)
        self.queue = pn.widgets.Tabulator(
            pd.DataFrame(columns=QUEUE_COLUMNS), show_index=False, disabled=True, selectable=1,
            sortable=True, layout="fit_columns", sizing_mode="stretch_both",
            pagination=None, css_classes=["incident-queue"], name="incident-queue",
            sorters=QUEUE_ORDER, hidden_columns=["t"],
            widths={"ref": 150, "priority": 45, "kind": 95, "place": 115, "age": 105, "sources": 50,
                    "status": 100},
            titles={"priority": "P", "sources": "src"},
            header_filters={c: {"type": "input", "func": "like", "placeholder": "filter"}
                            for c in ("ref", "kind", "place", "status")})
        # a row clicked selects it (Tabulator maps the row through sorting and filters)
        self.queue.param.watch(self._chosen, "selection")
        self.queue_note = pn.pane.HTML("", css_classes=["queue-note"], margin=(0, 5))
        # ---- map (centre)
        self.units_pipe = hv.streams.Pipe(data=self._units())
        self.incidents_pipe = hv.streams.Pipe(data=self._incidents())
        self.routes_pipe = hv.streams.Pipe(data=self._routes(None))
        self.map = pn.pane.HoloViews(self.plot(), sizing_mode="stretch_both",
                                     css_classes=["console-map"], min_height=400)
        # ---- incident (right)
        self.summary = pn.pane.HTML("<p>Choose an incident in the queue.</p>",
                                    css_classes=["incident-detail"], sizing_mode="stretch_width")
        self.evidence = pn.pane.HTML("", css_classes=["incident-evidence"], sizing_mode="stretch_width",
                                     max_height=300, styles={"overflow-y": "auto"})
        self.recommendation = pn.pane.HTML("", css_classes=["recommended-units"],
                                           sizing_mode="stretch_width")
        self.message = pn.pane.HTML("", css_classes=["dispatch-message"], sizing_mode="stretch_width")
        self.buttons = {
            "dispatch": pn.widgets.Button(name="Dispatch", button_type="primary"),
            "acknowledge": pn.widgets.Button(name="Acknowledge", button_type="warning"),
            "close": pn.widgets.Button(name="Close", button_type="default"),
            "confirmed": pn.widgets.Button(name="Confirm", button_type="success"),
            "false_alarm": pn.widgets.Button(name="False alarm", button_type="danger"),
            "unsure": pn.widgets.Button(name="Unsure", button_type="default"),
        }
        self.buttons["dispatch"].on_click(lambda _: self.dispatch())
        self.buttons["acknowledge"].on_click(lambda _: self.acknowledge())
        self.buttons["close"].on_click(lambda _: self.close())
        for verdict in ("confirmed", "false_alarm", "unsure"):
            self.buttons[verdict].on_click(lambda _, v=verdict: self.judge(v))
        for b in self.buttons.values():
            b.disabled = True
        if not self.may_act:  # say why, rather than leave grey buttons
            self.message.object = (f'<p class="role-note">'
                                   f'{html.escape(access.session_note(self.role, "dispatch"))}</p>')
        # ---- bottom
        # Bokeh changes its document's title but not the browser's when Panel serves the page:
        # a hidden widget carries it, and a browser-side callback sets the tab's title
        self.title_sync = pn.widgets.TextInput(value=TITLE, visible=False)
        self.title_sync.jscallback(value="document.title = cb_obj.value")
        self.status_bar = pn.pane.HTML("", css_classes=["status-bar", "live-tick"],
                                       sizing_mode="stretch_width", name="live-tick")
        self.refresh()

    # ------------------------------------------------------------------ reading the engine
    def _minute(self) -> pd.Timestamp:
        """The minute ages are counted to: the engine's, moved on at most every ``AGE_REFRESH_S``.

        Each change of an age redraws the whole queue in the browser (Tabulator re-sends
        sorted or filtered data), and a redraw under the operator's pointer loses the
        click; a replay's clock passes a minute every wall second.
        """
        now = pd.Timestamp(self.engine.now).floor("min")
        wall = time.monotonic()
        if self._age_clock is None or (now != self._age_clock
                                       and wall - self._age_wall >= AGE_REFRESH_S):
            self._age_clock, self._age_wall = now, wall
        return self._age_clock

    def _units(self) -> pd.DataFrame:
        return _positions_at(self.engine, self.engine.version, False)

    def _incidents(self) -> pd.DataFrame:
        return _incident_points(self.engine, self.engine.version, self._minute())

    def _routes(self, incident_id: str | None) -> pd.DataFrame:
        if incident_id is None:
            return pd.DataFrame(columns=["unit_id", "kind", "travel_time_s", "distance_m", "path", "eta"])
        try:
            return _incident_at(self.engine, self.engine.version, incident_id).routes
        except KeyError:
            return self._routes(None)

    def refresh(self) -> None:
        e = self.engine
        self.status_bar.object = status_bar_html(e, live_sessions())
        key = (e.version, self._minute())
        self._set_title(_queue_at(e, e.version).n_urgent)  # servable() may have reset it
        if key == self._seen:
            return
        version_changed = self._seen is None or self._seen[0] != e.version
        self._seen = key
        shared = _queue_at(e, e.version)
        table = _queue_table(e, e.version, key[1])
        self._show_queue(table, shared.urgent)
        self.queue_note.object = (f'<p class="queue-count" data-urgent="{shared.n_urgent}">'
                                  f"{len(table)} incidents, <b>{shared.n_urgent}</b> urgent not "
                                  f"acknowledged" + (f", {shared.more} older not shown" if shared.more
                                                     else "") + "</p>")
        units = self._units()
        if units is not self._shown_units:
            self._shown_units = units
            self.units_pipe.send(units)
        incidents = self._incidents()
        if incidents is not self._shown_incidents:
            self._shown_incidents = incidents
            self.incidents_pipe.send(incidents)
        if self.selected is None:  # the most urgent open incident, until the operator chooses
            active = shared.incidents[shared.incidents["status"].isin(ACTIVE_STATUSES)]
            if len(active):
                self.selected = str(active["incident_id"].iloc[0])
        if version_changed or self.selected is not None:
            self._show_incident()
        self._mark_selected()

    def _mark_selected(self) -> None:
        rows = list(self.queue.value.index[self.queue.value["ref"] == self.selected])
        if self.queue.selection != rows[:1]:
            self.queue.selection = rows[:1]

    def _show_queue(self, table: pd.DataFrame, urgent) -> None:
        """Show the queue with its rows in place: a row keeps its position in the table while it
        stays (the browser sorts them), new incidents are streamed after the others, and only
        the cells that changed (ages, statuses) are patched. A replaced table would renumber
        the rows between an operator's click and its arrival here, choosing another incident;
        it is replaced only when an incident leaves the queue (merged, or past its cap)."""
        shown = self.queue.value
        refs = pd.Index(table["ref"])
        if len(shown) and refs.is_unique and shown["ref"].isin(refs).all():
            kept = table.set_index("ref").loc[shown["ref"]].reset_index()[QUEUE_COLUMNS]
            kept.index = shown.index
            changes = {}
            for col in QUEUE_COLUMNS:
                differ = (shown[col].to_numpy() != kept[col].to_numpy()).nonzero()[0]
                if len(differ):
                    changes[col] = [(int(i), kept[col].iloc[i]) for i in differ]
            if changes:
                self.queue.patch(changes, as_index=False)
            new = table[~table["ref"].isin(shown["ref"])]
            if len(new):
                self.queue.stream(new[QUEUE_COLUMNS].reset_index(drop=True))
        else:
            self.queue.value = table.reset_index(drop=True)
        flags = dict(zip(table["ref"], (bool(u) for u in urgent)))
        now_shown = tuple(flags.get(r, False) for r in self.queue.value["ref"])
        if now_shown != self._shown_urgent:
            self._shown_urgent = now_shown
            self.queue.style.clear()  # the previous rows' styles, not piled up
            self.queue.style.apply(_urgent_rows(now_shown), axis=1)

    def title(self) -> str:
        """The page's title now (see ``page_title``)."""
        return page_title(_queue_at(self.engine, self.engine.version).n_urgent)

    def _set_title(self, urgent: int) -> None:
        title = page_title(urgent)
        if self.title_sync.value != title:
            self.title_sync.value = title
        if self._doc is not None and self._doc.title != title:
            self._doc.title = title

    def _chosen(self, event) -> None:
        table = self.queue.value
        rows = [r for r in event.new if 0 <= r < len(table)]
        if rows:
            self.selected = str(table["ref"].iloc[rows[0]])

    @param.depends("selected", watch=True)
    def _show_incident(self) -> None:
        e = self.engine
        key = (e.version, self.selected, self._minute())
        if key == self._shown_detail:
            return
        self._shown_detail = key
        if self.selected is None:
            return
        try:
            shown = _incident_at(e, e.version, self.selected)
        except KeyError:
            self.summary.object = f"<p>Incident {html.escape(self.selected)} is no longer in the queue.</p>"
            return
        place = _queue_at(e, e.version).table.set_index("ref")["place"].get(self.selected, "")
        now = pd.Timestamp(e.now, tz="UTC")
        self.summary.object = summary_html(shown.row, place, self.tz, now)
        self.evidence.object = evidence_html(shown.evidence, self.tz, self.wall, now)
        self.recommendation.object = recommended_html(shown.recommended, self.tz, now)
        self.routes_pipe.send(shown.routes)
        rec = shown.recommended
        ids = [u for u, ok in zip(rec["unit_id"], rec.get("reachable", [True] * len(rec))) if ok]
        self.param.unit.objects = ids
        if self.unit not in ids or self.selected != self._unit_for:
            self.unit = ids[0] if ids else None
        self._unit_for = self.selected
        alarms = {f"the incident {self.selected}": self.selected}
        alarms.update({f"{r.source} · {r.kind} · {_local(r.ts, self.tz, now)} ({r.event_id})": r.event_id
                       for r in shown.evidence.itertuples()})
        self.param.alarm.objects = list(alarms.values())
        self._alarm_labels = alarms
        if self.alarm not in alarms.values():
            self.alarm = self.selected
        active = shown.row["status"] in ACTIVE_STATUSES
        if self.may_act:
            self.buttons["dispatch"].disabled = not (active and ids)
            self.buttons["acknowledge"].disabled = shown.row["status"] != "open"
            self.buttons["close"].disabled = not active
            for v in ("confirmed", "false_alarm", "unsure"):
                self.buttons[v].disabled = False

    # ------------------------------------------------------------------ actions
    def _act(self, what: str, action) -> None:
        """Run an operator's ``action`` (audited by the engine) and say what happened."""
        if not access.can_dispatch(self.role):
            self.message.object = (f"<p>Not done: role {html.escape(str(self.role))} "
                                   f"may not {html.escape(what)}.</p>")
            return
        if self.selected is None:
            self.message.object = "<p>Choose an incident first.</p>"
            return
        try:
            done = action()
        except (ValueError, KeyError) as exc:
            self.message.object = f"<p>Not {html.escape(what)}: {html.escape(str(exc))}</p>"
            return
        self.message.object = done
        self.refresh()

    def dispatch(self) -> None:
        if self.unit is None and access.can_dispatch(self.role) and self.selected is not None:
            self.message.object = "<p>Not dispatched: no unit to send.</p>"
            return

        def send() -> str:
            unit, incident = self.unit, self.selected
            self.engine.dispatch(unit, incident, self.actor)
            return (f'<p class="dispatch-done" data-unit="{html.escape(unit)}">'
                    f"{html.escape(unit)} dispatched to {html.escape(incident)}</p>")
        self._act("dispatched", send)

    def acknowledge(self) -> None:
        def ack() -> str:
            self.engine.acknowledge(self.selected, self.actor)
            return f'<p class="action-done" data-action="acknowledge">{html.escape(self.selected)} acknowledged</p>'
        self._act("acknowledged", ack)

    def close(self) -> None:
        def close() -> str:
            self.engine.close_incident(self.selected, self.outcome, self.actor)
            return (f'<p class="action-done" data-action="close">{html.escape(self.selected)} closed: '
                    f"{html.escape(self.outcome)}</p>")
        self._act("closed", close)

    def judge(self, verdict: str) -> None:
        """Record a verdict on the chosen alarm (the incident, or one of its events)."""
        def record() -> str:
            alarm = self.alarm or self.selected
            kind = "incident" if alarm == self.selected else "event"
            reason = self.reason if verdict == "false_alarm" else None
            self.engine.review(alarm, verdict, self.actor, reason=reason, alarm_type=kind)
            said = verdict.replace("_", " ") + (f" ({reason.replace('_', ' ')})" if reason else "")
            return (f'<p class="action-done" data-action="review" data-alarm="{html.escape(alarm)}" '
                    f'data-verdict="{verdict}">{html.escape(kind)} {html.escape(alarm)}: '
                    f"{html.escape(said)}</p>")
        self._act("recorded", record)

    # ------------------------------------------------------------------ layout
    def plot(self) -> hv.Overlay:
        zones = self.engine.city.zones
        cameras = self.engine.camera_fields()
        fields = views.camera_fields(cameras) * views.camera_positions(cameras)
        routes = hv.DynamicMap(lambda data: views.route_paths(data), streams=[self.routes_pipe])
        now = lambda: pd.Timestamp(self.engine.now, tz="UTC")
        incidents = hv.DynamicMap(lambda data: views.incident_markers(data, now()),
                                  streams=[self.incidents_pipe])
        units = hv.DynamicMap(lambda data: views.unit_markers(data), streams=[self.units_pipe])
        # the map fills its part of the screen: a height following the width (the maps'
        # data_aspect) grew past the screen once the page was laid out again
        return views.on_zone_map(zones, fields * routes * incidents * units,
                                 title="Incidents, units and cameras now").opts(
            data_aspect=None, responsive=True, min_height=300)

    def controls(self) -> pn.Column:
        widgets = pn.Param(self.param, parameters=["unit"], show_name=False,
                           widgets={"unit": pn.widgets.Select}, sizing_mode="stretch_width")
        outcome = pn.widgets.Select.from_param(self.param.outcome, name="Close as")
        alarm = pn.widgets.Select.from_param(self.param.alarm, name="Verdict on")
        reason = pn.widgets.Select.from_param(self.param.reason, name="False alarm because")
        b = self.buttons
        return pn.Column(
            widgets, pn.Row(b["dispatch"], b["acknowledge"]), pn.Row(outcome, b["close"]),
            alarm, pn.Row(b["confirmed"], b["unsure"]), pn.Row(reason, b["false_alarm"]),
            self.message, sizing_mode="stretch_width", margin=0)

    def layout(self, camera_strip: pn.viewable.Viewable | None = None) -> pn.Column:
        """The console: queue | map | incident, then the cameras and the status bar."""
        left = pn.Column(pn.pane.HTML("<b>Incident queue</b>", margin=(0, 5)), self.queue_note,
                         self.queue, width=680, sizing_mode="stretch_height", margin=0)
        right = pn.Column(self.summary, pn.pane.HTML("<b>Evidence</b>", margin=(0, 5)), self.evidence,
                          pn.pane.HTML("<b>Recommended (fastest first)</b>", margin=(0, 5)),
                          self.recommendation, self.controls(),
                          width=480, sizing_mode="stretch_height", margin=0,
                          styles={"overflow-y": "auto"}, css_classes=["incident-panel"])
        middle = pn.Row(left, self.map, right, sizing_mode="stretch_both", margin=0)
        parts = [middle]
        if camera_strip is not None:
            parts.append(camera_strip)
        parts.append(pn.Row(self.status_bar, self.title_sync, sizing_mode="stretch_width", margin=0))
        return pn.Column(*parts, sizing_mode="stretch_both", margin=0, css_classes=["console"])


def _urgent_rows(urgent):
    """A Styler function: the rows of unacknowledged urgent incidents stand out."""
    flags = list(urgent)

    def style(row: pd.Series) -> list[str]:
        hit = flags[row.name] if row.name < len(flags) else False
        return [URGENT_STYLE if hit else ""] * len(row)
    return style


class CameraStrip(CameraWallView):
    """A compact row of the cameras' blurred tiles, each captioned with its health."""

    tile_width = param.Integer(default=150, bounds=(80, 400))

    def _container(self) -> pn.Row:
        return pn.Row(sizing_mode="stretch_width", height=150, css_classes=["camera-strip"],
                      styles={"overflow-x": "auto"}, margin=0)

    def _tile_pane(self) -> pn.pane.HTML:
        return pn.pane.HTML("", width=self.tile_width, sizing_mode="fixed",
                            css_classes=["camera-tile-pane"], margin=(0, 4))

