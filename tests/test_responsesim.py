"""The response-time simulation: policies on the same calls, queueing, figures, command line."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from safecity.dispatch import policies as rs
from safecity.cli import main
from safecity.dispatch.network import RoadNetwork

STEP_DEG = 0.0025  # about 200 m of latitude, 180 m of longitude at Marseille
LON0, LAT0 = 5.37, 43.29


def grid(nx: int, ny: int, cut_rows: tuple[int, int] | None = None, bridge_col: int | None = None):
    """A two-way street grid; with ``cut_rows`` the streets between those rows are a river
    crossed only at ``bridge_col``."""
    ids = np.arange(nx * ny).reshape(ny, nx)
    nodes = pd.DataFrame({"node_id": ids.ravel(), "lon": LON0 + STEP_DEG * np.tile(np.arange(nx), ny),
                          "lat": LAT0 + STEP_DEG * np.repeat(np.arange(ny), nx)})
    pairs = [(ids[j, i], ids[j, i + 1]) for j in range(ny) for i in range(nx - 1)]
    pairs += [(ids[j, i], ids[j + 1, i]) for j in range(ny - 1) for i in range(nx)
              if cut_rows != (j, j + 1) or i == bridge_col]
    one = pd.DataFrame(pairs, columns=["u", "v"])
    edges = pd.concat([one, one.rename(columns={"u": "v", "v": "u"})], ignore_index=True)
    lon, lat = nodes["lon"].to_numpy(), nodes["lat"].to_numpy()
    from safecity.data.geo import distance_m

    edges["length_m"] = distance_m(lon[edges["u"]], lat[edges["u"]], lon[edges["v"]], lat[edges["v"]])
    edges["road_class"] = "residential"
    edges["speed_kmh"] = 30.0
    edges["travel_time_s"] = edges["length_m"] / (30 / 3.6)
    return RoadNetwork.from_tables(nodes, edges)


def at(i, j):
    return LON0 + STEP_DEG * i, LAT0 + STEP_DEG * j


def units_at(*spots, kind="police"):
    return pd.DataFrame([{"unit_id": f"u{k}", "kind": kind, "station": f"s{k}",
                          "lon": at(*p)[0], "lat": at(*p)[1]} for k, p in enumerate(spots)])


def spaced_calls(points, kind="police", gap="6h"):
    """Calls far apart in time, so every unit is home and free for each."""
    ts = pd.Timestamp("2026-06-01", tz="UTC") + pd.to_timedelta(np.arange(len(points)) * pd.Timedelta(gap))
    return pd.DataFrame({"ts": ts, "lon": [p[0] for p in points], "lat": [p[1] for p in points],
                         "kind": kind})


def test_straight_line_picks_the_unit_across_the_river_and_road_does_not():
    net = grid(10, 4, cut_rows=(1, 2), bridge_col=9)
    units = units_at((0, 2), (4, 0))  # u0: across the river, 200 m away; u1: same bank, 830 m
    calls = spaced_calls([at(0, 1)])
    straight = rs.simulate_responses(net, calls, units, "straight_line")
    road = rs.simulate_responses(net, calls, units, "road")
    assert straight["unit_id"].iat[0] == "u0" and road["unit_id"].iat[0] == "u1"
    assert road["travel_s"].iat[0] < straight["travel_s"].iat[0] / 2


def test_road_never_travels_longer_than_straight_line_when_units_are_free():
    net = grid(8, 8, cut_rows=(3, 4), bridge_col=0)
    units = units_at((1, 1), (6, 2), (2, 5), (6, 6))
    rng = np.random.default_rng(0)
    calls = spaced_calls([at(*rng.integers(0, 8, 2)) for _ in range(60)])
    road = rs.simulate_responses(net, calls, units, "road")
    straight = rs.simulate_responses(net, calls, units, "straight_line")
    assert (road["wait_s"] == 0).all()
    assert (road["travel_s"].to_numpy() <= straight["travel_s"].to_numpy() + 1e-9).all()
    assert road["travel_s"].mean() < straight["travel_s"].mean()  # the river makes a difference


def test_every_policy_answers_the_same_calls():
    net = grid(6, 6)
    units = pd.concat([units_at((0, 0), (5, 5)), units_at((0, 5), kind="fire").assign(unit_id="f0")],
                      ignore_index=True)
    calls = rs.synthetic_calls(net, 80, days=0.5, seed=3, shares={"police": 0.7, "fire": 0.3})
    results = rs.compare_policies(net, calls, units)
    sets = results.groupby("policy")["call_id"].apply(frozenset)
    assert set(sets.index) == set(rs.POLICIES)
    assert len(set(sets)) == 1 and len(sets.iat[0]) == len(calls)
    # a fire call is answered by the fire unit, whatever the policy
    fire = results[results["kind"] == "fire"]
    assert (fire["unit_id"] == "f0").all()


def test_calls_queue_when_every_unit_is_busy():
    net = grid(5, 5)
    units = units_at((0, 0))
    t = pd.Timestamp("2026-06-01 12:00", tz="UTC")
    calls = pd.DataFrame({"call_id": ["a", "b", "c"], "ts": [t, t + pd.Timedelta("1min"), t],
                          "lon": at(4, 4)[0], "lat": at(4, 4)[1], "kind": "police"})
    out = rs.simulate_responses(net, calls, units, "road", dispatch_delay_s=30, on_scene_s=600.0)
    out = out.set_index("call_id")
    trip = out.loc["a", "travel_s"]
    assert out.loc["a", "wait_s"] == 0
    # c came at the same time as a (after it in id order), b a minute later: first come, first served
    assert out.loc["c", "wait_s"] == pytest.approx(2 * trip + 600)
    assert out.loc["b", "wait_s"] == pytest.approx(2 * (2 * trip + 600) - 60)
    assert np.allclose(out["response_s"], 30 + out["wait_s"] + out["travel_s"])


def test_coverage_keeps_the_only_unit_of_a_far_corner_home():
    net = grid(12, 3)
    calls = spaced_calls([at(5, 1)])
    # Two units equally near the call; the one at column 4 alone covers the west end
    # (the unit at column 11 covers the east), so coverage sends the one at column 6,
    # whichever order the roster lists them in.
    for spots in (((4, 1), (6, 1), (11, 1)), ((6, 1), (4, 1), (11, 1))):
        units = units_at(*spots)
        cover = rs.simulate_responses(net, calls, units, "coverage", coverage_target_s=130)
        sent = int(cover["unit_id"].iat[0][1:])
        assert spots[sent] == (6, 1)
        road = rs.simulate_responses(net, calls, units, "road", coverage_target_s=130)
        assert cover["travel_s"].iat[0] <= road["travel_s"].iat[0] * 1.2


def test_summary_intervals_contain_the_estimates_and_ratios_are_paired():
    net = grid(8, 8, cut_rows=(3, 4), bridge_col=0)
    units = units_at((1, 1), (6, 2), (2, 5), (6, 6))
    calls = rs.synthetic_calls(net, 200, days=1, seed=1, shares={"police": 1.0})
    figures = rs.summarise(rs.compare_policies(net, calls, units), n_boot=300).set_index("policy")
    assert list(figures.index) == list(rs.POLICIES)
    for name in ("mean", "median", "p90"):
        assert (figures[f"{name}_lo"] <= figures[f"{name}_s"]).all()
        assert (figures[f"{name}_s"] <= figures[f"{name}_hi"]).all()
    assert figures.loc["static", "ratio_mean"] == 1.0
    assert figures.loc["road", "ratio_mean_lo"] <= figures.loc["road", "ratio_mean"] <= \
        figures.loc["road", "ratio_mean_hi"]


def test_calls_from_a_synthetic_city_expand_what_each_incident_needs():
    from types import SimpleNamespace

    incidents = pd.DataFrame({"incident_id": ["i1", "i2"], "ts": pd.Timestamp("2026-06-01", tz="UTC"),
                              "lon": 5.37, "lat": 43.29,
                              "needs": ['{"police": 2}', '{"police": 1, "ambulance": 1}']})
    calls = rs.calls_from_city(SimpleNamespace(truth={"incidents": incidents}))
    assert sorted(calls["call_id"]) == ["i1:police:0", "i1:police:1", "i2:ambulance:0", "i2:police:0"]


def test_cli_prints_the_figures_of_each_policy(tmp_path):
    net = grid(8, 8, cut_rows=(3, 4), bridge_col=0)
    (tmp_path / "network").mkdir()
    net.nodes.to_parquet(tmp_path / "network" / "nodes.parquet")
    net.edges.to_parquet(tmp_path / "network" / "edges.parquet")
    rs.synthetic_calls(net, 60, days=1, seed=2).to_csv(tmp_path / "calls.csv", index=False)
    rs.synthetic_units(net, seed=2).to_csv(tmp_path / "units.csv", index=False)
    result = CliRunner().invoke(main, ["dispatch", "simulate", "--network", str(tmp_path / "network"),
                                       "--calls", str(tmp_path / "calls.csv"),
                                       "--units", str(tmp_path / "units.csv"), "--boot", "50"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert {"network", "calls", "units", "dispatch_delay_s", "policies"} <= set(out)
    assert out["calls"] == 60 and list(out["policies"]) == list(rs.POLICIES)
    for fig in out["policies"].values():
        for key in ("mean_s", "mean_ci", "median_s", "median_ci", "p90_s", "p90_ci", "ratio_mean",
                    "ratio_mean_ci", "mean_travel_s", "mean_wait_s", "queued", "unanswered"):
            assert key in fig
        assert fig["mean_ci"][0] <= fig["mean_s"] <= fig["mean_ci"][1]

    one = CliRunner().invoke(main, ["dispatch", "simulate", "--network", str(tmp_path / "network"),
                                    "--calls", str(tmp_path / "calls.csv"), "--units",
                                    str(tmp_path / "units.csv"), "--policy", "road", "--boot", "50"])
    assert list(json.loads(one.output)["policies"]) == ["road"]


def test_cli_names_a_missing_column(tmp_path):
    net = grid(3, 3)
    net.nodes.to_parquet(tmp_path / "nodes.parquet")
    net.edges.to_parquet(tmp_path / "edges.parquet")
    pd.DataFrame({"ts": ["2026-06-01"], "lon": [5.37], "lat": [43.29]}).to_csv(tmp_path / "c.csv", index=False)
    units_at((0, 0)).to_csv(tmp_path / "u.csv", index=False)
    result = CliRunner().invoke(main, ["dispatch", "simulate", "--network", str(tmp_path),
                                       "--calls", str(tmp_path / "c.csv"), "--units", str(tmp_path / "u.csv")])
    assert result.exit_code != 0 and "'kind'" in result.output
