"""The commands above single runs: `tune` (the rate grids), `saddle` (Fig. 8), `preflight` (a sweep's runs
checked before any trains) and `sweeps` (a sweep's progress and counts)."""
