"""Benchmarks: ``ivl-embodied bench {transport,model,runtime,sim}``."""
