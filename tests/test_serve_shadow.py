"""Shadow candidates: the newest unpromoted candidate scores live traffic in the background, its
answers are logged beside production's, and `catdog models show` compares the two."""

from __future__ import annotations

import json
import time

import httpx

from catdog.monitoring.prediction_log import read_log
from tests.conftest import run
from tests.test_serve import (
    constant_model,
    files,
    photo,
    register,
    serve_project,
    server,
)


def test_a_shadow_candidate_scores_what_production_answers_and_changes_no_answer(tmp_path):
    project = serve_project(tmp_path, shadow="candidate", reload_seconds=0.2)
    production = register(project, constant_model(-3.0))  # always 'cat'
    metrics = dict.fromkeys(["accuracy_cat", "accuracy_dog", "precision", "recall", "f1", "roc_auc"], 0.5)
    candidate = register(project, constant_model(3.0), accuracy=0.5, metrics=metrics)  # always 'dog', not promoted
    serving = project / "data" / "serving"
    sent = [photo("dog" if i % 2 else "cat", 900 + i) for i in range(10)]
    with server(project) as url:
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/models").json()["shadow"] != candidate:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        answers = [
            httpx.post(f"{url}/predict", files=files((f"{i}.jpg", data)), timeout=60).json()
            for i, data in enumerate(sent)
        ]
        deadline = time.monotonic() + 60
        while len(read_log(serving, shadow=True)) < len(sent):
            assert time.monotonic() < deadline, "the shadow did not score every served image"
            time.sleep(0.2)
        metrics = httpx.get(f"{url}/metrics").text
    assert all(a["model_version"] == production and a["results"][0]["label"] == "cat" for a in answers)
    served, shadow = read_log(serving), read_log(serving, shadow=True)
    assert len(served) == len(sent) and set(served["model_version"]) == {production}
    assert set(shadow["model_version"]) == {candidate} and set(shadow["label"]) == {"dog"}
    assert set(shadow["production_label"]) == {"cat"} and sorted(shadow["sha256"]) == sorted(served["sha256"])
    assert "catdog_shadow_images_total 10.0" in metrics

    labels = serving / "labels"
    labels.mkdir()
    for sha, truth in zip(served["sha256"][:4], ["dog", "dog", "dog", "cat"]):
        (labels / f"{sha}.json").write_text(
            json.dumps({"sha256": sha, "label": truth, "who": "ann", "time": "2026-12-02T10:00:00+00:00"})
        )
    shown = run(["catdog", "--project", str(project), "models", "show", candidate], project).stdout
    assert (
        f"shadow           live shadow traffic: {candidate} agreed with production {production} on 0.0% of "
        f"10 served images; on the 4 labelled: {candidate} 0.7500"
    ) in shown
    assert f"vs production {production} 0.2500" in shown and "McNemar p = 0.625" in shown
    as_json = json.loads(
        run(["catdog", "--project", str(project), "models", "show", candidate, "--json"], project).stdout
    )
    assert as_json["shadow"]["agreement"] == 0.0 and as_json["shadow"]["paired"]["images"] == 4


def test_the_shadow_backlog_is_bounded_and_counts_what_it_drops():
    from catdog.serving.batching import Batcher, _Shadowed

    batcher = Batcher(8, 0.001, shadow_backlog=3)
    batcher.shadow_score([_Shadowed(None, None, {"n": i}) for i in range(5)])
    assert [item.record["n"] for item in batcher.shadow] == [2, 3, 4] and batcher.shadow_dropped == 2
    batcher.close()


def test_under_load_the_shadow_gets_its_share_of_the_model_and_no_more():
    """A busy batcher (its queue never empty) still gives the shadow serve.shadow_share of the images."""
    import asyncio

    import numpy as np

    from catdog.serving.batching import Batcher, _Shadowed
    from catdog.serving.predict import LoadedModel
    from tests.test_serve import constant_model

    async def scenario():
        batcher = Batcher(4, 0.0, shadow_share=0.25)
        served = LoadedModel("v0001", constant_model(-1.0), 32, "stretch", 0.5)
        shadow = LoadedModel("v0002", constant_model(1.0), 32, "stretch", 0.5)
        scored = []
        batcher.on_shadow = lambda items, scores: scored.extend(scores)
        image = np.zeros((32, 32), np.uint8)
        batcher.shadow_score([_Shadowed(shadow, image, {}) for _ in range(100)])
        worker = asyncio.create_task(batcher.run())
        answers = await batcher.p_dog(served, [image] * 40)  # all queued at once: never idle
        worker.cancel()
        batcher.close()
        return answers, scored

    answers, scored = asyncio.run(scenario())
    # 40 served x 0.25 = 10; the last of them may still be in the model when the batcher is stopped
    assert len(answers) == 40 and len(scored) in (9, 10), f"{len(scored)} shadow images for 40 served"
