"""Build and inspect a store with the real ``bentoml`` package, in a process of its own.

BentoML reads ``BENTOML_HOME`` once at import, so each call runs as
``python -m tests.bentoml_judge build|describe HOME`` and prints JSON;
``references HOME`` stays up and answers one bento.yaml per line.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def _age_tree(path: Path, at: datetime) -> None:
    stamp = at.timestamp()
    for directory, _, files in os.walk(path):
        for file_name in files:
            os.utime(os.path.join(directory, file_name), (stamp, stamp))
        os.utime(directory, (stamp, stamp))


def build(home: Path) -> dict[str, object]:
    """Create models and a bento through BentoML's own API; return what was made."""
    import bentoml
    from freezegun import freeze_time

    made: dict[str, list[str]] = {"iris": [], "mnist": [], "lonely": []}
    plan = [("iris", 10, timedelta(days=1)), ("mnist", 5, timedelta(hours=3)), ("lonely", 1, timedelta(days=1))]
    pinned = None
    for name, count, step in plan:
        for index in range(count, 0, -1):
            created_at = NOW - step * index - timedelta(days=1)
            labels = {"owner": "ml"}
            if name == "iris" and index == 6:
                labels["retention"] = "keep"
            with freeze_time(created_at), bentoml.models.create(name, labels=labels) as model:
                (Path(model.path) / "weights.bin").write_bytes(os.urandom(256))
            # BentoML writes into a temp dir and copies into the store on exit; age the store copy.
            _age_tree(home / "models" / name / model.tag.version, created_at)
            made[name].append(model.tag.version)
            if labels.get("retention"):
                pinned = str(model.tag)
    referenced = f"iris:{made['iris'][1]}"
    build_dir = home.parent / "bento-src"
    build_dir.mkdir(exist_ok=True)
    (build_dir / "service.py").write_text(
        "import bentoml\n\n\n@bentoml.service\nclass Svc:\n"
        f"    model = bentoml.models.BentoModel({referenced!r})\n\n"
        "    @bentoml.api\n    def predict(self, x: int) -> int:\n        return x\n"
    )
    bento = bentoml.bentos.build("service:Svc", build_ctx=str(build_dir))
    return {"made": made, "referenced": referenced, "pinned": pinned, "bento": str(bento.tag)}


def describe(home: Path) -> dict[str, object]:
    """Return what BentoML itself lists and resolves in the store."""
    import bentoml

    models = bentoml.models.list()
    bentos = bentoml.list()
    return {
        "models": sorted(str(model.tag) for model in models),
        "bentos": sorted(str(bento.tag) for bento in bentos),
        "latest": {name: str(bentoml.models.get(name).tag) for name in sorted({model.tag.name for model in models})},
        "created": {str(model.tag): model.info.creation_time.isoformat() for model in models},
        "bento_models": {str(bento.tag): _resolve_models(bento) for bento in bentos},
    }


def _resolve_models(bento: object) -> dict[str, list[str]]:
    """The models a bento needs, split into those BentoML can load from the store and those it cannot."""
    import bentoml
    from bentoml.exceptions import NotFound

    resolved, missing = [], []
    for model in bento.info.all_models:  # type: ignore[attr-defined]
        try:
            resolved.append(str(bentoml.models.get(model.tag).tag))
        except NotFound:
            missing.append(str(model.tag))
    return {"resolved": sorted(resolved), "missing": sorted(missing)}


def serve_references() -> None:
    """For each line of stdin (a bento.yaml, base64), print one JSON line: the model tags BentoML's own parser
    reads from it (``BaseBentoInfo.from_yaml_file(...).all_models``, as ``bentoml.get`` does), or why it fails."""
    import base64
    import io
    import logging

    from bentoml._internal.bento.bento import BaseBentoInfo

    logging.disable(logging.CRITICAL)  # a failed parse logs to stderr; the answer on stdout says it
    for line in sys.stdin:
        try:
            # BentoML opens bento.yaml as UTF-8 text, as here.
            info = BaseBentoInfo.from_yaml_file(io.StringIO(base64.b64decode(line).decode("utf-8")))
            answer: dict[str, object] = {"loaded": True, "tags": sorted({str(model.tag) for model in info.all_models})}
        except Exception as error:  # any failure means BentoML cannot load this bento
            answer = {"loaded": False, "error": f"{type(error).__name__}: {error}"[:300]}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    command, home_arg = sys.argv[1], Path(sys.argv[2])
    assert os.environ.get("BENTOML_HOME") == str(home_arg), "run with BENTOML_HOME set to the store"
    if command == "references":
        serve_references()
    else:
        print(json.dumps(build(home_arg) if command == "build" else describe(home_arg)))
