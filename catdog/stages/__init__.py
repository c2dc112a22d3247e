"""The pipeline's stages, one module per dvc.yaml stage, each run as `python -m catdog.stages.NAME`.

A stage module says what it reads and writes (catdog.core.paths) and holds its `stage` function;
the work it shares with another stage lives in catdog.data, catdog.model or catdog.registry, since
no stage imports another."""
