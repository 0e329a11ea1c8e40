import json

import pytest

from ivl_embodied.plan import Plan, PlanParseError, Step, format_plan, parse_plan, plan_json_schema


def _plan():
    return Plan(
        (
            Step("pick", "red cube", (100, 200, 150, 260)),
            Step("place", "red cube", target="green bowl", target_box=(600, 480, 720, 590)),
            Step("push", "blue ball", (0, 0, 1000, 1000), "left region", (0, 0, 10, 10)),
        )
    )


def test_round_trip_is_canonical():
    text = format_plan(_plan())
    assert " " not in text.replace("red cube", "").replace("green bowl", "").replace(
        "blue ball", ""
    ).replace("left region", "")
    assert parse_plan(text) == _plan()
    assert format_plan(parse_plan(text)) == text


def test_whitespace_is_tolerated():
    text = json.dumps([s.to_dict() for s in _plan().steps], indent=2)
    assert parse_plan(text) == _plan()


def test_non_ascii_phrase_round_trips():
    p = Plan((Step("pick", "würfel rot 红色", (1, 2, 3, 4)),))
    assert parse_plan(format_plan(p)) == p


@pytest.mark.parametrize(
    "text, token",
    [
        ('[{"action":"fly","object":"x","box":[1,2,3,4]}]', "fly"),
        ('[{"object":"x","action":"pick","box":[1,2,3,4]}]', "action"),
        ('[{"action":"pick","object":"x","box":[1,2,3.5,4]}]', "3.5"),
        ('[{"action":"pick","object":"x","box":[1,2,3,1001]}]', "1001"),
        ('[{"action":"pick","object":"x","box":[1,2,3,-4]}]', "-4"),
        ('[{"action":"pick","object":"x","box":[1,2,3,4]}] trailing', "trailing"),
        ('[{"action":"pick","object":"x","colour":"red"}]', "colour"),
        ('[{"action":"pick","action":"pick"}]', "action"),
        ('[{"action":"pick","object":"","box":[1,2,3,4]}]', ""),
        ("[]", "]"),
        ('[{"action":"pick","object":"x","box":[1,2,3', "<end of text>"),
    ],
)
def test_parser_names_offending_token(text, token):
    with pytest.raises(PlanParseError) as ei:
        parse_plan(text)
    assert ei.value.token == token
    assert repr(token) in str(ei.value)


def test_missing_required_key_is_named():
    with pytest.raises(PlanParseError, match="missing \\['box'\\]"):
        parse_plan('[{"action":"pick","object":"x"}]')
    with pytest.raises(PlanParseError, match="must not have \\['target'\\]"):
        parse_plan('[{"action":"pick","object":"x","box":[1,2,3,4],"target":"y"}]')


def test_box_order_checked():
    with pytest.raises(PlanParseError, match="x1 > x2"):
        parse_plan('[{"action":"pick","object":"x","box":[5,2,3,4]}]')
    with pytest.raises(ValueError, match="x1 > x2"):
        Step("pick", "x", (5, 2, 3, 4))


def test_step_validation_quotes_value():
    with pytest.raises(ValueError, match="'jump'"):
        Step("jump", "x", (1, 2, 3, 4))
    with pytest.raises(ValueError, match="1200"):
        Step("pick", "x", (1, 2, 3, 1200))
    with pytest.raises(PlanParseError, match="must be str, got bytes"):
        parse_plan(b"[]")  # type: ignore[arg-type]


def test_json_schema_accepts_canonical_plans():
    jsonschema = pytest.importorskip("jsonschema")
    schema = plan_json_schema()
    jsonschema.validate(json.loads(format_plan(_plan())), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{"action": "pick", "object": "x"}], schema)
