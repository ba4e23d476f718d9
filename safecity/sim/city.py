"""A synthetic Marseille with known answers, so that every detector can be scored.

From a seed it builds a road network over the real extent, places cameras,
counters, gunshot detectors and panic buttons, writes a calendar (concerts,
school holidays, public holidays, roadworks), generates counts with daily and
weekly cycles and calendar effects, injects anomalies, generates gunshot,
panic, emergency-call and camera events grouped into true incidents, and moves
police, fire and ambulance units that answer those incidents. The ground truth
(anomalies, incidents, dispatches) is kept apart from the data in ``truth``.

The per-day and per-sensor generators (``simulate_observations``,
``simulate_events``) take data and return data, and draw their randomness from
a generator keyed by (seed, day[, sensor]): a day, or a subset of sensors, comes
out the same whichever way the work is split, so a Dask cluster can map them.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from safecity.config.city import DEFAULT_CITY
from safecity.data import geo
from safecity.data.citydir import CityData
from safecity.dispatch.network import RoadNetwork
from safecity.dispatch.recommend import rank_units
from safecity.dispatch.units import make_roster
from safecity.data.schema import empty, validate

#: The synthetic city is Marseille: its time zone and holidays.
CITY = DEFAULT_CITY
ROAD_SPEEDS = {"primary": 50.0, "secondary": 40.0, "residential": 30.0}
COUNT_KINDS = ("camera", "counter")

# Neighbourhoods where the acoustic detectors are deployed (lon, lat): the
# northern districts, as in the cities that run such systems in a few areas.
_GUNSHOT_AREAS = [(5.3780, 43.3330), (5.3920, 43.3470), (5.3690, 43.3560), (5.4250, 43.3450)]

# Synthetic stations, placed near real landmarks so that maps look familiar;
# they are not the real list of stations.
_STATIONS = [
    ("police", "Hôtel de Police (centre)", 5.3668, 43.2998),
    ("police", "Commissariat Nord", 5.3720, 43.3470),
    ("police", "Commissariat Sud", 5.3910, 43.2470),
    ("police", "Commissariat Est", 5.4550, 43.3050),
    ("fire", "Caserne Centre", 5.3748, 43.3070),
    ("fire", "Caserne Nord", 5.4000, 43.3550),
    ("fire", "Caserne Sud", 5.3950, 43.2550),
    ("fire", "Caserne Est", 5.4700, 43.2900),
    ("ambulance", "Hôpital Timone", 5.4006, 43.2894),
    ("ambulance", "Hôpital Nord", 5.4030, 43.3780),
    ("ambulance", "Hôpital Sud", 5.4040, 43.2585),
]

# What a happening needs and how urgent it is: kind -> (priority, {unit kind: count}).
_RESPONSE = {
    "gunshot": (1, {"police": 2}),
    "fire": (1, {"fire": 1}),
    "panic": (2, {"police": 1}),
    "assault": (2, {"police": 1}),
    "medical": (2, {"ambulance": 1}),
    "person_on_ground": (2, {"ambulance": 1}),
    "traffic_accident": (3, {"police": 1, "ambulance": 1}),
    "abandoned_object": (3, {"police": 1}),
    "excessive_density": (3, {"police": 1}),
    "theft": (4, {"police": 1}),
    "disturbance": (4, {"police": 1}),
    "forbidden_zone": (4, {"police": 1}),
    "crowd_movement": (4, {}),
    "wrong_way": (5, {}),
}

_CALL_TEXT = {
    "medical": ["Une personne a fait un malaise dans la rue", "Mon voisin ne respire plus bien"],
    "assault": ["Une bagarre a éclaté devant le bar", "Quelqu'un se fait agresser"],
    "theft": ["On vient de m'arracher mon sac", "Vol de scooter en cours"],
    "traffic_accident": ["Accident entre une voiture et un scooter", "Un piéton a été renversé"],
    "fire": ["Il y a de la fumée qui sort d'un immeuble", "Un feu de poubelles prend de l'ampleur"],
    "disturbance": ["Des cris et du tapage dans la rue", "Un groupe bloque la circulation"],
    "gunshot": ["J'ai entendu des coups de feu", "Des détonations près de chez moi"],
    "panic": ["Braquage en cours dans un commerce", "Le commerçant a déclenché l'alarme"],
    "person_on_ground": ["Quelqu'un est tombé et ne se relève pas"],
}

_CAMERA_KINDS = {  # kind -> weight among camera happenings
    "abandoned_object": 0.30, "person_on_ground": 0.20, "crowd_movement": 0.12,
    "forbidden_zone": 0.15, "wrong_way": 0.10, "fire": 0.05, "excessive_density": 0.08,
}


# =========================================================================== city


def simulate_city(seed: int = 0, n_cameras: int = 8, n_counters: int = 24, days: int = 7,
                  n_units: int = 12, start="2026-06-01", freq: str = "5min",
                  zones: pd.DataFrame | None = None, n_detectors: int = 12,
                  n_panic_buttons: int = 6) -> CityData:
    """Build a whole synthetic city; the same arguments give the same tables.

    ``zones`` defaults to ``geo.default_zones()`` (the real quartiers when the
    shared data is there), so pass them explicitly where runs on different
    machines must match.
    """
    zones = geo.default_zones() if zones is None else zones
    start = _day(start)
    day_list = [start + pd.Timedelta(days=k) for k in range(days)]
    nodes, edges = road_network(zones, seed=seed)
    sensors = place_sensors(nodes, edges, zones, n_cameras=n_cameras, n_counters=n_counters,
                            n_detectors=n_detectors, n_panic_buttons=n_panic_buttons, seed=seed)
    calendar = make_calendar(start, days, nodes, edges, seed=seed)
    anomalies = make_anomalies(sensors, start, days, seed=seed)
    observations = pd.concat(
        [simulate_observations(sensors, calendar, anomalies, d, seed=seed, freq=freq)
         for d in day_list], ignore_index=True)
    per_day = [simulate_events(sensors, calendar, nodes, edges, d, seed=seed) for d in day_list]
    events = validate(pd.concat([e for e, _ in per_day], ignore_index=True), "events")
    incidents = pd.concat([i for _, i in per_day], ignore_index=True)
    stations = make_stations(nodes)
    roster = make_roster(stations, n_units)
    units, dispatches = simulate_units(roster, stations, incidents, nodes, edges,
                                       start, start + pd.Timedelta(days=days), seed=seed)
    incidents = _with_units(incidents, dispatches)
    return CityData(
        sensors=sensors, observations=observations, events=events, units=units,
        calendar=calendar, zones=zones, nodes=nodes, edges=edges, stations=stations,
        truth={"anomalies": anomalies, "incidents": incidents, "dispatches": dispatches},
        params={"seed": seed, "n_cameras": n_cameras, "n_counters": n_counters, "days": days,
                "n_units": n_units, "start": start.isoformat(), "freq": freq,
                "n_detectors": n_detectors, "n_panic_buttons": n_panic_buttons},
        config=CITY,
    )


# =========================================================================== roads


def road_network(zones: pd.DataFrame | None = None, spacing_m: float = 500.0,
                 seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A jittered street grid over the land: ``nodes`` (node_id, lon, lat) and directed ``edges``.

    Every sixth grid line is a primary road and every third a secondary one,
    so that routes have arteries to prefer; edges crossing water are dropped
    and only the largest connected piece is kept, so every node reaches every other.
    """
    zones = geo.builtin_zones() if zones is None else zones
    area = shapely.transform(geo.land(zones), lambda c: np.column_stack(geo.to_xy(c[:, 0], c[:, 1])))
    minx, miny, maxx, maxy = area.bounds
    xs, ys = np.arange(minx, maxx + spacing_m, spacing_m), np.arange(miny, maxy + spacing_m, spacing_m)
    gx, gy = np.meshgrid(xs, ys)
    rng = _rng(seed, "roads")
    gx = gx + rng.uniform(-0.25, 0.25, gx.shape) * spacing_m
    gy = gy + rng.uniform(-0.25, 0.25, gy.shape) * spacing_m
    inside = shapely.contains_xy(area, gx, gy)
    index = np.full(gx.shape, -1)
    index[inside] = np.arange(inside.sum())
    px, py = gx[inside], gy[inside]

    pairs, classes = [], []
    for di, dj in ((0, 1), (1, 0)):
        a = index[: index.shape[0] - di, : index.shape[1] - dj]
        b = index[di:, dj:]
        line = np.indices(a.shape)[0 if dj else 1]  # the grid line the edge runs along
        ok = (a >= 0) & (b >= 0)
        pairs.append(np.column_stack([a[ok], b[ok]]))
        classes.append(np.where(line[ok] % 6 == 0, "primary",
                                np.where(line[ok] % 3 == 0, "secondary", "residential")))
    pairs, classes = np.concatenate(pairs), np.concatenate(classes)
    segments = shapely.linestrings(np.stack([np.column_stack([px[pairs[:, 0]], py[pairs[:, 0]]]),
                                             np.column_stack([px[pairs[:, 1]], py[pairs[:, 1]]])], 1))
    keep = shapely.contains(area, segments)
    # Thin out some residential streets so the grid looks less like a grid.
    keep &= ~((classes == "residential") & (rng.random(len(pairs)) < 0.12))
    pairs, classes = pairs[keep], classes[keep]

    n = len(px)
    graph = csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    main = label == np.bincount(label).argmax()
    new_id = np.cumsum(main) - 1
    both = main[pairs[:, 0]] & main[pairs[:, 1]]
    pairs, classes = new_id[pairs[both]], classes[both]
    px, py = px[main], py[main]
    lon, lat = geo.to_lonlat(px, py)
    nodes = pd.DataFrame({"node_id": np.arange(len(px)), "lon": lon, "lat": lat})
    length = np.hypot(px[pairs[:, 0]] - px[pairs[:, 1]], py[pairs[:, 0]] - py[pairs[:, 1]])
    one_way = pd.DataFrame({"u": pairs[:, 0], "v": pairs[:, 1], "length_m": length,
                            "road_class": classes})
    edges = pd.concat([one_way, one_way.rename(columns={"u": "v", "v": "u"})], ignore_index=True)
    edges["speed_kmh"] = edges["road_class"].map(ROAD_SPEEDS).astype(float)
    edges["travel_time_s"] = edges["length_m"] / (edges["speed_kmh"] / 3.6)
    edges = edges.sort_values(["u", "v"], ignore_index=True)[
        ["u", "v", "length_m", "road_class", "speed_kmh", "travel_time_s"]]
    return nodes, edges


# =========================================================================== sensors


def place_sensors(nodes: pd.DataFrame, edges: pd.DataFrame, zones: pd.DataFrame,
                  n_cameras: int = 8, n_counters: int = 24, n_detectors: int = 12,
                  n_panic_buttons: int = 6, seed: int = 0) -> pd.DataFrame:
    """Devices along the streets, denser in the centre, one camera and counter at each venue.

    ``metadata`` carries what the count generator needs (``base``: people per
    hour at a usual peak; ``profile``: commuter, leisure or residential) so that
    ``simulate_observations`` depends on the sensors table only.
    """
    rng = _rng(seed, "sensors")
    from safecity.sim.clips import SCENARIOS

    street = edges[edges["u"] < edges["v"]].reset_index(drop=True)
    ux, uy = geo.to_xy(nodes["lon"].to_numpy()[street["u"]], nodes["lat"].to_numpy()[street["u"]])
    vx, vy = geo.to_xy(nodes["lon"].to_numpy()[street["v"]], nodes["lat"].to_numpy()[street["v"]])
    mx, my = (ux + vx) / 2, (uy + vy) / 2
    radius = np.hypot(mx, my)
    class_weight = street["road_class"].map({"primary": 4.0, "secondary": 2.0, "residential": 1.0})
    venues = _venues()
    vxy = np.column_stack(geo.to_xy(venues["lon"], venues["lat"]))

    def on_streets(n, scale_m, anchored):
        """Pick ``n`` street spots; the first ones at the venues (nearest street)."""
        picks = []
        for x, y in vxy[: min(n, len(vxy)) if anchored else 0]:
            picks.append(int(np.argmin(np.hypot(mx - x, my - y))))
        w = class_weight.to_numpy() * np.exp(-radius / scale_m)
        picks += list(rng.choice(len(street), size=n - len(picks), p=w / w.sum()))
        frac = rng.uniform(0.2, 0.8, n)
        idx = np.asarray(picks, int)
        return ux[idx] + frac * (vx[idx] - ux[idx]), uy[idx] + frac * (vy[idx] - uy[idx]), idx

    rows = []
    for kind, prefix, n, scale, level in (("camera", "cam", n_cameras, 2500.0, 90.0),
                                          ("counter", "cnt", n_counters, 4000.0, 220.0)):
        x, y, idx = on_streets(n, scale, anchored=True)
        near_venue = np.hypot(x[:, None] - vxy[:, 0], y[:, None] - vxy[:, 1]).min(1) < 1500
        for k in range(n):
            road = street["road_class"].iat[idx[k]]
            profile = "leisure" if near_venue[k] else rng.choice(
                ["commuter", "leisure", "residential"],
                p=[0.6, 0.2, 0.2] if road != "residential" else [0.25, 0.15, 0.6])
            base = level * {"primary": 1.6, "secondary": 1.0, "residential": 0.5}[road]
            base *= (1.0 + 2.0 * np.exp(-np.hypot(x[k], y[k]) / 2000.0)) * rng.lognormal(0.0, 0.35)
            meta = {"base": round(float(base), 1), "profile": str(profile), "road_class": road,
                    "node_id": int(street["u"].iat[idx[k]])}
            if kind == "camera":
                meta["clip"] = SCENARIOS[k % len(SCENARIOS)]
            rows.append((f"{prefix}-{k + 1:03d}", kind, x[k], y[k], meta))

    # Acoustic detectors on a ~450 m lattice around each covered neighbourhood.
    offsets = _lattice(n_detectors, 450.0)
    for k in range(n_detectors):
        ax, ay = geo.to_xy(*_GUNSHOT_AREAS[k % len(_GUNSHOT_AREAS)])
        ox, oy = offsets[k // len(_GUNSHOT_AREAS)]
        x, y = ax + ox + rng.normal(0, 40), ay + oy + rng.normal(0, 40)
        rows.append((f"gsd-{k + 1:03d}", "gunshot_detector", x, y, {"range_m": 1500}))

    x, y, _ = on_streets(n_panic_buttons, 2500.0, anchored=False)
    for k in range(n_panic_buttons):
        rows.append((f"pnc-{k + 1:03d}", "panic_button", x[k], y[k], {"site": "shop"}))

    xs = np.array([r[2] for r in rows], float)
    ys = np.array([r[3] for r in rows], float)
    lon, lat = geo.to_lonlat(xs, ys)
    zone = geo.zone_of(lon, lat, zones) if len(rows) else np.array([], object)
    arr = dict(zip(zones["zone_id"], zones["arrondissement"]))
    meta = [{**r[4], "arrondissement": arr.get(z)} for r, z in zip(rows, zone)]
    sensors = pd.DataFrame({
        "sensor_id": [r[0] for r in rows], "kind": [r[1] for r in rows], "lon": lon, "lat": lat,
        "zone": zone, "metadata": [_json(m) for m in meta]})
    return validate(sensors, "sensors")


def _lattice(n: int, step: float) -> list[tuple[float, float]]:
    """Hexagonal lattice points by distance from the origin (enough for ``n`` areas' worth)."""
    pts = [(step * (i + 0.5 * (j % 2)), step * j * 0.866) for i in range(-4, 5) for j in range(-4, 5)]
    return sorted(pts, key=lambda p: (round(np.hypot(*p)), p))[: max(n, 1)]


def _venues() -> pd.DataFrame:
    return geo.BUILTIN_LANDMARKS.dropna(subset=["capacity"]).reset_index(drop=True)


# =========================================================================== calendar


def make_calendar(start, days: int, nodes: pd.DataFrame, edges: pd.DataFrame,
                  seed: int = 0) -> pd.DataFrame:
    """The happenings that change how the city moves during the period.

    School holidays (``CITY.school_zone``, Marseille's B) and public holidays are real dates;
    concerts and matches are drawn per week at the built-in venues, and
    roadworks at random points on the main roads.
    """
    start = _day(start)
    end = start + pd.Timedelta(days=days)
    rng = _rng(seed, "calendar")
    rows = _holidays(start, end)
    venues = _venues()
    for week in range(0, days, 7):
        span = list(range(week, min(week + 7, days)))
        local_days = [(start + pd.Timedelta(days=d)).tz_convert(CITY.tz).normalize() for d in span]
        weekend = [d for d, ld in zip(span, local_days) if ld.day_of_week >= 5] or span
        weekday = [d for d, ld in zip(span, local_days) if ld.day_of_week < 5] or span
        plan = [  # venue, name, day pool, local start hour, duration h, share of capacity
            ("Stade Vélodrome", rng.choice(["Match de l'OM", "Grand concert au Vélodrome"]),
             weekend, 21.0, 2.5, (0.7, 1.0)),
            ("Le Dôme", "Concert au Dôme", weekday, 20.0, 3.0, (0.7, 1.0)),
            ("Vieux-Port", "Fête au Vieux-Port", weekend, 15.0, 4.0, (0.4, 0.9)),
        ]
        for venue, name, pool, hour, dur, share in plan:
            v = venues[venues["name"] == venue].iloc[0]
            d = int(rng.choice(pool))
            local = (start + pd.Timedelta(days=d)).tz_convert(CITY.tz).normalize()
            t0 = (local + pd.Timedelta(hours=hour)).tz_convert("UTC")
            rows.append({
                "calendar_id": f"cal-event-{t0:%Y%m%d}-{_slug(venue)}", "kind": "event",
                "name": str(name), "start": t0, "end": t0 + pd.Timedelta(hours=dur),
                "location": venue, "lon": v["lon"], "lat": v["lat"],
                "expected_attendance": float(round(v["capacity"] * rng.uniform(*share), -2))})
    main_nodes = np.unique(edges.loc[edges["road_class"] != "residential", "u"])
    for k in range(max(1, days // 7 + (days % 7 > 3))):
        node = int(rng.choice(main_nodes))
        d = int(rng.integers(0, max(days - 1, 1)))
        t0 = ((start + pd.Timedelta(days=d)).tz_convert(CITY.tz).normalize()
              + pd.Timedelta(hours=7)).tz_convert("UTC")
        rows.append({
            "calendar_id": f"cal-roadworks-{t0:%Y%m%d}-{k + 1}", "kind": "roadworks",
            "name": "Travaux de voirie", "start": t0,
            "end": t0 + pd.Timedelta(days=int(rng.integers(2, 5)), hours=10),
            "location": f"road node {node}", "lon": nodes["lon"].iat[node],
            "lat": nodes["lat"].iat[node], "expected_attendance": None})
    calendar = pd.DataFrame(rows, columns=["calendar_id", "kind", "name", "start", "end",
                                           "location", "lon", "lat", "expected_attendance"])
    return validate(calendar.sort_values(["start", "calendar_id"], ignore_index=True), "calendar")


def _holidays(start: pd.Timestamp, end: pd.Timestamp) -> list[dict]:
    import holidays as public
    from vacances_scolaires_france import SchoolHolidayDates

    rows = []
    years = range(start.year - 1, end.year + 1)
    dates = SchoolHolidayDates()
    school = sorted(d for y in years if dates.min_year <= y <= dates.max_year
                    for d, r in dates.holidays_for_year_and_zone(y, CITY.school_zone).items())
    names = {d: r["nom_vacances"] for y in years if dates.min_year <= y <= dates.max_year
             for d, r in dates.holidays_for_year_and_zone(y, CITY.school_zone).items()}
    runs: list[list] = []
    for d in school:  # consecutive days of one holiday make one row
        if runs and (d - runs[-1][-1]).days == 1 and names[d] == names[runs[-1][0]]:
            runs[-1].append(d)
        else:
            runs.append([d])
    for run in runs:
        t0 = _local_midnight(run[0])
        t1 = _local_midnight(run[-1] + pd.Timedelta(days=1).to_pytimedelta())
        if t0 < end and t1 > start:
            rows.append({"calendar_id": f"cal-school-{run[0]:%Y%m%d}", "kind": "school_holiday",
                         "name": names[run[0]], "start": t0, "end": t1})
    for d, name in sorted(public.country_holidays(CITY.country, subdiv=CITY.subdiv, years=list(years)).items()):
        t0 = _local_midnight(d)
        t1 = _local_midnight(d + pd.Timedelta(days=1).to_pytimedelta())
        if t0 < end and t1 > start:
            rows.append({"calendar_id": f"cal-holiday-{d:%Y%m%d}", "kind": "public_holiday",
                         "name": name, "start": t0, "end": t1})
    return rows


def _local_midnight(d) -> pd.Timestamp:
    return pd.Timestamp(d).tz_localize(CITY.tz).tz_convert("UTC")


# =========================================================================== anomalies


def make_anomalies(sensors: pd.DataFrame, start, days: int, seed: int = 0) -> pd.DataFrame:
    """The departures injected into the counts: the answers a baseline detector is scored on.

    Kinds: ``spike`` (one sensor x3..x5 for 1-3 h), ``drop`` (one sensor
    x0.1..x0.3 for 1-4 h), ``outage`` (one sensor reads zero for 2-6 h),
    ``district_drop`` (every sensor of an arrondissement x0.4..x0.6 for 2-4 h)
    and ``citywide_drop`` (every sensor x0.5..x0.65 for 3 h, as on a storm day).
    All start on the hour, in daytime, so that any bin of an hour or less sees them whole.
    """
    start = _day(start)
    rng = _rng(seed, "anomalies")
    counting = sensors[sensors["kind"].isin(COUNT_KINDS)].reset_index(drop=True)
    if counting.empty:
        return _empty_anomalies()
    ids = counting["sensor_id"].to_numpy()
    per = max(1, len(ids) // 100)
    # Area-wide departures first, then single sensors; windows never overlap on
    # a sensor, so each anomaly's effect is its own factor and nothing else.
    plan = ([("citywide_drop", 0, (3, 4), (0.5, 0.65))] * max(1, days // 7)
            + [("district_drop", 0, (2, 5), (0.4, 0.6))] * max(1, days // 4)
            + [("spike", 1, (1, 4), (3.0, 5.0))] * (max(1, days) * per)
            + [("drop", 1, (1, 5), (0.1, 0.3))] * (max(1, days // 2) * per)
            + [("outage", 1, (2, 7), (0.0, 0.0))] * (max(1, days // 3) * per))
    arrondissement = counting["metadata"].map(lambda m: json.loads(m).get("arrondissement"))
    busy: dict[str, list] = {}
    rows = []
    for kind, single, hours, factor in plan:
        for _ in range(50):
            day = start + pd.Timedelta(days=int(rng.integers(0, days)))
            local = day.tz_convert(CITY.tz).normalize() + pd.Timedelta(hours=int(rng.integers(9, 17)))
            t0 = local.tz_convert("UTC")
            t1 = t0 + pd.Timedelta(hours=int(rng.integers(*hours)))
            if single:
                sid = str(rng.choice(ids))
                affected, zone = [sid], counting.loc[counting["sensor_id"] == sid, "zone"].iat[0]
            elif kind == "district_drop":
                zone = str(rng.choice(arrondissement.value_counts().index[:3]))
                affected, sid = sorted(ids[arrondissement.to_numpy() == zone]), None
            else:
                affected, sid, zone = sorted(ids), None, "city"
            if not any(a < t1 and t0 < b for s in affected for a, b in busy.get(s, ())):
                break
        else:
            continue  # no free window left for this one
        for s in affected:
            busy.setdefault(s, []).append((t0, t1))
        rows.append({"anomaly_id": f"anom-{len(rows) + 1:03d}", "kind": kind, "sensor_id": sid,
                     "zone": zone, "sensor_ids": _json(list(affected)), "metric": "people_count",
                     "start": t0, "end": t1, "factor": float(round(rng.uniform(*factor), 2))})
    return pd.DataFrame(rows).sort_values(["start", "anomaly_id"], ignore_index=True)


def _empty_anomalies() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
        ("anomaly_id", str), ("kind", str), ("sensor_id", object), ("zone", object),
        ("sensor_ids", str), ("metric", str), ("start", "datetime64[ns, UTC]"),
        ("end", "datetime64[ns, UTC]"), ("factor", float))})


# =========================================================================== counts


def expected_counts(sensors: pd.DataFrame, calendar: pd.DataFrame | None, ts: pd.DatetimeIndex,
                    anomalies: pd.DataFrame | None = None, freq: str = "5min") -> np.ndarray:
    """Mean people per bin, shape (sensors, bins): the truth a baseline tries to learn.

    Each sensor's hourly ``base`` is shaped by a daily profile in local time
    (morning and evening peaks on weekdays, a broad afternoon at weekends, the
    school run gone during school holidays, Sundays on public holidays),
    raised near a venue before and after an event, lowered by nearby
    roadworks (and raised a little further out, where traffic is diverted),
    then multiplied by any injected anomaly.
    """
    ts = pd.DatetimeIndex(ts)
    calendar = empty("calendar") if calendar is None else calendar
    bin_h = pd.Timedelta(freq) / pd.Timedelta(hours=1)
    meta = [json.loads(m) for m in sensors["metadata"]]
    base = np.array([m["base"] for m in meta], float)
    profile = np.array([m.get("profile", "commuter") for m in meta])
    local = ts.tz_convert(CITY.tz)
    hour = local.hour + local.minute / 60 + local.second / 3600 + bin_h / 2
    dow = np.asarray(local.day_of_week)
    holiday = _in_any(ts, calendar, "public_holiday")
    school = _in_any(ts, calendar, "school_holiday")
    day_type = np.where(holiday | (dow == 6), 2, np.where(dow == 5, 1, 0))  # weekday, sat, sun

    commute = np.select(
        [day_type == 0, day_type == 1],
        [np.where(school, 0.55, 0.9) * _bump(hour, 8.3, 0.9) + 0.5 * _bump(hour, 12.5, 1.4)
         + np.where(school, 0.85, 1.0) * _bump(hour, 17.8, 1.3) + 0.35 * _bump(hour, 14.5, 4.0),
         0.45 * _bump(hour, 13.0, 3.5)],
        0.25 * _bump(hour, 13.0, 3.5))
    leisure = np.select(
        [day_type == 0, day_type == 1],
        [np.where(school, 1.25, 1.0) * (0.3 * _bump(hour, 12.5, 2.0) + 0.6 * _bump(hour, 19.0, 2.5)
                                        + 0.25 * _bump(hour, 15.0, 4.0))
         * np.where(dow == 4, 1.1, 1.0),
         0.95 * _bump(hour, 15.5, 3.5) + 0.5 * _bump(hour, 22.5, 2.0)],
        0.75 * _bump(hour, 14.5, 3.5))
    shapes = {
        "commuter": 0.04 + 0.85 * commute + 0.2 * leisure,
        "leisure": 0.04 + 0.3 * commute + 0.9 * leisure,
        "residential": 0.03 + 0.35 * commute + 0.25 * leisure,
    }
    lam = np.stack([shapes.get(p, shapes["commuter"]) for p in profile]) if len(base) else \
        np.zeros((0, len(ts)))
    lam = lam * base[:, None]

    sx, sy = geo.to_xy(sensors["lon"].to_numpy(), sensors["lat"].to_numpy())
    t_h = (ts - ts[0]).total_seconds().to_numpy() / 3600 + bin_h / 2 if len(ts) else np.zeros(0)
    for row in calendar.itertuples(index=False):
        if len(ts) == 0 or pd.isna(row.lon) or row.end < ts[0] - pd.Timedelta(hours=3) \
                or row.start > ts[-1] + pd.Timedelta(hours=3):
            continue
        cx, cy = geo.to_xy(row.lon, row.lat)
        d = np.hypot(sx - cx, sy - cy)
        if row.kind == "event" and not pd.isna(row.expected_attendance):
            # People per hour past a sensor: arrival over two hours before the
            # start, a thin stream during, a sharp egress just after the end.
            s = (row.start - ts[0]).total_seconds() / 3600
            e = (row.end - ts[0]).total_seconds() / 3600
            arrive = np.clip(1 - np.abs(t_h - (s - 0.5)) / np.where(t_h < s - 0.5, 1.5, 0.5), 0, None)
            egress = 2.0 * np.clip(1 - np.abs(t_h - (e + 0.15)) / np.where(t_h < e + 0.15, 0.15, 0.85), 0, None)
            during = 0.08 * ((t_h >= s) & (t_h < e))
            share = 0.08 * np.exp(-(d / 700.0) ** 2)
            lam += row.expected_attendance * share[:, None] * (arrive + during + egress)[None, :] * bin_h
        elif row.kind == "roadworks":
            active = ((ts >= row.start) & (ts < row.end))[None, :]
            factor = np.where(d < 300, 0.35, np.where(d < 1200, 1.2, 1.0))[:, None]
            lam = np.where(active, lam * factor, lam)

    if anomalies is not None and len(anomalies):
        index = {s: i for i, s in enumerate(sensors["sensor_id"])}
        for row in anomalies.itertuples(index=False):
            rows = [index[s] for s in json.loads(row.sensor_ids) if s in index]
            active = (ts >= row.start) & (ts < row.end)
            if rows and active.any():
                lam[np.ix_(rows, np.nonzero(active)[0])] *= row.factor
    return lam


def simulate_observations(sensors: pd.DataFrame, calendar: pd.DataFrame | None,
                          anomalies: pd.DataFrame | None, day, seed: int = 0,
                          freq: str = "5min") -> pd.DataFrame:
    """One UTC day of ``people_count`` (cameras, counters) and ``mean_speed`` (cameras).

    Counts are negative-binomial around ``expected_counts``; each sensor draws
    from its own generator keyed by (seed, day, sensor_id), so one sensor's
    rows do not depend on which other sensors or days are generated with it.
    Rows are ordered by metric, ts, sensor_id. A camera bin with nobody in it
    has no speed row.
    """
    day = _day(day)
    ts = pd.date_range(day, day + pd.Timedelta(days=1), freq=freq, inclusive="left")
    counting = sensors[sensors["kind"].isin(COUNT_KINDS)].reset_index(drop=True)
    lam = expected_counts(counting, calendar, ts, anomalies, freq)
    base = np.array([json.loads(m)["base"] for m in counting["metadata"]]) * (
        pd.Timedelta(freq) / pd.Timedelta(hours=1))
    counts = np.empty_like(lam)
    speed = np.full_like(lam, np.nan)
    is_camera = (counting["kind"] == "camera").to_numpy()
    for i, sid in enumerate(counting["sensor_id"]):
        rng = _rng(seed, "obs", day, sid)
        counts[i] = rng.poisson(lam[i] * rng.gamma(20.0, 1 / 20.0, len(ts)))
        if is_camera[i]:
            # Crowds walk slower: speed falls as the bin fills up relative to a usual peak.
            crowd = counts[i] / (3.0 * base[i])
            walk = 1.4 * (1 - 0.45 * crowd / (1 + crowd)) + rng.normal(0, 0.06, len(ts))
            speed[i] = np.where(counts[i] > 0, np.clip(walk, 0.2, 2.5).round(3), np.nan)

    ids = counting["sensor_id"].to_numpy(dtype=object)
    n_s, n_t = lam.shape
    t_col = ts.repeat(n_s)
    s_col = np.tile(ids, n_t)
    count_frame = pd.DataFrame({"ts": t_col, "sensor_id": s_col, "metric": "people_count",
                                "value": counts.T.ravel()})
    have = ~np.isnan(speed.T.ravel())
    speed_frame = pd.DataFrame({"ts": t_col[have], "sensor_id": s_col[have], "metric": "mean_speed",
                                "value": speed.T.ravel()[have]})
    out = pd.concat([count_frame, speed_frame], ignore_index=True)
    return validate(out, "observations")


def _bump(hour, mu: float, sd: float) -> np.ndarray:
    """A Gaussian bump on the 24-hour circle (so a 23:00 peak spills past midnight)."""
    d = (np.asarray(hour, float) - mu + 12) % 24 - 12
    return np.exp(-0.5 * (d / sd) ** 2)


def _in_any(ts: pd.DatetimeIndex, calendar: pd.DataFrame, kind: str) -> np.ndarray:
    mask = np.zeros(len(ts), bool)
    for row in calendar[calendar["kind"] == kind].itertuples(index=False):
        mask |= np.asarray((ts >= row.start) & (ts < row.end))
    return mask


# =========================================================================== events


def simulate_events(sensors: pd.DataFrame, calendar: pd.DataFrame, nodes: pd.DataFrame,
                    edges: pd.DataFrame, day, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One UTC day of events and the true incidents they come from: ``(events, incidents)``.

    A gunshot is heard by the detectors within range (often two to four, a
    few seconds apart) and sometimes phoned in; a panic button is pressed once
    or twice; a happening on the street brings one to several callers; a
    camera flags the legal kinds near it, and a crowd leaving a venue shows on
    the cameras nearby. ``incidents.event_ids`` lists the events of each true
    happening; an event listed by no incident is a false alarm (fireworks, a
    button pressed by mistake, a hoax call, a detector's mistake).
    """
    day = _day(day)
    rng = _rng(seed, "events", day)
    tag = f"{day:%Y%m%d}"
    events: list[dict] = []
    incidents: list[dict] = []
    minutes = pd.date_range(day, periods=1440, freq="1min").tz_convert(CITY.tz)
    hour = np.asarray(minutes.hour + minutes.minute / 60)
    street = _street_sampler(nodes, edges)
    by_kind = {k: sensors[sensors["kind"] == k].reset_index(drop=True) for k in
               ("camera", "gunshot_detector", "panic_button")}

    def when(n, weight):
        idx = rng.choice(1440, size=n, p=weight / weight.sum())
        return [day + pd.Timedelta(seconds=float(60 * i + rng.uniform(0, 60))) for i in idx]

    def event(ts, kind, source, lon, lat, score, details, sensor_id=None) -> str:
        event_id = f"ev-{tag}-{len(events) + 1:04d}"
        events.append({"event_id": event_id, "ts": ts, "kind": kind, "sensor_id": sensor_id,
                       "lon": float(lon), "lat": float(lat),
                       "score": None if score is None else round(float(score), 3),
                       "source": source, "details": _json(details)})
        return event_id

    def calls(t0, category, lon, lat, n) -> list[str]:
        ids = []
        for _ in range(n):
            x, y = geo.to_xy(lon, lat)
            clon, clat = geo.to_lonlat(x + rng.normal(0, 60), y + rng.normal(0, 60))
            text = _CALL_TEXT.get(category, _CALL_TEXT["disturbance"])
            ids.append(event(t0 + pd.Timedelta(seconds=float(30 + rng.exponential(150))), "call",
                             "emergency_call", clon, clat, rng.uniform(0.5, 0.9),
                             {"category": category, "text": str(rng.choice(text)),
                              "caller": f"caller-{int(rng.integers(0, 10**6)):06d}"}))
        return ids

    def incident(t0, kind, lon, lat, event_ids, summary):
        if not event_ids:  # nobody saw it: nothing to score
            return
        priority, needs = _RESPONSE.get(kind, (4, {"police": 1}))
        incidents.append({"incident_id": f"inc-{tag}-{len(incidents) + 1:03d}", "ts": t0,
                          "kind": kind, "priority": priority, "confidence": 1.0,
                          "status": "closed", "lon": float(lon), "lat": float(lat),
                          "summary": summary, "event_ids": _json(event_ids),
                          "needs": _json(needs)})

    evening = 0.3 + _bump(hour, 11.0, 3.0) + 1.2 * _bump(hour, 19.0, 3.5)
    night = 0.15 + _bump(hour, 23.0, 2.5)

    # Gunshots, heard by the detectors within range.
    det = by_kind["gunshot_detector"]
    dx, dy = geo.to_xy(det["lon"].to_numpy(), det["lat"].to_numpy())
    for t0 in when(rng.poisson(1.0), night):
        if len(det):
            k = rng.integers(len(det))
            r, a = 500 * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
            x, y = dx[k] + r * np.cos(a), dy[k] + r * np.sin(a)
        else:
            x, y = geo.to_xy(*street(rng))
        lon, lat = geo.to_lonlat(x, y)
        rounds = int(rng.integers(1, 9))
        ids = []
        dist = np.hypot(dx - x, dy - y)
        for j in np.argsort(dist):
            if dist[j] < 1500 and rng.random() < 0.95 * np.exp(-dist[j] / 900):
                elon, elat = geo.to_lonlat(x + rng.normal(0, 40), y + rng.normal(0, 40))
                ids.append(event(t0 + pd.Timedelta(seconds=float(dist[j] / 343 + abs(rng.normal(0, 0.3)))),
                                 "gunshot", "acoustic", elon, elat,
                                 np.clip(0.98 - dist[j] / 3000 + rng.normal(0, 0.03), 0.3, 0.99),
                                 {"rounds": rounds, "distance_m": round(float(dist[j]))},
                                 det["sensor_id"].iat[j]))
        if rng.random() < 0.6:
            ids += calls(t0, "gunshot", lon, lat, 1 + rng.poisson(1.5))
        incident(t0, "gunshot", lon, lat, ids, f"{rounds} coup(s) de feu")
    for t0 in when(rng.poisson(0.3) if len(det) else 0, night):  # fireworks, backfires
        j = rng.integers(len(det))
        a = rng.uniform(0, 2 * np.pi)
        elon, elat = geo.to_lonlat(dx[j] + 300 * np.cos(a), dy[j] + 300 * np.sin(a))
        event(t0, "gunshot", "acoustic", elon, elat, rng.uniform(0.3, 0.6),
              {"rounds": 1, "distance_m": 300}, det["sensor_id"].iat[j])

    # Panic buttons: real alarms and presses by mistake.
    pb = by_kind["panic_button"]
    for real, rate in ((True, 0.3), (False, 0.15)):
        for t0 in when(rng.poisson(rate) if len(pb) else 0, evening):
            b = pb.iloc[rng.integers(len(pb))]
            ids = [event(t0, "panic", "panic_button", b["lon"], b["lat"], 1.0, {"press": 1},
                         b["sensor_id"])]
            if real:
                if rng.random() < 0.4:
                    ids.append(event(t0 + pd.Timedelta(seconds=float(rng.uniform(10, 60))), "panic",
                                     "panic_button", b["lon"], b["lat"], 1.0, {"press": 2},
                                     b["sensor_id"]))
                if rng.random() < 0.5:
                    ids += calls(t0, "panic", b["lon"], b["lat"], 1 + rng.poisson(0.5))
                incident(t0, "panic", b["lon"], b["lat"], ids, "alarme commerce")

    # Street happenings known only from calls, and hoax calls.
    kinds = ["medical", "assault", "theft", "traffic_accident", "fire", "disturbance"]
    weights = np.array([0.35, 0.15, 0.15, 0.15, 0.08, 0.12])
    for t0 in when(rng.poisson(10), evening):
        kind = str(rng.choice(kinds, p=weights))
        lon, lat = street(rng)
        n = 1 + rng.poisson(2.0 if kind == "fire" else 0.8)
        incident(t0, kind, lon, lat, calls(t0, kind, lon, lat, n), kind.replace("_", " "))
    for t0 in when(rng.poisson(1.0), evening):
        calls(t0, str(rng.choice(kinds, p=weights)), *street(rng), 1)

    # Camera detections of the legal kinds, true and false.
    cams = by_kind["camera"]
    cam_kinds, cam_w = list(_CAMERA_KINDS), np.array(list(_CAMERA_KINDS.values()))
    for real, rate in ((True, 0.12), (False, 0.05)):
        for t0 in when(rng.poisson(rate * len(cams)) if len(cams) else 0, evening):
            c = cams.iloc[rng.integers(len(cams))]
            kind = str(rng.choice(cam_kinds, p=cam_w / cam_w.sum()))
            x, y = geo.to_xy(c["lon"], c["lat"])
            lon, lat = geo.to_lonlat(x + rng.normal(0, 15), y + rng.normal(0, 15))
            score = rng.uniform(0.6, 0.95) if real else rng.uniform(0.3, 0.55)
            ids = [event(t0 + pd.Timedelta(seconds=float(rng.uniform(2, 20))), kind, "video",
                         lon, lat, score, {"clip": json.loads(c["metadata"]).get("clip"),
                                           "zone": "main"}, c["sensor_id"])]
            if real:
                extra = {"person_on_ground": 0.5, "fire": 1.0, "abandoned_object": 0.2}
                if rng.random() < extra.get(kind, 0.0):
                    ids += calls(t0, "medical" if kind == "person_on_ground" else kind, lon, lat,
                                 1 + rng.poisson(1.5 if kind == "fire" else 0.3))
                incident(t0, kind, lon, lat, ids, kind.replace("_", " ") + " (caméra)")

    # Crowds at venues, seen by the cameras nearby.
    cx, cy = geo.to_xy(cams["lon"].to_numpy(), cams["lat"].to_numpy())
    for row in calendar[calendar["kind"] == "event"].itertuples(index=False):
        if pd.isna(row.lon):
            continue
        vx, vy = geo.to_xy(row.lon, row.lat)
        near = np.nonzero(np.hypot(cx - vx, cy - vy) < 1000)[0]
        for j in near:
            plan = [("crowd_movement", row.end + pd.Timedelta(minutes=float(rng.uniform(3, 10))), 0.8)]
            if (row.expected_attendance or 0) > 20_000:
                plan.append(("excessive_density", row.start - pd.Timedelta(minutes=float(rng.uniform(20, 40))), 0.6))
            for kind, t0, p in plan:
                if rng.random() < p and day <= t0 < day + pd.Timedelta(days=1):
                    c = cams.iloc[j]
                    ids = [event(t0, kind, "video", c["lon"], c["lat"], rng.uniform(0.6, 0.95),
                                 {"clip": json.loads(c["metadata"]).get("clip"), "zone": "main",
                                  "calendar_id": row.calendar_id}, c["sensor_id"])]
                    incident(t0, kind, c["lon"], c["lat"], ids, f"{row.name}: {kind.replace('_', ' ')}")

    ev = pd.DataFrame(events, columns=["event_id", "ts", "kind", "sensor_id", "lon", "lat", "score",
                                       "source", "details"])
    ev = validate(ev.sort_values(["ts", "event_id"], ignore_index=True), "events")
    inc = pd.DataFrame(incidents, columns=["incident_id", "ts", "kind", "priority", "confidence",
                                           "status", "lon", "lat", "summary", "event_ids", "needs"])
    return ev, _checked(inc.sort_values(["ts", "incident_id"], ignore_index=True), "incidents")


def _street_sampler(nodes: pd.DataFrame, edges: pd.DataFrame):
    """A function drawing a point on a street, denser towards the centre."""
    street = edges[edges["u"] < edges["v"]]
    x, y = geo.to_xy(nodes["lon"].to_numpy(), nodes["lat"].to_numpy())
    u, v = street["u"].to_numpy(), street["v"].to_numpy()
    w = np.exp(-np.hypot((x[u] + x[v]) / 2, (y[u] + y[v]) / 2) / 4000) + 0.05
    w = w / w.sum()

    def draw(rng):
        k, f = rng.choice(len(u), p=w), rng.random()
        lon, lat = geo.to_lonlat(x[u[k]] + f * (x[v[k]] - x[u[k]]), y[u[k]] + f * (y[v[k]] - y[u[k]]))
        return float(lon), float(lat)

    return draw


# =========================================================================== units


def make_stations(nodes: pd.DataFrame) -> pd.DataFrame:
    """Police, fire and ambulance bases, each on its nearest road node."""
    x, y = geo.to_xy(nodes["lon"].to_numpy(), nodes["lat"].to_numpy())
    rows = []
    for k, (kind, name, lon, lat) in enumerate(_STATIONS):
        sx, sy = geo.to_xy(lon, lat)
        node = int(np.argmin(np.hypot(x - sx, y - sy)))
        rows.append({"station_id": f"st-{k + 1:02d}", "kind": kind, "name": name,
                     "lon": nodes["lon"].iat[node], "lat": nodes["lat"].iat[node], "node_id": node})
    return pd.DataFrame(rows)


def simulate_units(roster: pd.DataFrame, stations: pd.DataFrame, incidents: pd.DataFrame,
                   nodes: pd.DataFrame, edges: pd.DataFrame, start, end, seed: int = 0,
                   every: str = "1min") -> tuple[pd.DataFrame, pd.DataFrame]:
    """GPS tracks of the units answering the incidents: ``(units, dispatches)``.

    Police patrol the streets when available, fire and ambulance crews wait at
    their station. For each incident (in time order) the nearest available
    units of the kinds it needs are sent: available -> dispatched -> en_route
    (along the shortest path, 30 % faster than the limits) -> on_scene ->
    returning (to the station) -> available. An incident finding no free unit
    of a kind is recorded as ``unserved``. Positions are reported every
    ``every`` and at each change of status, with a few metres of GPS noise.
    """
    start, end = _utc(start), _utc(end)
    horizon = (end - start).total_seconds()
    rng = _rng(seed, "units")
    n = len(nodes)
    graph = csr_matrix((edges["travel_time_s"].to_numpy(), (edges["u"], edges["v"])), shape=(n, n))
    network = RoadNetwork.from_tables(nodes, edges)
    nx_, ny_ = geo.to_xy(nodes["lon"].to_numpy(), nodes["lat"].to_numpy())
    st_node = dict(zip(stations["station_id"], stations["node_id"]))
    tt = dict(zip(zip(edges["u"].tolist(), edges["v"].tolist()), edges["travel_time_s"].tolist()))

    units = []
    for r in roster.itertuples(index=False):
        node = int(st_node[r.station])
        units.append({"id": r.unit_id, "kind": r.kind, "station": r.station, "home": node,
                      "node": node, "prev": -1, "free": 0.0,
                      "plan": [(0.0, nx_[node], ny_[node], "available", node)]})

    def extend(u, until):
        plan = u["plan"]
        if u["kind"] != "police":
            if plan[-1][0] < until:
                plan.append((until, *plan[-1][1:3], "available", u["node"]))
            return
        while plan[-1][0] < until:
            t, node = plan[-1][0], u["node"]
            if rng.random() < 0.1:  # a stop: a patrol is not always moving
                plan.append((t + rng.uniform(300, 900), nx_[node], ny_[node], "available", node))
                continue
            nb = graph.indices[graph.indptr[node]:graph.indptr[node + 1]]
            nb = nb[nb != u["prev"]] if len(nb) > 1 else nb
            # Stay in the station's sector: streets leading home are preferred.
            home = np.hypot(nx_[nb] - nx_[u["home"]], ny_[nb] - ny_[u["home"]])
            w = np.exp(-home / 1500.0)
            nxt = int(nb[rng.choice(len(nb), p=w / w.sum())])
            plan.append((t + 2.0 * tt[node, nxt], nx_[nxt], ny_[nxt], "available", nxt))
            u["prev"], u["node"] = node, nxt

    def where(u, t):
        times = np.array([p[0] for p in u["plan"]])
        return (np.interp(t, times, [p[1] for p in u["plan"]]),
                np.interp(t, times, [p[2] for p in u["plan"]]))

    def cut(u, t):
        """Drop the plan after ``t``; return the position at ``t`` and the node it was heading to."""
        plan = u["plan"]
        k = int(np.searchsorted([p[0] for p in plan], t, side="right"))
        x, y = where(u, t)
        node = plan[k][4] if k < len(plan) else plan[-1][4]
        del plan[k:]
        return x, y, node

    def drive(u, t, src, dst, status, speedup):
        """Append the fastest road path src -> dst (``RoadNetwork.route``); return the arrival time."""
        path = network.route(src, dst)
        for a, b in zip(path[:-1], path[1:]):
            t += tt[a, b] / speedup
            u["plan"].append((t, nx_[b], ny_[b], status, b))
        return t

    def relabel_last(u, status):
        last = u["plan"][-1]
        u["plan"][-1] = (*last[:3], status, last[4])

    rows = []
    inc = incidents[(incidents["ts"] >= start) & (incidents["ts"] < end)].sort_values("ts")
    for r in inc.itertuples(index=False):
        t_call = (r.ts - start).total_seconds() + rng.uniform(60, 150)
        ix, iy = geo.to_xy(r.lon, r.lat)
        target = int(np.argmin(np.hypot(nx_ - ix, ny_ - iy)))
        sent = set()
        for kind, count in json.loads(r.needs).items():
            for _ in range(count):
                free = [u for u in units if u["kind"] == kind and u["free"] < t_call - 1
                        and u["id"] not in sent]
                if not free or t_call >= horizon:
                    rows.append({"incident_id": r.incident_id, "unit_id": None, "unit_kind": kind,
                                 "status": "unserved"})
                    continue
                for u in free:
                    extend(u, t_call)
                dist = [np.hypot(*(np.subtract(where(u, t_call), (ix, iy)))) for u in free]
                u = free[int(rank_units(dist)[0])]
                sent.add(u["id"])
                x, y, node = cut(u, t_call)
                u["plan"].append((t_call, x, y, "dispatched", node))
                t = t_call + rng.uniform(20, 60) if kind == "police" else t_call + rng.uniform(60, 150)
                u["plan"].append((t, x, y, "en_route", node))
                t += np.hypot(nx_[node] - x, ny_[node] - y) / 13.9
                u["plan"].append((t, nx_[node], ny_[node], "en_route", node))
                t = drive(u, t, node, target, "en_route", 1.3)
                relabel_last(u, "on_scene")
                t_scene = t
                t += 60 * rng.uniform(*{"police": (15, 45), "fire": (30, 90), "ambulance": (20, 40)}[kind])
                t_clear = t
                u["plan"].append((t, nx_[target], ny_[target], "returning", target))
                t = drive(u, t, target, u["home"], "returning", 1.0)
                if u["plan"][-1][3] == "returning" and u["plan"][-1][0] == t_clear:
                    u["plan"].append((t + 1.0, nx_[target], ny_[target], "returning", target))
                    t += 1.0
                relabel_last(u, "available")
                u.update(free=t, node=u["home"], prev=-1)
                rows.append({"incident_id": r.incident_id, "unit_id": u["id"], "unit_kind": kind,
                             "status": "served", "dispatched": start + pd.Timedelta(seconds=t_call),
                             "on_scene": start + pd.Timedelta(seconds=t_scene),
                             "cleared": start + pd.Timedelta(seconds=t_clear),
                             "available": start + pd.Timedelta(seconds=t)})

    step = pd.Timedelta(every).total_seconds()
    grid = np.arange(0.0, horizon, step)
    tracks = []
    kind_of = {u["id"]: u["kind"] for u in units}
    for u in units:
        extend(u, horizon)
        wt = np.array([p[0] for p in u["plan"]])
        status = np.array([p[3] for p in u["plan"]])
        changes = wt[1:][status[1:] != status[:-1]]
        t = np.unique(np.concatenate([grid, changes[changes < horizon]]))
        x = np.interp(t, wt, [p[1] for p in u["plan"]]) + rng.normal(0, 4, len(t))
        y = np.interp(t, wt, [p[2] for p in u["plan"]]) + rng.normal(0, 4, len(t))
        lon, lat = geo.to_lonlat(x, y)
        tracks.append(pd.DataFrame({
            "unit_id": u["id"], "kind": kind_of[u["id"]],
            "status": status[np.searchsorted(wt, t, side="right") - 1],
            "lon": lon, "lat": lat, "ts": start + pd.to_timedelta(t, unit="s"),
            "station": u["station"]}))
    track = pd.concat(tracks, ignore_index=True) if tracks else pd.DataFrame(
        columns=["unit_id", "kind", "status", "lon", "lat", "ts", "station"])
    track["ts"] = pd.DatetimeIndex(track["ts"]).round("ms")
    track = track.drop_duplicates(["unit_id", "ts"], keep="last").sort_values(
        ["ts", "unit_id"], ignore_index=True)
    dispatches = pd.DataFrame(rows, columns=["incident_id", "unit_id", "unit_kind", "status",
                                             "dispatched", "on_scene", "cleared", "available"])
    for c in ("dispatched", "on_scene", "cleared", "available"):  # same precision as the tracks
        dispatches[c] = pd.to_datetime(dispatches[c], utc=True).dt.round("ms")
    return validate(track, "units"), dispatches


def _with_units(incidents: pd.DataFrame, dispatches: pd.DataFrame) -> pd.DataFrame:
    served = dispatches.dropna(subset=["unit_id"]).groupby("incident_id")["unit_id"].agg(list)
    out = incidents.copy()
    out["unit_ids"] = [_json(served.get(i, [])) for i in out["incident_id"]]
    return out


# =========================================================================== files


def write_clips(out_dir, seed: int = 0, scenarios=None, **kwargs) -> list[Path]:
    """Render the scripted camera clips into ``out_dir`` (see ``synthetic_video.write_clips``)."""
    from safecity.sim.clips import write_clips as _write

    return _write(out_dir, seed=seed, scenarios=scenarios, **kwargs)


def camera_installation(sensors: pd.DataFrame, nodes: pd.DataFrame, clips_dir,
                        name: str = "synthetic Marseille"):
    """The city's cameras as an installation (``safecity.config.cameras``), calibrated on the ground.

    Each camera plays its scripted clip (``metadata.clip``, rendered in
    ``clips_dir``) with that clip's zones and limits (``scene_for``), stands at
    its sensor's lon/lat (the ground origin), looks along its street (from the
    street's first node, ``metadata.node_id``, towards the camera and on), and
    maps its image to the ground by the clip's own perspective
    (``clips.ground_points``). The clips must exist: the configuration checks
    every source.
    """
    from safecity.config.cameras import CameraConfig, Installation
    from safecity.sim.clips import ground_points, scene_for

    clips_dir = Path(clips_dir)
    cams = sensors[sensors["kind"] == "camera"]
    node_xy = dict(zip(nodes["node_id"], zip(*geo.to_xy(nodes["lon"], nodes["lat"]))))
    cameras = []
    for row in cams.itertuples(index=False):
        meta = json.loads(row.metadata) if isinstance(row.metadata, str) else dict(row.metadata or {})
        scene = scene_for(meta["clip"])
        cx, cy = geo.to_xy(row.lon, row.lat)
        nx, ny = node_xy.get(meta.get("node_id"), (cx, cy - 1.0))
        bearing = float(np.degrees(np.arctan2(float(cx - nx), float(cy - ny))) % 360)
        base = CameraConfig.from_scene(scene, id=row.sensor_id, source=clips_dir / f"{meta['clip']}.avi")
        cameras.append(CameraConfig.model_validate({
            **base.model_dump(exclude_none=True),
            "position": {"lon": float(row.lon), "lat": float(row.lat)},
            "ground": {"points": ground_points(tuple(scene["size"])),
                       "origin": {"lon": float(row.lon), "lat": float(row.lat)},
                       "bearing_deg": round(bearing, 2)}}))
    return Installation(name=name, cameras=cameras) if cameras else None


# =========================================================================== helpers


def _day(day) -> pd.Timestamp:
    """A UTC midnight; naive input is taken as UTC."""
    ts = pd.Timestamp(day)
    ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    return ts.normalize()


def _utc(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def _rng(seed: int, *keys) -> np.random.Generator:
    """A generator keyed by the seed and names, stable across processes and machines."""
    words = [int(seed) & 0xFFFFFFFF]
    for k in keys:
        if isinstance(k, pd.Timestamp):
            words.append(int(k.value // 86_400_000_000_000) & 0xFFFFFFFF)
        else:
            words.append(zlib.crc32(str(k).encode()))
    return np.random.default_rng(words)


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


_slug = geo._slug


def _checked(df: pd.DataFrame, table: str) -> pd.DataFrame:
    """Validate the data-model columns of ``df`` and keep its extra columns after them."""
    valid = validate(df, table)
    extra = [c for c in df.columns if c not in valid.columns]
    return pd.concat([valid, df[extra].reset_index(drop=True)], axis=1)
