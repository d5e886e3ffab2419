"""What the runs leave on disk, read and written in one place: a run directory (`run`: its files, statuses,
tables, summary, lock and checkpoint; `environment`: env.json) and the files beside them (`tuning`:
tuning.json; `saddle`: saddle.json). The training code writes them, the report and the commands read them."""
