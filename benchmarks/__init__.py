"""Benchmark suite: Langevin against NUTS, BarkerMH, one-step HMC and BlackJAX MALA.

Run ``python benchmarks/run.py`` (full) or ``python benchmarks/run.py --quick``; see
``benchmarks/RESULTS.md`` for the protocol and the latest numbers.
"""
