"""Great Expectations' Data Docs pages, with their Jinja templates compiled once per machine.

GX builds a fresh Jinja environment for every view and compiles some fifty templates on each
run: most of an incremental validate's time. These views are GX's own, told through the site
config (`view: {module_name, class_name}`) to keep the compiled templates in a folder; Jinja
checks each against its source, so a GX upgrade recompiles. The pages are the same either way.
"""

from __future__ import annotations

from pathlib import Path

from great_expectations.render.view import (
    DefaultJinjaIndexPageView,
    DefaultJinjaPageView,
)
from jinja2 import FileSystemBytecodeCache


class _KeepsCompiled:
    """Put before a GX Jinja view: its environment keeps compiled templates in `template_cache`."""

    def __init__(self, template_cache: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if template_cache:
            Path(template_cache).mkdir(parents=True, exist_ok=True)
            self.env.bytecode_cache = FileSystemBytecodeCache(template_cache)


class CachedPageView(_KeepsCompiled, DefaultJinjaPageView):
    pass


class CachedIndexPageView(_KeepsCompiled, DefaultJinjaIndexPageView):
    pass


def site_config(docs_dir: Path, template_cache: Path | None) -> dict:
    """A SiteBuilder writing to `docs_dir`; with `template_cache`, compiled templates are kept there."""

    def view(name: str) -> dict:
        return {
            "module_name": __name__,
            "class_name": name,
            "template_cache": str(template_cache) if template_cache else None,
        }

    return {
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "view": view("CachedIndexPageView")},
        "site_section_builders": {
            section: {"view": view("CachedPageView")} for section in ("expectations", "validations", "profiling")
        },
    }
