"""Schemathesis against the gateway process, from its own OpenAPI document: generated
requests (valid and invalid) for every operation. No 5xx other than the documented ones
that mean a service is away (503/504, which cannot happen here: both are up), answers
that conform to the document, and a gateway still serving at the end."""

from __future__ import annotations

from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability import report
from tests.reliability.stack import CSRF

# Server-sent events never end: checked by the gateway's own tests, not fuzzed here.
NOT_FUZZED = {("GET", "/api/events")}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def schema(shared_gateway):  # type: ignore[no-untyped-def]
    base = f"http://127.0.0.1:{shared_gateway.port}"
    loaded = schemathesis.openapi.from_url(base + "/api/openapi.json")
    loaded.config.update(base_url=base)
    return loaded


def operations(schema) -> list:  # type: ignore[no-untyped-def]
    found = [result.ok() for result in schema.get_all_operations()]
    return [op for op in found if (op.method.upper(), op.path) not in NOT_FUZZED]


def fuzz(operation, session: requests.Session, base: str, examples: int,  # type: ignore[no-untyped-def]
         statuses: Counter[str], failures: list[str], mode: GenerationMode):
    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):  # type: ignore[no-untyped-def]
        response = case.call(session=session, headers={**CSRF, "Origin": base}, timeout=15)
        statuses[f"{response.status_code // 100}xx"] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as exc:
            failures.append(f"{mode.name} {operation.method.upper()} {operation.path}: "
                            f"{response.status_code} {str(exc)[:300]}")
    return run


def signed_in(base: str, annotator: str = "fuzzer") -> requests.Session:
    """A session signed in (every role where no tokens are configured), so that the
    handlers behind the session and role checks are reached too."""
    session = requests.Session()
    assert session.post(base + "/api/session", json={"annotator": annotator},
                        headers={**CSRF, "Origin": base}, timeout=10).status_code == 200
    return session


def fuzz_all(operations: list, session: requests.Session, base: str, examples: int,
             title: str) -> list[str]:
    """Valid and invalid requests for each operation; each one's outcomes go into the
    report under `title`. Returns the failures."""
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            statuses: Counter[str] = Counter()
            try:
                fuzz(operation, session, base, examples, statuses, failures, mode)()
            except Unsatisfiable:  # nothing to make invalid: no parameters, no body
                continue
            report.inputs(f"{title} ({mode.name.lower()}) {operation.method.upper()} "
                          f"{operation.path}",
                          " ".join(f"{k}:{v}" for k, v in sorted(statuses.items())),
                          sum(statuses.values()))
    return failures


def test_fuzz_every_operation_from_the_openapi_document(schema, shared_gateway, shape):  # type: ignore[no-untyped-def]
    base = f"http://127.0.0.1:{shared_gateway.port}"
    session = signed_in(base)
    failures = fuzz_all(operations(schema), session, base, shape.pick(15, 150), "OpenAPI fuzz")
    assert failures == []
    assert session.get(base + "/api/status", timeout=10).status_code == 200
    assert requests.get(base + "/healthz", timeout=10).status_code == 200
