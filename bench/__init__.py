"""Benchmarks that print numbers (make bench). No timed assertions live anywhere in the test suite."""
