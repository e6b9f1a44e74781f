"""Benchmarks: model throughput per backend/precision/batch/size (:mod:`.model`) and how many
camera streams one machine sustains end to end (:mod:`.capacity`)."""
