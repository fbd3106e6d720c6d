"""Benchmarks: each prints a markdown table of medians and ratios measured side by side."""
