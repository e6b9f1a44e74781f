"""Training tools for streamcount models: datasets and GT density maps, the SKT losses,
teacher / student / SKT tasks, the training loop, evaluation, export and the SKT experiment.

Run ``python -m training {train,evaluate,export,experiment} --help``.
"""

import os

# OpenMP worker threads busy-wait by default; on an oversubscribed CPU (a shared 2-core
# machine) that burned 4-5x the CPU time per training step here (1.31 vs 0.29 core-seconds).
# Passive waiting, unless the user chose otherwise; it must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
