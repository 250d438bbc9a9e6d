"""Benchmarks and the performance budget (``scripts/bench``).

Benchmarks are not tests: they measure the kiosk on the same work every time (the
simulator, FIFO audio through the file adapters, the reference lead receiver) and compare
the numbers with the budget in the README. Only ``scripts/bench --check`` fails on a
slow machine; the test suite never does.
"""
