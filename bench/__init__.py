"""Keyturn's benchmarks: `make bench` runs them all on this machine and writes bench/RESULTS.md.

They measure and report; nothing here asserts a timing (the tests never do either).
"""
