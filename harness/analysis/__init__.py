"""Numbers computed from models and results, with no side effects: video metrics, comparisons
over training runs (`replication`) and per-video paired tests (`significance`), two-stream score
fusion, FLOP and parameter counts, latency, profiles."""
