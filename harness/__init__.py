"""What runs the registry's models. Data flows one way through its packages: a spec becomes
trials (`config`); each trial gets its data (`data`), model and optimiser and is trained and
evaluated (`train`); a sweep runs the trials (`execute`) and logs them through one interface
(`tracking`); analysis and reports read them back (`analysis`, `report`); `cli` is the command
line."""

__version__ = "0.1.0"
