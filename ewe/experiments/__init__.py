"""Experiments: what trains and attacks models over run folders.

    pipeline.py     run(cfg, out_dir): train the victims (one per watermarking scheme), steal them, verify
    robustness.py   the removal-attack suite over a run folder (robustness.json)
    sweep.py        the one grid runner: grid x seeds of pipeline.run (process pool / Ray / inline)
"""
