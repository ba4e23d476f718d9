"""``safecity dispatch``: simulate response policies and build their inputs."""
from __future__ import annotations

import json
from pathlib import Path

import click

from safecity.cli.root import main
from safecity.cli.options import _write_table_file, _read_table_file, _check_out



@main.group("dispatch")
def dispatch_group() -> None:
    """Dispatch: compare policies on the same calls with a response-time simulation."""


def _load_network(path):
    """A RoadNetwork from an .osm.pbf extract or a directory with nodes.parquet and edges.parquet."""

    from safecity.dispatch.network import RoadNetwork

    from safecity.data.citydir import NETWORK_DIR

    p = Path(path)
    if p.is_dir():  # a city directory, or its network folder
        p = p / NETWORK_DIR if (p / NETWORK_DIR / "nodes.parquet").exists() else p
        if not (p / "nodes.parquet").exists() or not (p / "edges.parquet").exists():
            raise click.ClickException(f"{path}: no nodes.parquet and edges.parquet there")
        nodes, edges = _read_table_file(p / "nodes.parquet"), _read_table_file(p / "edges.parquet")
        try:
            return RoadNetwork.from_tables(nodes, edges)
        except (ValueError, KeyError, TypeError) as err:
            raise click.ClickException(f"{p}: not a road network (nodes.parquet, edges.parquet): {err}") from None
    if p.name.lower().endswith(".pbf"):
        try:
            return RoadNetwork.from_osm(p)
        except ValueError as err:
            raise click.ClickException(str(err)) from None
    raise click.ClickException(f"{path}: expected an .osm.pbf file or a directory with nodes/edges parquet")


def _checked_table(path, needed, what):
    table = _read_table_file(path, needed)
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise click.ClickException(f"{path}: missing column {', '.join(repr(c) for c in missing)} "
                                   f"({what} need {', '.join(needed)}; the file has "
                                   f"{', '.join(map(str, table.columns))})")
    return table


@dispatch_group.command("simulate")
@click.option("--network", "network_path", required=True, type=click.Path(exists=True),
              help="Road network: an .osm.pbf extract or a directory with nodes.parquet, edges.parquet.")
@click.option("--calls", "calls_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Calls, CSV or Parquet: ts, lon, lat, kind (police, fire, ambulance), optional call_id.")
@click.option("--units", "units_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Units, CSV or Parquet: unit_id, kind, lon, lat (home station), optional station.")
@click.option("--policy", type=click.Choice(["static", "straight_line", "road", "coverage", "all"]),
              default="all", show_default=True)
@click.option("--dispatch-delay", type=click.FloatRange(0), default=60.0, show_default=True,
              help="Seconds from the call to the dispatch decision.")
@click.option("--coverage-target", type=click.FloatRange(0, min_open=True), default=480.0,
              show_default=True, help="Coverage policy: seconds within which a node counts as covered.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of on-scene times and bootstrap.")
@click.option("--boot", type=click.IntRange(10), default=1000, show_default=True,
              help="Bootstrap resamples for the confidence intervals.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), callback=_check_out,
              help="Also write the per-call results (.csv or .parquet).")
def dispatch_simulate(network_path, calls_path, units_path, policy, dispatch_delay, coverage_target,
                      seed, boot, out_path) -> None:
    """Answer the same calls under each dispatch policy; print response-time figures as JSON.

    Keys: network (nodes, edges), calls, units, dispatch_delay_s,
    coverage_target_s, seed, and policies: per policy calls, queued,
    unanswered, mean_s, median_s, p90_s (each with *_ci, a bootstrap 95 %
    interval), mean_travel_s, mean_wait_s, and ratio_mean / ratio_p90 to the
    static policy with their intervals. Times are seconds from the call to
    arrival on scene.
    """
    from safecity.dispatch import policies as rs

    network = _load_network(network_path)
    calls = _checked_table(calls_path, ["ts", "lon", "lat", "kind"], "calls")
    units = _checked_table(units_path, ["unit_id", "kind", "lon", "lat"], "units")
    for path, table, what in ((calls_path, calls, "call"), (units_path, units, "unit")):
        try:
            rs.check_kinds(table, what)
        except ValueError as err:
            raise click.ClickException(f"{path}: {err}") from None
    policies = rs.POLICIES if policy == "all" else (policy,)
    try:
        results = rs.compare_policies(network, calls, units, policies, dispatch_delay_s=dispatch_delay,
                                      coverage_target_s=coverage_target, seed=seed)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    if len(calls) and results["unit_id"].isna().all():
        raise click.ClickException(
            f"{calls_path}: no call could be answered by a unit of {units_path} (call kinds "
            f"{', '.join(sorted(map(str, calls['kind'].unique())))}; unit kinds "
            f"{', '.join(sorted(map(str, units['kind'].unique())))}; or no unit reaches them)")
    if out_path:
        _write_table_file(results, out_path)
    figures = rs.summarise(results, n_boot=boot, seed=seed)
    click.echo(json.dumps({
        "network": {"path": str(network_path), "nodes": len(network.nodes), "edges": len(network.edges)},
        "calls": len(calls), "units": len(units), "dispatch_delay_s": dispatch_delay,
        "coverage_target_s": coverage_target, "seed": seed,
        "policies": rs.figures_dict(figures)}, indent=1))


@dispatch_group.command("inputs")
@click.option("--network", "network_path", required=True, type=click.Path(exists=True),
              help="Road network: an .osm.pbf extract or a directory with nodes.parquet, edges.parquet.")
@click.option("--city", "city_dir", type=click.Path(exists=True, file_okay=False),
              help="A 'safecity simulate' directory: its units, and its incidents as calls.")
@click.option("--synthetic-calls", is_flag=True,
              help="With --city: Poisson calls (--n-calls over --days) instead of the city's incidents.")
@click.option("--n-calls", type=click.IntRange(1), default=300, show_default=True)
@click.option("--days", type=click.FloatRange(0, min_open=True), default=2.0, show_default=True)
@click.option("--per-station", type=click.IntRange(1), default=1, show_default=True,
              help="Synthetic units per station (4 police, 3 fire, 3 ambulance stations).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--calls-out", required=True, type=click.Path(dir_okay=False), callback=_check_out,
              help=".csv or .parquet")
@click.option("--units-out", required=True, type=click.Path(dir_okay=False), callback=_check_out,
              help=".csv or .parquet")
def dispatch_inputs(network_path, city_dir, synthetic_calls, n_calls, days, per_station, seed, calls_out,
                    units_out) -> None:
    """Write calls and units files for 'dispatch simulate'.

    With --city, the synthetic city's roster at its stations and its incidents
    (one call per unit an incident needs); otherwise --n-calls Poisson calls
    at random nodes of --network over --days and units at stations spread
    over it (4 police, 3 fire, 3 ambulance).
    """

    from safecity.dispatch import policies as rs

    if city_dir:
        from safecity.data import citydir
        from safecity.data.tables import TableFileError

        try:
            city = citydir.read_city(city_dir, store=False)
        except (OSError, TableFileError) as err:
            raise click.ClickException(f"{city_dir}: not a city directory ('safecity simulate' "
                                       f"writes one): {err}") from None
        if "incidents" not in city.truth:
            raise click.ClickException(f"{city_dir}: no truth/incidents.parquet to make calls from")
        units = rs.units_from_city(city)
        calls = rs.calls_from_city(city) if not synthetic_calls else \
            rs.synthetic_calls(_load_network(network_path), n_calls, days=days, seed=seed)
    else:
        network = _load_network(network_path)
        calls = rs.synthetic_calls(network, n_calls, days=days, seed=seed)
        units = rs.synthetic_units(network, per_station=per_station, seed=seed)
    _write_table_file(calls, calls_out)
    _write_table_file(units, units_out)
    click.echo(json.dumps({"calls": len(calls), "units": len(units), "calls_out": calls_out,
                           "units_out": units_out}))
