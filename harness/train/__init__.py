"""Training one trial: the epoch loop and evaluation (`engine`), optimiser and schedules
(`optim`), the resume format (`checkpoint`), DDP (`distributed`), the trial's data (`inputs`),
`run_trial` (`trial`) and the training benchmark (`bench`)."""
