"""`catdog sweep`: tuning train params on validation with Optuna (a study, a sampler, a pruner),
trials trained by the pipeline's own training code, on local processes or Dask workers."""
