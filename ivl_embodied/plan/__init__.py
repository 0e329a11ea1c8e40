"""Plans: schema and parser, safety gate, 3D grounding. ROS-free."""

from ivl_embodied.plan.schema import (
    ACTIONS,
    GROUNDING_MAX,
    Plan,
    PlanParseError,
    Step,
    format_plan,
    parse_plan,
    plan_json_schema,
)

__all__ = [
    "ACTIONS",
    "GROUNDING_MAX",
    "Plan",
    "PlanParseError",
    "Step",
    "format_plan",
    "parse_plan",
    "plan_json_schema",
]
