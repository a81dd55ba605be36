"""Schemathesis on the prediction routes of a gateway whose trainer has a model, so that
generated requests reach classification, the export, review pages and model files (the
hostile tier fuzzes every route, but its trainer has no model). Activation is left out:
it would pin a model for the other tests of this trainer; tests/hostile fuzzes it."""

from __future__ import annotations

from collections import Counter

import requests
import schemathesis
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.gateway.conftest import Gateway
from tests.hostile.test_openapi_fuzz import fuzz
from tests.reliability import report
from tests.reliability.stack import CSRF

FUZZED = {("POST", "/api/classify"), ("GET", "/api/predictions"),
          ("GET", "/api/predictions/review"), ("GET", "/api/models"),
          ("GET", "/api/models/{version}")}


def test_fuzz_the_prediction_routes_with_a_model_in_use(predict_gateway: Gateway, shape):  # type: ignore[no-untyped-def]
    base = predict_gateway.url
    schema = schemathesis.openapi.from_url(base + "/api/openapi.json")
    schema.config.update(base_url=base)
    operations = [op for op in (r.ok() for r in schema.get_all_operations())
                  if (op.method.upper(), op.path) in FUZZED]
    assert len(operations) == len(FUZZED)
    session = requests.Session()
    # Signed in (every role when no tokens are configured), so generated requests reach
    # the admin-only export and model routes rather than stopping at 401.
    assert session.post(base + "/api/session", json={"annotator": "fuzzer"},
                        headers={**CSRF, "Origin": base}, timeout=30).status_code == 200
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            statuses: Counter[str] = Counter()
            try:
                fuzz(operation, session, base, shape.pick(15, 100), statuses, failures, mode)()
            except Unsatisfiable:
                continue
            report.inputs(f"OpenAPI fuzz with a model ({mode.name.lower()}) "
                          f"{operation.method.upper()} {operation.path}",
                          " ".join(f"{k}:{v}" for k, v in sorted(statuses.items())),
                          sum(statuses.values()))
    assert failures == []
    ok = session.post(base + "/api/classify", headers={**CSRF, "Origin": base},
                      json={"urls": ["http://169.254.169.254/x"]}, timeout=60)
    assert ok.status_code == 200 and ok.json()["results"][0]["error"]["code"] == "forbidden_url"
