"""Prefect task: convert one shard of the preprocess stage (the unit of the fan-out)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from catdog import preprocess
from catdog.config import PreprocessParams


@task(name="convert-shard", task_run_name="{job.split}-{job.number:05d}", retries=1, retry_delay_seconds=5)
def convert_shard(job: preprocess.ShardJob, params: PreprocessParams, ingested: str, folder: str,
                  cache_dir: str) -> int:
    """Write `job`'s shard into `folder`, which every worker must see (a shared file system), as the
    per-image cache in `cache_dir`; returns how many images it converted (the rest were reused)."""
    cache = preprocess.array_cache(params, Path(cache_dir))
    converted = preprocess.convert_shard(job, params, Path(ingested), Path(folder), cache)
    get_run_logger().info(f"{job.name}: {len(job.paths)} images, {converted} converted")
    return converted
