"""A model registry kept as plain files (works with or without git).

    data/registry/
      versions/v0001/model.keras   the model, byte for byte
      versions/v0001/card.json     params, metrics, data fingerprint, code revision, sha256,
                                   and the gate's decision with its reason
      versions/v0001/data-profile.csv  facts of the images it was trained on (drift checks)
      versions/v0001/test-predictions.csv  its p_dog on the images the gate judged it on (monitoring)
      state.json                   {"production": "v0003", "history": ["v0001", "v0003"]}
      events.jsonl                 what happened, one JSON line per event

Whether a new version becomes production is the gate's verdict (catdog/registry/gate.py), decided
against the production version of that moment; the registry stores it with its reason. Every
change happens under a file lock and lands by atomic rename, so a killed process leaves either
the old or the new state, never a mix.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from catdog.core.errors import CatdogError
from catdog.core.files import locked, read_json, sha256_file, write_json
from catdog.registry.gate import Verdict

if TYPE_CHECKING:  # pandas only for the methods that use it: `catdog models list` answers at once
    import pandas as pd

    from catdog.data.drift import ProductionData

PRODUCTION = "production"
_VERSION = re.compile(r"^v(\d{4,})$")


DATA_PROFILE = "data-profile.csv"
TEST_PREDICTIONS = "test-predictions.csv"


class RegistryError(CatdogError):
    """A registry request that cannot be served; the message says what to do."""


@dataclass(frozen=True)
class Decision:
    version: str
    production: bool
    reason: str
    already_registered: bool = False


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RegistryView:
    """Reading the registry: its state, versions, cards and the files kept with each version."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.versions_dir = self.root / "versions"

    def state(self) -> dict:
        path = self.root / "state.json"
        return read_json(path) if path.exists() else {"production": None, "history": []}

    def versions(self) -> list[str]:
        if not self.versions_dir.exists():
            return []
        names = [p.name for p in self.versions_dir.iterdir() if _VERSION.match(p.name)]
        return sorted(names, key=lambda name: int(name[1:]))

    def resolve(self, ref: str) -> str:
        if ref == PRODUCTION:
            production = self.state()["production"]
            if production is None:
                raise RegistryError(
                    "there is no production model yet: run `dvc repro` (or `make run`), "
                    "or promote a version with `catdog models promote VERSION`"
                )
            return production
        if ref == "latest":
            versions = self.versions()
            if not versions:
                raise RegistryError("the registry is empty: run `dvc repro` (or `make run`) first")
            return versions[-1]
        if ref not in self.versions():
            known = ", ".join(self.versions()) or "none"
            raise RegistryError(f"no model version {ref!r} in {self.root} (versions: {known})")
        return ref

    def _card_file(self, version: str) -> dict:
        return read_json(self.versions_dir / version / "card.json")

    def card(self, ref: str) -> dict:
        version = self.resolve(ref)
        card = self._card_file(version)
        state = self.state()
        card["status"] = (
            PRODUCTION
            if version == state["production"]
            else "previous production"
            if version in state["history"]
            else "candidate"
        )
        return card

    def cards(self) -> list[dict]:
        return [self.card(version) for version in self.versions()]

    def newest_candidate(self) -> str | None:
        """The newest version the gate did not promote, if it is newer than production."""
        production = self.state()["production"]
        for version in reversed(self.versions()):
            if production is not None and int(version[1:]) <= int(production[1:]):
                return None
            if self.card(version)["status"] == "candidate":
                return version
        return None

    def model_path(self, ref: str) -> Path:
        """The model file of a version, after checking it is the file that was registered."""
        version = self.resolve(ref)
        path = self.versions_dir / version / "model.keras"
        expected = self._card_file(version)["model_sha256"]
        if not path.exists() or sha256_file(path) != expected:
            raise RegistryError(
                f"model {version} at {path} does not match its registered sha256 {expected[:12]}...: "
                "the file was changed or damaged, so it will not be served. Restore it, or promote "
                "another version (`catdog models list`)."
            )
        return path

    def data_profile(self, ref: str) -> Path | None:
        """The data profile kept with a version (None for versions registered before profiles)."""
        return self._kept(ref, DATA_PROFILE)

    def test_predictions(self, ref: str) -> Path | None:
        """A version's answers on its test images (None for versions registered before they were kept)."""
        return self._kept(ref, TEST_PREDICTIONS)

    def _kept(self, ref: str, name: str) -> Path | None:
        path = self.versions_dir / self.resolve(ref) / name
        return path if path.exists() else None

    def production_data(self) -> ProductionData | None:
        """What the production model was trained on (None: no production model, or one registered
        before data profiles were kept), for the drift checks."""
        import pandas as pd

        from catdog.data.drift import ProductionData  # noqa: F811 (imported above for the annotation only)

        version = self.state()["production"]
        profile = self.data_profile(version) if version else None
        if profile is None:
            return None
        rejected_share = self.card(version).get("data", {}).get("rejected_share")
        return ProductionData(version, pd.read_csv(profile, dtype={"sha256": str}), rejected_share)

    def load_model(self, ref: str):
        from catdog.model.network import load_model

        return load_model(self.model_path(ref))


class Registry(RegistryView):
    """The registry, read and changed: register, promote, roll back; each under its lock."""

    def _locked(self):
        return locked(self.root / ".lock")

    def _log(self, event: str, **details) -> None:
        with open(self.root / "events.jsonl", "a") as log:
            log.write(json.dumps({"time": _now(), "event": event, **details}) + "\n")

    def _set_production(self, version: str | None, history: list[str]) -> None:
        write_json(self.root / "state.json", {"production": version, "history": history})

    def register(
        self,
        model_file: Path,
        card: dict,
        verdict: Verdict,
        compared_with: str | None,
        data_profile: pd.DataFrame | None = None,
        test_predictions: pd.DataFrame | None = None,
    ) -> Decision:
        """Add a model as a new version with the gate's verdict, which was decided against production
        version `compared_with`: if production changed meanwhile, nothing is written. `data_profile`
        (facts of the images it was trained on) is kept with it, for the drift checks of later runs,
        and `test_predictions` (its answers on the test images), for the monitoring of served answers."""
        digest = sha256_file(model_file)
        with self._locked():
            self._clean_partials()
            same = next((v for v in self.versions() if self._card_file(v)["model_sha256"] == digest), None)
            if same is not None:
                return self._finish_interrupted(same, self._card_file(same))
            state = self.state()
            if state["production"] != compared_with:
                raise RegistryError(
                    f"production changed from {compared_with} to {state['production']} while this "
                    "model was judged; run `catdog register` (or `dvc repro`) again"
                )
            card = {
                **card,
                "model_sha256": digest,
                "decision": {"production": verdict.production, "reason": verdict.reason},
            }
            version = self._add_version(
                model_file, card, {DATA_PROFILE: data_profile, TEST_PREDICTIONS: test_predictions}
            )
            if verdict.production:
                self._set_production(version, state["history"] + [version])
            self._log("registered", version=version, production=verdict.production, reason=verdict.reason)
        return Decision(version, verdict.production, verdict.reason)

    def _add_version(self, model_file: Path, card: dict, tables: dict[str, pd.DataFrame | None]) -> str:
        """The next version number, its files written aside and renamed into place at once."""
        number = max([int(v[1:]) for v in self.versions()] or [0]) + 1
        version = f"v{number:04d}"
        partial = self.versions_dir / f".{version}.partial-{os.getpid()}"
        partial.mkdir(parents=True)
        shutil.copyfile(model_file, partial / "model.keras")
        for name, table in tables.items():
            if table is not None:
                table.to_csv(partial / name, index=False)
        facts = {key: card[key] for key in ("model_sha256", "decision")}  # after the version's own name and date
        written = {key: value for key, value in card.items() if key not in facts}
        write_json(partial / "card.json", {**written, "version": version, "created": _now(), **facts})
        os.replace(partial, self.versions_dir / version)
        return version

    def _finish_interrupted(self, version: str, card: dict) -> Decision:
        """The same model was registered before; complete a promotion a kill may have cut short."""
        state = self.state()
        blessed = card["decision"]["production"]
        if blessed and version not in state["history"]:
            self._set_production(version, state["history"] + [version])
            self._log("promoted", version=version, reason="completing an interrupted registration")
        return Decision(
            version, blessed, f"already registered as {version}: {card['decision']['reason']}", already_registered=True
        )

    def _clean_partials(self) -> None:
        if self.versions_dir.exists():
            for partial in self.versions_dir.glob(".v*.partial-*"):
                shutil.rmtree(partial, ignore_errors=True)

    def promote(self, ref: str, force: str | None = None) -> str:
        """Make a version production. One the gate refused needs `force`: the reason, kept in the events log."""
        with self._locked():
            version = self.resolve(ref)
            self.model_path(version)  # refuse to promote a damaged file
            state = self.state()
            if state["production"] == version:
                return version
            decision = self._card_file(version)["decision"]
            if not decision["production"] and version not in state["history"] and not force:
                raise RegistryError(
                    f"{version} was refused by the gate: {decision['reason']}. To promote it "
                    f'anyway, say why: `catdog models promote {version} --force "reason"`'
                )
            self._set_production(version, state["history"] + [version])
            self._log("promoted", version=version, reason=f"forced: {force}" if force else "manual promotion")
        return version

    def rollback(self) -> tuple[str, str]:
        """Make the previous production version production again; returns (from, to)."""
        with self._locked():
            state = self.state()
            history = list(state["history"])
            if len(history) < 2:
                raise RegistryError("nothing to roll back to: there has been at most one production version")
            current = history.pop()
            self._set_production(history[-1], history)
            self._log("rolled back", version=history[-1], previous=current)
        return current, history[-1]
