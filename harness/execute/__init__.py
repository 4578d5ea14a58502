"""Running a spec: the sweep and its failure policy (`sweep`), what must hold before it trains
(`preflight`), where trials run (`backends`: serial, joblib, Dask), and the two-stream fusion
that follows a sweep (`fusion`)."""
