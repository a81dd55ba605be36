"""Schemathesis on the prediction routes of a gateway whose trainer has a model, so that
generated requests reach classification, the export, review pages and model files (the
hostile tier fuzzes every route, but its trainer has no model). Activation is left out:
it would pin a model for the other tests of this trainer; tests/hostile fuzzes it."""

from __future__ import annotations

import schemathesis

from tests.gateway.conftest import Gateway
from tests.hostile.test_openapi_fuzz import fuzz_all, signed_in
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
    session = signed_in(base)
    failures = fuzz_all(operations, session, base, shape.pick(15, 100),
                        "OpenAPI fuzz with a model")
    assert failures == []
    ok = session.post(base + "/api/classify", headers={**CSRF, "Origin": base},
                      json={"urls": ["http://169.254.169.254/x"]}, timeout=60)
    assert ok.status_code == 200 and ok.json()["results"][0]["error"]["code"] == "forbidden_url"
