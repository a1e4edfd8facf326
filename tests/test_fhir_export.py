"""The knowledge as FHIR R4: every exported resource validates (fhir.resources, R4B models), the
read-only /fhir/ endpoint and `cds-service export` give the same resources, and the exported
PlanDefinitions agree with the live service on every rated procedure and variant."""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
from fhir.resources.R4B import get_fhir_model_class

from builders import PAMA_SYSTEM, PAMA_URL, SELECT, hook_request, patient, service_request
from cds_service import cli
from cds_service.fhir_export import Exporter

import tomllib
from cds_service.knowledge import default_directory as _knowledge_dir

RELEASE = tomllib.loads((_knowledge_dir() / "release.toml").read_text())["version"]  # as released

BASE = "https://cds.example.org"  # CDS_CANONICAL_BASE and CDS_PUBLIC_BASE_URL of these tests
SCHEMA = Path(__file__).parent / "fixtures" / "fhir-r4-schema" / "fhir.schema.json.gz"
SCHEMA_SHA256 = "15b9548af6412c44faaa411456e0652542de286fd1c58ef882b09bdc8947909d"
ACR_CATEGORY = "urn:cds-service:acr-leukemia-staging:acr-category"
PRIORITY_TO_INDICATOR = {"routine": "info", "urgent": "warning", "stat": "critical"}


@pytest.fixture(scope="module")
def bundle(k):
    return Exporter(k, BASE).bundle()


@pytest.fixture
def client(make_client):
    return make_client(canonical_base=BASE, public_base_url=BASE)


@pytest.fixture(scope="module")
def r4_schema():
    """The official HL7 FHIR R4 JSON schema (fhir.schema.json; see fixtures/fhir-r4-schema/README.md)."""
    raw = gzip.decompress(SCHEMA.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == SCHEMA_SHA256
    return json.loads(raw)


def schema_errors(schema: dict, resource: dict) -> list[str]:
    """What the R4 JSON schema finds wrong with the resource, with the path of each error."""
    validator = jsonschema.Draft6Validator({"$schema": schema["$schema"], "definitions": schema["definitions"],
                                            "$ref": f"#/definitions/{resource['resourceType']}"})
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(resource)]


def test_every_exported_resource_passes_the_official_r4_json_schema(r4_schema, bundle, client):
    for entry in bundle["entry"]:
        r = entry["resource"]
        assert schema_errors(r4_schema, r) == [], (r["resourceType"], r["id"])
    assert list(jsonschema.Draft6Validator(r4_schema).iter_errors(bundle)) == []  # the Bundle, via the root
    assert schema_errors(r4_schema, client.get("/fhir/PlanDefinition").get_json()) == []
    # The packaged schema is R4 4.0.0's, whose FHIRVersion list ends at 4.0.0: the one difference it finds
    [error] = schema_errors(r4_schema, client.get("/fhir/metadata").get_json())
    assert error.startswith("fhirVersion: '4.0.1' is not one of ['0.01'")


def test_the_schema_check_refuses_an_expression_language_r4_does_not_allow(r4_schema, bundle):
    plan = json.loads(json.dumps(next(e["resource"] for e in bundle["entry"]
                                      if e["resource"]["resourceType"] == "PlanDefinition")))
    plan["action"][0]["condition"][1]["expression"]["language"] = "text/plain"  # what the export once wrote
    [error] = schema_errors(r4_schema, plan)
    assert error.startswith("action/0/condition/1/expression/language: 'text/plain' is not one of")


def test_every_condition_is_fhirpath_with_an_expression(bundle):
    for plan in by_type(bundle, "PlanDefinition").values():
        assert plan["usage"].startswith("Includes: ")
        for action in plan["action"]:
            for condition in action["condition"]:
                expression = condition["expression"]
                assert expression["language"] == "text/fhirpath" and expression["expression"], condition


def test_every_canonical_resource_carries_the_knowledge_release(k, bundle, client):
    assert k.release.version == RELEASE and len(k.release.digest) == 64
    for entry in bundle["entry"]:
        assert entry["resource"]["version"] == k.release.label == f"{RELEASE}+{k.release.digest[:12]}"
    assert client.get("/fhir/metadata").get_json()["version"] == k.release.label


def test_canonical_urls_come_from_the_configured_canonical_base(make_client):
    client = make_client(canonical_base="https://knowledge.example.org/acr-all", public_base_url=BASE)
    plan = client.get("/fhir/PlanDefinition/all-child-male-initial-staging-asymptomatic").get_json()
    assert plan["url"] == "https://knowledge.example.org/acr-all/fhir/PlanDefinition/" \
                          "all-child-male-initial-staging-asymptomatic"
    assert plan["library"] == ["https://knowledge.example.org/acr-all/fhir/Library/acr-leukemia-staging-sources"]
    assert plan["relatedArtifact"][0]["url"].startswith(f"{BASE}/guidance/variants/")  # a page: where it is served


def test_export_without_a_canonical_base_refuses_and_names_the_setting(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CDS_CANONICAL_BASE", raising=False)
    monkeypatch.delenv("CDS_PUBLIC_BASE_URL", raising=False)
    assert cli.main(["export", "--out", str(tmp_path)]) == 2
    assert "set CDS_CANONICAL_BASE" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv("CDS_CANONICAL_BASE", "https://knowledge.example.org")
    assert cli.main(["export", "--out", str(tmp_path)]) == 0
    written = (tmp_path / "acr-leukemia-staging-bundle.json").read_text(encoding="utf-8")
    assert "localhost" not in written and '"url": "https://knowledge.example.org/fhir/ValueSet/' in written


def by_type(bundle: dict, kind: str) -> dict[str, dict]:
    return {e["resource"]["id"]: e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind}


def validate(resource: dict):
    return get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_every_exported_resource_and_the_bundle_validate(bundle):
    assert validate(bundle).type == "collection"
    for entry in bundle["entry"]:
        validate(entry["resource"])
        assert entry["fullUrl"].endswith(f"/fhir/{entry['resource']['resourceType']}/{entry['resource']['id']}")
    ids = [(e["resource"]["resourceType"], e["resource"]["id"]) for e in bundle["entry"]]
    assert len(ids) == len(set(ids))


def included(value_set: dict) -> set[tuple[str, str]]:
    """(system, code) of every concept; a filtered include gives (system, prefix + '*')."""
    found = set()
    for include in value_set["compose"]["include"]:
        found |= {(include["system"], c["code"]) for c in include.get("concept", [])}
        found |= {(include["system"], f["value"] + "*") for f in include.get("filter", []) if f["op"] == "is-a"}
    return found


def test_a_value_set_for_every_code_list_with_every_code(k, bundle):
    value_sets = by_type(bundle, "ValueSet")
    expected = {f"diagnoses-{d}": c.codes for d, c in k.diagnosis_lists.items()}
    expected |= {f"procedure-{p.id}": p.codes for p in k.procedures.values()}
    assert set(value_sets) == set(expected)
    for vid, codes in expected.items():
        assert included(value_sets[vid]) == {(k.system_uris[c.system], c.code) for c in codes}, vid


def test_an_activity_definition_per_study_and_the_acr_categories(k, bundle):
    activities = by_type(bundle, "ActivityDefinition")
    assert set(activities) == set(k.procedures)
    xr = activities["xr-chest"]
    assert xr["kind"] == "ServiceRequest"
    assert {"system": "http://www.ama-assn.org/go/cpt", "code": "71046", "display": "Chest X-ray, 2 views"} \
        in xr["code"]["coding"]
    assert xr["relatedArtifact"][0]["url"] == f"{BASE}/guidance/procedures/xr-chest"
    [categories] = by_type(bundle, "CodeSystem").values()
    assert categories["url"] == ACR_CATEGORY
    assert {c["code"]: c["display"] for c in categories["concept"]}["may-be-appropriate-disagreement"] \
        == "May be appropriate (Disagreement)"


def test_a_plan_definition_per_variant_and_a_library_of_the_sources(k, bundle):
    plans = by_type(bundle, "PlanDefinition")
    assert set(plans) == {v.id for v in k.variants}
    for plan in plans.values():
        assert plan["type"]["coding"][0]["code"] == "eca-rule"
        assert {t["name"] for a in plan["action"] for t in a["trigger"]} == {"order-select", "order-sign"}
        assert all(a["condition"][0]["expression"]["language"] == "text/fhirpath" for a in plan["action"])
    male = plans["all-child-male-initial-staging-asymptomatic"]
    assert any(c["expression"].get("expression") == "%patient.gender = 'male'" for c in male["action"][0]["condition"])
    [library] = by_type(bundle, "Library").values()
    assert plan["library"] == [library["url"]]
    citations = {a["label"]: a["display"] for a in library["relatedArtifact"] if a["type"] == "citation"}
    assert citations == dict(k.sources)


# -- served read-only, and exported by the command line --------------------------------------

def test_the_fhir_endpoint_serves_a_capability_statement_and_each_resource(client, bundle):
    metadata = client.get("/fhir/metadata")
    assert metadata.status_code == 200 and metadata.mimetype == "application/fhir+json"
    capability = validate(metadata.get_json())
    served = {r.type for r in capability.rest[0].resource}
    assert served == {"ActivityDefinition", "CodeSystem", "Library", "PlanDefinition", "ValueSet"}
    plans = client.get("/fhir/PlanDefinition").get_json()
    assert validate(plans).type == "searchset" and plans["total"] == 2
    for entry in bundle["entry"]:
        r = entry["resource"]
        read = client.get(f"/fhir/{r['resourceType']}/{r['id']}")
        assert read.status_code == 200 and read.get_json() == r


def test_a_value_set_is_found_by_its_canonical_url(client):
    url = f"{BASE}/fhir/ValueSet/procedure-ct-chest"
    found = client.get("/fhir/ValueSet", query_string={"url": url}).get_json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["procedure-ct-chest"] and found["total"] == 1
    assert client.get("/fhir/ValueSet", query_string={"url": url + "-x"}).get_json() == {
        "resourceType": "Bundle", "type": "searchset", "total": 0}


@pytest.mark.parametrize("path", ["/fhir/PlanDefinition/no-such-rule", "/fhir/Patient", "/fhir/Patient/pat1"])
def test_what_is_not_there_is_a_404_operation_outcome(client, path):
    response = client.get(path)
    assert response.status_code == 404
    outcome = validate(response.get_json())
    assert outcome.issue[0].code == "not-found"


def test_the_fhir_endpoint_is_read_only(client):
    response = client.post("/fhir/PlanDefinition", json={"resourceType": "PlanDefinition"})
    assert response.status_code == 405
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_export_writes_the_bundle_the_endpoint_serves(tmp_path, client, capsys):
    assert cli.main(["export", "--out", str(tmp_path / "out"), "--base-url", BASE]) == 0
    written = tmp_path / "out" / "acr-leukemia-staging-bundle.json"
    assert capsys.readouterr().out.strip() == str(written)
    exported = json.loads(written.read_text(encoding="utf-8"))
    validate(exported)
    served = client.get("/fhir/PlanDefinition").get_json()
    assert [e["resource"] for e in served["entry"]] == list(by_type(exported, "PlanDefinition").values())


# -- the export and the live service agree ----------------------------------------------------

def rating_of(extended: dict) -> tuple[str, str]:
    [extension] = [e for e in extended["extension"] if e["url"].endswith("/acr-rating")]
    codings = {c["system"]: c["code"] for c in extension["valueCodeableConcept"]["coding"]}
    return codings[PAMA_SYSTEM], codings[ACR_CATEGORY]


def live(client, code: dict, sex: str) -> tuple[dict, dict | None]:
    """(the PAMA rating codings of the order, the card) for one order with this code, for a child of this sex."""
    order = service_request("o1", code["code"], code["system"])
    response = client.post(f"/cds-services/{SELECT}", json=hook_request([order], pat=patient(gender=sex)))
    assert response.status_code == 200
    body = response.get_json()
    [action] = body["systemActions"]
    [pama] = [e for e in action["resource"]["extension"] if e["url"] == PAMA_URL]
    codings = {c["system"]: c["code"] for c in pama["valueCodeableConcept"]["coding"]}
    return codings, (body["cards"][0] if body["cards"] else None)


def sexes(action: dict) -> list[str]:
    """The sexes an action applies to, from its %patient.gender conditions."""
    genders = [c["expression"]["expression"].split("'")[1] for c in action["condition"]
               if c["expression"].get("expression", "").startswith("%patient.gender")]
    return genders or ["female", "male"]


def plan_sexes(plan: dict) -> list[str]:
    return sexes(plan["action"][0])


def rated(plan: dict) -> list[dict]:
    return [a for a in plan["action"] if "extension" in a]


def order_codes(value_sets: dict, procedure_id: str) -> list[dict]:
    return [{"system": i["system"], "code": c["code"]}
            for i in value_sets[f"procedure-{procedure_id}"]["compose"]["include"] for c in i["concept"]]


def test_every_plan_definition_action_is_what_the_service_does(client, bundle):
    value_sets = by_type(bundle, "ValueSet")
    activities = by_type(bundle, "ActivityDefinition")
    checked = 0
    for plan in by_type(bundle, "PlanDefinition").values():
        for action in rated(plan):
            pama, category = rating_of(action)
            for sex in plan_sexes(plan):
                for code in order_codes(value_sets, action["id"]):
                    codings, card = live(client, code, sex)
                    assert codings == {PAMA_SYSTEM: pama, ACR_CATEGORY: category}, (plan["id"], action["id"], code)
                    assert card["indicator"] == PRIORITY_TO_INDICATOR[action["priority"]]
                    assert card["source"]["topic"]["code"].endswith(f"/{action['id']}")
                    instead = action.get("action", [])
                    assert len(card.get("suggestions", [])) == len(instead)
                    for suggestion, sub in zip(card.get("suggestions", []), instead):
                        alternative = activities[sub["definitionCanonical"].rsplit("/", 1)[1]]
                        [coding] = suggestion["actions"][0]["resource"]["code"]["coding"]
                        assert coding in alternative["code"]["coding"]
                        assert rating_of(sub)[0] == "appropriate"
                    checked += 1
    assert checked > 50


def test_every_statement_action_is_the_info_card_the_service_gives(client, bundle):
    """Actions without a rating: what the sources say of a study they do not rate, Not an ACR rating."""
    value_sets = by_type(bundle, "ValueSet")
    checked = 0
    for plan in by_type(bundle, "PlanDefinition").values():
        for action in [a for a in plan["action"] if "extension" not in a]:
            assert action["code"] == [{"text": "Not an ACR rating"}]
            procedure = action["definitionCanonical"].rsplit("/", 1)[1]
            for sex in set(sexes(action)) & set(plan_sexes(plan)):
                for code in order_codes(value_sets, procedure):
                    codings, card = live(client, code, sex)
                    assert codings == {PAMA_SYSTEM: "no-criteria-apply"}, (plan["id"], action["id"], sex, code)
                    assert (card["indicator"], card["summary"]) == ("info", action["title"])
                    assert "Not an ACR rating" in card["detail"] and "Not an ACR rating" in action["description"]
                    checked += 1
    assert checked > 20


@pytest.mark.parametrize("sex", ["female", "male"])
def test_every_study_the_service_rates_is_in_an_applicable_plan_definition(k, client, bundle, sex):
    plans = [p for p in by_type(bundle, "PlanDefinition").values() if sex in plan_sexes(p)]
    exported = {a["id"]: rating_of(a) for p in plans for a in rated(p)}
    found = set()
    for procedure in k.procedures.values():
        for code in procedure.codes:
            codings, _card = live(client, {"system": k.system_uris[code.system], "code": code.code}, sex)
            if codings[PAMA_SYSTEM] == "no-criteria-apply":
                assert procedure.id not in exported, (sex, procedure.id, code.code)
                continue
            found.add(procedure.id)
            assert (codings[PAMA_SYSTEM], codings[ACR_CATEGORY]) == exported[procedure.id], (sex, procedure.id)
    assert found == set(exported)
