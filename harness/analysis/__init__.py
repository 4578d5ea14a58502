"""Numbers computed from models and results, with no side effects: video metrics, paired
significance tests, two-stream score fusion, FLOP and parameter counts, latency, profiles."""
