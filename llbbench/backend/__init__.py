"""What a run needs of the machine: its device, numeric precision, processes (torchrun, Slurm) and GPU claims.
Imports nothing else of llbbench."""
