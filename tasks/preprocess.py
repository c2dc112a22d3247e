"""Prefect task: convert one shard of the preprocess stage (the unit of the fan-out)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from catdog.core.config import PreprocessParams
from catdog.data import conversion
from catdog.stages import preprocess


@task(name="convert-shard", task_run_name="{job.split}-{job.number:05d}", retries=1, retry_delay_seconds=5)
def convert_shard(
    job: conversion.ShardJob, params: PreprocessParams, ingested: str, folder: str, cache_dir: str, max_pixels: int
) -> int:
    """Write `job`'s shard into `folder`, which every worker must see (a shared file system), as the
    per-image cache in `cache_dir`; returns how many images it converted (the rest were reused)."""
    cache = preprocess.array_cache(params, Path(cache_dir))
    converted = conversion.convert_shard(job, params, Path(ingested), Path(folder), cache, max_pixels=max_pixels)
    get_run_logger().info(f"{job.name}: {len(job.paths)} images, {converted} converted")
    return converted
