"""Great Expectations as catdog runs it: one ephemeral context whose Data Docs are a project folder.

validate's row and data-set checks, and the drift checks of validate and `catdog monitor`, all run
their suites through `GXChecker.check`: one implementation of each check.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


class GXChecker:
    """An ephemeral GX context whose Data Docs site is a folder of the project."""

    def __init__(self, docs_dir: Path, template_cache: Path | None = None):
        import great_expectations as gx

        self.gx = gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        from catdog.data.data_docs import site_config

        # All settings up front: each one changed afterwards re-serialises the whole config.
        self.context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                progress_bars=ProgressBarsConfig(globally=False),
                data_docs_sites={"catdog": site_config(docs_dir, template_cache)},
            ),
        )
        # One asset and batch definition serve every check (a whole-dataframe batch takes its frame when
        # run): each change to a data source re-serialises the whole context's config.
        self.batch = (
            self.context.data_sources.add_pandas("images")
            .add_dataframe_asset("facts")
            .add_batch_definition_whole_dataframe("all rows")
        )

    def check(self, name: str, frame: pd.DataFrame, expectations) -> list:
        gx = self.gx
        # The suite whole at once and no Checkpoint around one definition: each store write costs.
        suite = self.context.suites.add(gx.ExpectationSuite(name=name, expectations=list(expectations)))
        definition = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=self.batch, suite=suite)
        )
        result = definition.run(
            batch_parameters={"dataframe": frame},
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["path"]},
        )
        return list(result.results)

    def build_docs(self) -> None:
        """Render the Data Docs of every check so far: once per run, rendering is most of GX's time."""
        self.context.build_data_docs(site_names=["catdog"])


def quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import logging

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
