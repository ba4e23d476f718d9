"""Road network, units, recommendations and response-time analysis."""
