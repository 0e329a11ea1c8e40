import json

import pytest

from ivl_embodied.sim.tasks import (
    TEMPLATES,
    TaskError,
    generate_split,
    is_heldout_combo,
    load_split,
    load_tasks,
    parse_task,
    scene_for,
)

GOOD = {"seed": 3, "instruction": "put the red cube in the green bowl",
        "goal": {"type": "place_in", "object": {"color": "red", "shape": "cube"},
                 "target": {"color": "green", "shape": "bowl"}}}


def test_shipped_splits_match_generator_and_sizes():
    for split, n in (("train", 300), ("val", 100), ("heldout", 100)):
        tasks = load_split(split)
        assert len(tasks) == n
        assert tasks == generate_split(split), f"ivl_embodied/sim/assets/tasks/{split}.jsonl is stale: regenerate it"
        assert {t.goal.type for t in tasks} == {"place_in", "stack", "push_to"}


def test_heldout_combos_and_phrasings_are_unseen():
    seen = load_split("train") + load_split("val")
    held = load_split("heldout")
    combo = lambda t: (t.goal.type, t.goal.object, t.goal.target)  # noqa: E731
    assert not {combo(t) for t in seen} & {combo(t) for t in held}
    assert all(is_heldout_combo(*combo(t)) for t in held)
    heldout_templates = [tpl for _, unseen in TEMPLATES.values() for tpl in unseen]

    def template_of(t):
        g = t.goal
        for seen_t, unseen_t in TEMPLATES.values():
            for tpl in seen_t + unseen_t:
                if tpl.format(obj=g.object.phrase, tgt=g.target.phrase) == t.instruction:
                    return tpl
        raise AssertionError(t.instruction)

    assert all(template_of(t) in heldout_templates for t in held)
    assert not any(template_of(t) in heldout_templates for t in seen)


@pytest.mark.parametrize("patch,needle", [
    ({"seed": -1}, "'seed': -1"),
    ({"seed": "7"}, "'seed': '7'"),
    ({"instruction": ""}, "'instruction'"),
    ({"goal": {**GOOD["goal"], "type": "throw"}}, "'goal.type': 'throw'"),
    ({"goal": {**GOOD["goal"], "object": {"color": "pink", "shape": "cube"}}}, "'goal.object.color': 'pink'"),
    ({"goal": {**GOOD["goal"], "target": {"color": "green", "shape": "plate"}}}, "'goal.target.shape': 'plate'"),
    ({"goal": {"type": "push_to", "object": {"color": "red", "shape": "sphere"},
               "target": {"color": "green", "shape": "zone"}}}, "'goal.object.shape': 'sphere'"),
    ({"extra": 1}, "unknown fields ['extra']"),
])
def test_bad_records_name_field_and_value(patch, needle):
    with pytest.raises(TaskError) as e:
        parse_task({**GOOD, **patch})
    assert needle in str(e.value)


def test_task_file_errors_give_line(tmp_path):
    f = tmp_path / "mine.jsonl"
    bad = dict(GOOD, goal=dict(GOOD["goal"], type="fly"))
    f.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(bad) + "\n")
    with pytest.raises(TaskError, match=r"mine.jsonl:3: field 'goal.type': 'fly'"):
        load_tasks(f)
    f.write_text("{not json\n")
    with pytest.raises(TaskError, match="mine.jsonl:1: not valid JSON"):
        load_tasks(f)
    with pytest.raises(TaskError, match="does not exist"):
        load_tasks(tmp_path / "nope.jsonl")


def test_scene_is_deterministic_and_contains_goal_objects():
    t = parse_task(GOOD)
    a, b = scene_for(t), scene_for(t)
    assert a == b
    assert a.find("red", "cube").name == "obj0" and a.find("green", "bowl").name == "obj1"
    other = scene_for(parse_task({**GOOD, "seed": 4}))
    assert other != a
    pairs = [(o.color, o.kind) for o in a.objects]
    assert len(pairs) == len(set(pairs))
