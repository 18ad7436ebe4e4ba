"""asv benchmarks of futurefill: online generation, prefill, memory and in-process ratios."""
