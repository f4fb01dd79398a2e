"""Test doubles for tests and benchmarks of the orchestration — never what a user runs.

``simjudge.EnsembleSim``: a simulated model that plays the roles of an ensemble (generator, critic,
ranker, fuser, verifier) with controllable quality, so ensemble and search benchmarks can check their own
results. The store's test double is ``conclave.core.memory.InMemoryRunStore``.
"""
