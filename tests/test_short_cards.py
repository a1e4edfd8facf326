"""The cards a clinician reads in seconds: a few short lines, the ACR category beside the PAMA code,
no isRecommended for a disputed study, no FHIR ids, and links to the guidance pages."""
from __future__ import annotations

import pytest

from builders import CPT, PAMA_SYSTEM, PAMA_URL, SELECT, all_condition, condition, hook_request, patient, \
    service_request
from cds_service import create_app

ACR_CATEGORY = "urn:cds-service:acr-leukemia-staging:acr-category"
CT_CHEST, XR_CHEST, US_SCROTUM, CT_AP, MR_BRAIN = "71260", "71046", "76870", "74177", "70551"
DETAIL_LINES = 5          # the rating and dose, why, instead (or the one must-see step), relied on, the footer
DETAIL_CHARS = 900        # was about 1,900 (CT chest warning) and 2,400 (chest radiograph info)


def call(client, orders, **kwargs) -> dict:
    response = client.post(f"/cds-services/{SELECT}", json=hook_request(orders, **kwargs))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def the_card(client, code, gender="female", **kwargs) -> dict:
    [card] = call(client, [service_request("o1", code, CPT)], pat=patient(gender=gender, **kwargs))["cards"]
    return card


def pama_codings(resource: dict) -> list[dict]:
    [extension] = [e for e in resource["extension"] if e["url"] == PAMA_URL]
    return extension["valueCodeableConcept"]["coding"]


@pytest.mark.parametrize("code, gender", [(CT_CHEST, "female"), (XR_CHEST, "male"), (US_SCROTUM, "male"),
                                          (CT_AP, "male"), ("78815", "female"), ("71550", "female")])
def test_a_rated_card_is_a_few_short_lines(client, code, gender):
    card = the_card(client, code, gender)
    paragraphs = card["detail"].split("\n\n")
    assert len(paragraphs) <= DETAIL_LINES, paragraphs
    assert len(card["detail"]) <= DETAIL_CHARS, len(card["detail"])
    assert paragraphs[0].startswith("**ACR: ") and "Radiation: " in paragraphs[0]
    assert paragraphs[1].startswith("**Why:** ")
    assert any(p.startswith("**Relied on:** ") for p in paragraphs)
    assert "What to do with the result" not in card["detail"] and "Pitfalls" not in card["detail"]


def test_the_radiograph_card_keeps_the_pause_and_call_step(client):
    card = the_card(client, XR_CHEST)
    assert ("**If it shows a mediastinal mass: PAUSE before any sedation or general anesthesia and call pediatric "
            "anesthesiology and the attending oncologist now.**") in card["detail"].split("\n\n")


def test_no_nested_parentheses_and_no_lone_O_beside_zero(client):
    ct = the_card(client, CT_AP, "male")
    assert "(Disagreement))" not in ct["detail"]
    assert "Scrotal ultrasound (no ionizing radiation), rated May be appropriate (Disagreement), is offered below." \
        in ct["detail"]
    assert "O 0 mSv" not in ct["detail"]


def test_relied_on_is_in_words_without_fhir_ids_or_a_made_up_birth_date(client):
    card = the_card(client, CT_CHEST, "male", birth_date="2019")
    relied = next(p for p in card["detail"].split("\n\n") if p.startswith("**Relied on:**"))
    assert "-year-old boy;" in relied
    assert "2019-01-01" not in relied  # a partial birth date is not shown as a full date
    assert "Condition/" not in card["detail"] and "Patient/" not in card["detail"]


def test_the_pama_rating_carries_the_acr_category_beside_the_argonaut_code(client):
    result = call(client, [service_request("ct", CT_CHEST, CPT), service_request("xr", XR_CHEST, CPT),
                           service_request("mr", MR_BRAIN, CPT)])
    by_id = {a["resource"]["id"]: pama_codings(a["resource"]) for a in result["systemActions"]}
    assert by_id["ct"] == [{"system": PAMA_SYSTEM, "code": "not-appropriate"},
                           {"system": ACR_CATEGORY, "code": "usually-not-appropriate", "display": "Usually not appropriate"}]
    assert by_id["xr"] == [{"system": PAMA_SYSTEM, "code": "appropriate"},
                           {"system": ACR_CATEGORY, "code": "may-be-appropriate-disagreement",
                            "display": "May be appropriate (Disagreement)"}]
    assert by_id["mr"] == [{"system": PAMA_SYSTEM, "code": "no-criteria-apply"}]  # no ACR category claimed
    descriptions = {a["resource"]["id"]: a["description"] for a in result["systemActions"]}
    assert descriptions["xr"] == ("PAMA appropriateness rating for Chest radiograph: appropriate; "
                                  "ACR: May be appropriate (Disagreement).")


def test_a_disputed_suggestion_is_offered_not_recommended_and_keeps_its_category(client):
    [suggestion] = the_card(client, CT_CHEST)["suggestions"]
    assert suggestion["isRecommended"] is False
    assert pama_codings(suggestion["actions"][0]["resource"])[1]["code"] == "may-be-appropriate-disagreement"


@pytest.mark.parametrize("code, gender, pages", [
    (CT_CHEST, "female", ["/guidance/procedures/ct-chest",
                          "/guidance/variants/all-child-initial-staging-asymptomatic-chest"]),
    (CT_AP, "male", ["/guidance/procedures/ct-abd-pelvis-iv",
                     "/guidance/variants/all-child-male-initial-staging-asymptomatic"]),
    (MR_BRAIN, "female", ["/guidance/procedures/mr-brain"]),
])
def test_each_card_links_to_its_page_on_the_request_host_and_the_page_opens(client, code, gender, pages):
    card = the_card(client, code, gender)
    assert [link["url"] for link in card["links"]] == [f"http://localhost{p}" for p in pages]
    assert all(link["type"] == "absolute" for link in card["links"])
    assert card["source"]["url"] not in [link["url"] for link in card["links"]]  # the ACR link once
    for path in pages:
        page = client.get(path)
        assert page.status_code == 200 and page.mimetype == "text/html"


def test_links_use_the_public_base_url_when_set(tmp_path):
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'cds.db'}",
                      "public_base_url": "https://cds.hospital.example.org/acr/"})
    card = the_card(app.test_client(), CT_CHEST)
    assert card["links"][0]["url"] == "https://cds.hospital.example.org/acr/guidance/procedures/ct-chest"


def test_the_out_of_scope_card_links_to_when_the_guidance_applies(client):
    result = call(client, [service_request("o1", CT_CHEST, CPT)],
                  conditions=[all_condition(), condition("cough", "49727002")])
    [card] = result["cards"]
    assert card["links"] == [{"label": "When this guidance applies", "url": "http://localhost/guidance/",
                              "type": "absolute"}]


def test_statement_cards_stay_marked_not_an_acr_rating(client):
    assert "**Not an ACR rating.**" in the_card(client, MR_BRAIN)["detail"]
    assert "**Not an ACR rating**" in the_card(client, CT_AP, "female")["detail"]


def test_the_pages_link_to_each_other_below_a_path_prefix(client):
    page = client.get("/guidance/", base_url="http://localhost/acr").get_data(as_text=True)
    assert 'href="/acr/guidance/procedures/ct-chest"' in page
    assert 'href="/guidance/procedures/ct-chest"' not in page
