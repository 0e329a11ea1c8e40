"""Our CDR bytes == rosbags' ROS 2 (Jazzy) CDR bytes, for every message type we use.

rosbags is an independent implementation of ROS 2's CDR; agreeing with it byte for byte is
what makes the Cyclone backend wire-identical with rclpy/rmw_cyclonedds.
"""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivl_embodied.transport import cyclone_types, msgdefs
from ivl_embodied.transport.cyclone_types import deserialize, msg_type, serialize

PROJECT_TYPES = msgdefs.our_type_names() + [
    "std_msgs/msg/Header",
    "std_msgs/msg/String",
    "std_msgs/msg/Float64MultiArray",
    "builtin_interfaces/msg/Time",
    "builtin_interfaces/msg/Duration",
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CameraInfo",
    "sensor_msgs/msg/JointState",
    "sensor_msgs/msg/PointCloud2",
    "geometry_msgs/msg/Pose",
    "geometry_msgs/msg/PoseStamped",
    "trajectory_msgs/msg/JointTrajectory",
    "rosgraph_msgs/msg/Clock",
    "std_msgs/msg/Bool",
    "std_msgs/msg/Empty",
]

INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1), "uint8": (0, 2**8 - 1), "byte": (0, 255), "char": (0, 255),
    "int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1),
}
NP_DTYPES = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
    "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}
SPECIAL_F64 = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, -2.2250738585072014e-308,
               1.7976931348623157e308]
SPECIAL_F32 = [0.0, -0.0, math.inf, -math.inf, math.nan, 1e-45, -1.1754942106924411e-38,
               3.4028234663852886e38]
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


def base_strategy(base: str, bound: int = 0) -> st.SearchStrategy:
    if base == "byte":  # rosbags packs a scalar `byte` as a signed char: keep to 0..127
        return st.one_of(st.sampled_from([0, 127]), st.integers(0, 127))
    if base in INT_RANGES:
        lo, hi = INT_RANGES[base]
        return st.one_of(st.sampled_from([lo, hi, 0]), st.integers(lo, hi))
    if base == "bool":
        return st.booleans()
    if base == "float64":
        return st.one_of(st.sampled_from(SPECIAL_F64), st.floats(allow_nan=True))
    if base == "float32":
        return st.one_of(st.sampled_from(SPECIAL_F32), st.floats(width=32, allow_nan=True))
    if base == "string":
        return st.one_of(st.sampled_from(["", "héllo wörld ✓ 机器人 🤖"]), TEXT).map(
            lambda s: s[:bound] if bound else s
        )
    raise AssertionError(base)


def msg_strategy(type_name: str, depth: int = 0) -> st.SearchStrategy:
    _, fields = msgdefs.field_defs(type_name)
    cls = msg_type(type_name)
    parts = {}
    for name, (kind, detail) in fields:
        if kind.name == "BASE":
            parts[name] = base_strategy(*detail)
        elif kind.name == "NAME":
            parts[name] = msg_strategy(detail, depth + 1)
        else:
            (sub_kind, sub_detail), count = detail
            if sub_kind.name == "BASE":
                elem = base_strategy(*sub_detail)
            else:
                elem = msg_strategy(sub_detail, depth + 1)
            if kind.name == "ARRAY":
                lst = st.lists(elem, min_size=count, max_size=count)
            else:
                hi = min(count, 3) if count else (0 if depth > 2 else 3)
                lst = st.lists(elem, max_size=hi)
            if sub_kind.name == "BASE" and sub_detail[0] in ("uint8", "byte"):
                size = st.integers(count, count) if kind.name == "ARRAY" else st.integers(0, 40)
                # bytes, bytearray, numpy and memoryview are all accepted by the bulk path
                lst = st.tuples(st.binary(min_size=0, max_size=40), st.sampled_from(["b", "ba", "np", "mv"])).map(
                    _as_kind) if kind.name == "SEQUENCE" else size.flatmap(lambda n: st.binary(min_size=n, max_size=n))
            parts[name] = lst
    return st.fixed_dictionaries(parts).map(lambda kw: cls(**kw))


def _as_kind(pair):
    data, kind = pair
    return {"b": data, "ba": bytearray(data), "np": np.frombuffer(data, np.uint8).copy(),
            "mv": memoryview(data)}[kind]


def to_rosbags(store, type_name: str, msg) -> object:
    """Our message → the equivalent rosbags message object."""
    _, fields = msgdefs.field_defs(type_name)
    kw = {}
    for name, (kind, detail) in fields:
        v = getattr(msg, name)
        if kind.name == "BASE":
            kw[name] = v
        elif kind.name == "NAME":
            kw[name] = to_rosbags(store, detail, v)
        else:
            (sub_kind, sub_detail), _ = detail
            if sub_kind.name == "NAME":
                kw[name] = [to_rosbags(store, sub_detail, x) for x in v]
            elif sub_detail[0] == "string":
                kw[name] = list(v)
            elif sub_detail[0] in ("uint8", "byte", "char") and not isinstance(v, list):
                kw[name] = np.frombuffer(bytes(v), dtype=np.uint8).copy()
            else:
                kw[name] = np.array(v, dtype=NP_DTYPES[sub_detail[0]])
    return store.types[type_name](**kw)


def check_identity(type_name: str, msg) -> None:
    store = msgdefs.typestore()
    ours = serialize(msg)
    ref = bytes(store.serialize_cdr(to_rosbags(store, type_name, msg), type_name))
    assert ours[:4] == b"\x00\x01\x00\x00"
    assert ours == ref, f"{type_name}: ours {ours.hex()} != rosbags {ref.hex()}"
    # ours parses rosbags' bytes (re-serialized, to compare NaN payloads bit for bit)
    assert serialize(deserialize(type_name, ref)) == ref
    # rosbags parses ours
    assert bytes(store.serialize_cdr(store.deserialize_cdr(ours, type_name), type_name)) == ours


@pytest.mark.parametrize("type_name", PROJECT_TYPES)
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_project_types_match_rosbags(type_name: str, data) -> None:
    check_identity(type_name, data.draw(msg_strategy(type_name)))


@pytest.mark.parametrize("type_name", PROJECT_TYPES)
def test_default_instances_match_rosbags(type_name: str) -> None:
    check_identity(type_name, msg_type(type_name)())


ALL_STORE_TYPES = sorted(k for k in msgdefs.typestore().fielddefs if "/msg/" in k)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_jazzy_type_matches_rosbags(data) -> None:
    type_name = data.draw(st.sampled_from(ALL_STORE_TYPES))
    check_identity(type_name, data.draw(msg_strategy(type_name)))


def test_extreme_values_survive_round_trip() -> None:
    cls = msg_type("std_msgs/msg/Float64MultiArray")
    values = SPECIAL_F64 + [-5e-324]
    back = deserialize(cls, serialize(cls(data=values)))
    assert [struct.pack("<d", v) for v in back.data] == [struct.pack("<d", v) for v in values]
    js = msg_type("sensor_msgs/msg/JointState")(name=["ä", "", "关节"], position=[-0.0])
    out = deserialize(js.__class__, serialize(js))
    assert out.name == ["ä", "", "关节"] and math.copysign(1, out.position[0]) == -1


def test_large_image_bulk_path_matches_rosbags() -> None:
    img = msg_type("sensor_msgs/msg/Image")(
        height=480, width=640, encoding="rgb8", step=1920,
        data=np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8),
    )
    check_identity("sensor_msgs/msg/Image", img)


def test_bulk_machine_is_installed_and_advertises_stock_type() -> None:
    import cyclonedds.idl as idl
    import cyclonedds.idl.types as t

    cls = msg_type("sensor_msgs/msg/Image")
    assert cls.__bulk_fields__ == ("data",)
    assert type(cls.__idl__.v1_machine.members_machines["data"]).__name__ == "BulkOctetSequenceMachine"
    # A class the stock binding builds with the same annotations advertises the same XTypes
    # type information: the swap changes how bytes are packed, not what type we announce.
    ann = dict(cls.__annotations__)
    stock = idl.make_idl_struct("Image", "sensor_msgs::msg::dds_::Image_", ann)
    assert stock.__annotations__["data"] == t.sequence[t.uint8]
    assert stock.__idl__.get_type_info().serialize() == cls.__idl__.get_type_info().serialize()


def test_constants_and_type_names() -> None:
    ts = msg_type("ivl_embodied_msgs/msg/TaskStatus")
    assert (ts.STATE_RECEIVED, ts.STATE_REJECTED) == (0, 6)
    assert msg_type("ivl_embodied_msgs/VisualEmbedding").DTYPE_FLOAT32 == 2
    assert ts.__idl_typename__ == "ivl_embodied_msgs::msg::dds_::TaskStatus_"
    assert cyclone_types.ros_type_name(ts()) == "ivl_embodied_msgs/msg/TaskStatus"
    with pytest.raises(KeyError, match="unknown message type"):
        msg_type("ivl_embodied_msgs/msg/Nope")


@pytest.mark.parametrize(
    "bad, match",
    [
        (b"", "shorter than a CDR header"),
        (b"\x00\x07\x00\x00", "not plain CDR"),
        (b"\x00\x01\x00\x00\x09\x00\x00\x00abc", "cannot decode"),
        (b"\x00\x01\x00\x00\x02\x00\x00\x00a\x00\x00\x00" + b"x" * 8, "trailing bytes"),
        (b"\x00\x01\x00\x00\x02\x00\x00\x00\xff\x00\x00\x00", "UnicodeDecodeError"),
    ],
)
def test_malformed_bytes_raise_decode_error(bad: bytes, match: str) -> None:
    with pytest.raises(cyclone_types.MessageDecodeError, match=match):
        deserialize("std_msgs/msg/String", bad)


def test_truncated_image_is_rejected() -> None:
    img = msg_type("sensor_msgs/msg/Image")(height=2, width=2, encoding="mono8", step=2, data=b"abcd")
    data = serialize(img)
    for cut in (5, len(data) // 2, len(data) - 4):
        with pytest.raises(cyclone_types.MessageDecodeError):
            deserialize("sensor_msgs/msg/Image", data[:cut])
