"""The benchmark: bpcore against the pure-Python reference, NumPy, PyTorch and JAX.

Run it with ``python -m bpcore.bench`` (``--help`` for the options). Every system trains the same
networks, from the same initial weights, on the same synthetic data with the same optimizer, in
alternating turns in one run; results are read as ratios of medians (bpcore ÷ other), which
survive the noise of a shared machine better than absolute numbers.

Files, one idea each: ``workloads`` (what is trained), ``data`` (synthetic data), ``timing``
(clocks), ``run_bpcore`` / ``run_reference`` / ``run_numpy`` / ``run_torch`` / ``run_jax`` (one
system each), ``numpy_mlp`` (the plain NumPy network), ``parity`` (NumPy computes what bpcore
computes), ``memory`` (peak resident memory in a fresh process), ``scaling`` /
``scaling_worker`` (1 process × 2 threads vs 2 MPI processes × 1 thread, launched with
mpiexec), ``sklearn_fit`` (bpcore.sklearn's estimators against scikit-learn's: fit time and
accuracy), ``targets`` (the goals), ``report`` (table, JSON, chart) and ``__main__`` (the
command line).
"""
