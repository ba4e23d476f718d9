"""Running safecity on a Dask cluster where one machine is not enough.

One machine, with no cluster at all, stays the default; a command given
``--scheduler tcp://HOST:8786`` (or ``local:N`` for a ``LocalCluster`` of N worker
processes on this machine) spreads its work over the cluster's workers:

* ``scheduler``: what ``--scheduler`` names, and the client connected to it;
* ``cameras``: each camera's pipeline as a long-running task on a worker,
  balanced by cost, restarted on another worker when its own dies;
* ``history``: the usual-level baseline over Dask dataframes of the Parquet
  history, partitioned by sensor;
* ``forecasts``: the gathering forecaster over the same, fitted and forecasting
  block of sensors by block.

Privacy holds across machines: a raw frame and a repeated-presence signature
never leave the worker process that made them; only rows (observations,
events), blurred tiles and health cross the network.
"""
