"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis): whatever
arrives, no 5xx, every error is a JSON problem with a code, and the economy afterwards still
ticks, keeps its invariants and verifies."""

import schemathesis
from hypothesis import HealthCheck, settings

import sandbank.economy
from sandbank.audit.verify import verify_log
from sandbank.kernel.schema import RegisterAgent, RegisterOwner, agent_attestation_bytes
from sandbank.kernel.sequencer import KernelConfig
from sandbank.server.app import Sandbox, create_app
from sandbank.store.sqlite import SQLiteStore
from tests.api_check import check_answer
from tests.keys import fixed_key, fixed_secret

OP_TOKEN = "fuzz-operator-token-000"
OV_TOKEN = "fuzz-overseer-token-000"
secret = fixed_secret(3)
op = secret.key("operator")
kernel = sandbank.economy.new_kernel(SQLiteStore(":memory:"), KernelConfig(
    seed=3, assets=("CRD", "WGT"), markets=({"asset": "WGT", "quote": "CRD"},),
    verify_signatures=True), op)
box = Sandbox(kernel, secret, OP_TOKEN, endowment={"CRD": 1000, "WGT": 10},
              overseer_token=OV_TOKEN, admission="approval")
app = create_app(box)
owner = fixed_key(3, "owner")
box.operator_submit(RegisterOwner(
    actor=0, name="o", owner_kind="human", public_key=owner.public, evidence="fuzz"))
box.step()
for name in ("a", "b"):
    key = fixed_key(3, name)
    box.operator_submit(RegisterAgent(
        actor=0, owner=1, name=name, public_key=key.public,
        attestation=owner.sign(agent_attestation_bytes(1, name, key.public))))
for _ in range(4):
    box.step()
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
# routes that need a credential: a wrong one never gets a 2xx from them
GUARDED = {("POST", "/v1/owners"), ("GET", "/v1/admissions"),
           ("POST", "/v1/admissions/{request_id}"), ("POST", "/v1/tick"), ("GET", "/v1/entries"),
           ("GET", "/v1/entries/recent"), ("GET", "/v1/proof/{seq}"),
           ("GET", "/v1/oversight/alerts"), ("GET", "/v1/oversight/tickets"),
           ("GET", "/v1/oversight/summary"), ("POST", "/v1/oversight/interventions")}
WRONG = [{"Authorization": f"Bearer {OP_TOKEN[:-1]}"}, {"Authorization": f"Bearer {OV_TOKEN}x"},
         {"Authorization": "Bearer "}, {"Authorization": "Bearer"}, {"Authorization": ""},
         {"Authorization": OP_TOKEN}, {"Authorization": f"Bearer {OP_TOKEN[:4]}"},
         {"X-Sandbank-Agent": "1", "X-Sandbank-Signature": "00" * 64},
         {"X-Sandbank-Overseer": "-1001", "X-Sandbank-Signature": "ab" * 63},
         {"Authorization": f"Basic {OP_TOKEN}"}]
calls = {"n": 0}


@schema.parametrize()
@settings(max_examples=40, suppress_health_check=list(HealthCheck), deadline=None)
def test_no_server_errors(case):
    # a third of the cases carry real credentials, so the fuzzer gets past the door too, and
    # a third carry near misses of them (truncated, extended, scheme only, a wrong signature)
    headers = {}
    n = calls["n"]
    calls["n"] += 1
    if n % 3 == 1:
        headers["Authorization"] = f"Bearer {(OP_TOKEN, OV_TOKEN)[n % 2]}"
    wrong = n % 3 == 2
    if wrong:
        headers.update(WRONG[n % len(WRONG)])
    response = case.call(headers=headers)
    assert response.status_code < 500, (response.status_code, response.text)
    if wrong and (case.method.upper(), case.operation.path) in GUARDED:
        assert not 200 <= response.status_code < 300, (case.method, case.path, headers)
    ops = app.openapi()["paths"][case.operation.path]
    if case.method.lower() in ops:  # every answer is one the schema documents
        documented = ops[case.method.lower()]["responses"]
        assert str(response.status_code) in documented, (case.operation.path, response.status_code)
    else:  # the fuzzer also tries methods the path does not have
        assert response.status_code == 405, (case.method, response.status_code)
    if 200 <= response.status_code < 300 and "json" in response.headers.get(
            "content-type", [""])[0]:
        check_answer(app, case.method, case.path, response.status_code, response.json())
    if response.status_code >= 400:
        problem = response.json()
        ctype = response.headers["content-type"]
        assert problem["code"] and "application/problem+json" in ctype, (problem, ctype)
    if calls["n"] % 25 == 0:
        box.step()


def test_the_economy_survived_the_fuzzing():
    for _ in range(3):
        box.step()
    kernel.state.check_invariants()
    assert verify_log(kernel.store).ok
