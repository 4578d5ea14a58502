"""From a YAML file to trials: spec loading and overrides (`spec`), the training sections
(`sections`), grid rows as `Trial`s (`trial`), two-stream pairing (`pairs`), the `--smoke`
rewrite (`smoke`) and the warnings for what a spec gives that changes nothing (`advice`)."""

from harness.config.pairs import TwoStream, result_keys, two_stream_pairs
from harness.config.spec import Reference, Spec, SpecError, load_spec, select_trials
from harness.config.trial import Trial, matches

__all__ = [
    "Reference", "Spec", "SpecError", "Trial", "TwoStream", "load_spec", "matches",
    "result_keys", "select_trials", "two_stream_pairs",
]  # fmt: skip
