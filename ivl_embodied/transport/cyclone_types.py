"""Cyclone DDS message classes generated from the ROS 2 message definitions.

Every message type is an ``IdlStruct`` built at run time from the field definitions rosbags
parsed (:mod:`ivl_embodied.transport.msgdefs`) — never hand-copied — and named the way ROS 2's
``rmw_cyclonedds`` names it: ``sensor_msgs/msg/Image`` → DDS type ``sensor_msgs::msg::dds_::Image_``.
Structs are final (plain CDR, XCDR1), keyless, never ``@appendable``. Message constants
(``TaskStatus.STATE_FAILED``) are class attributes; every field has a ROS-like default, so
``msg_type("std_msgs/msg/String")()`` is a valid empty message.

Bulk ``uint8[]``
    The binding's stock ``sequence[uint8]`` machine packs with ``struct.pack_into("<NB", *value)``:
    one Python int per byte (~100 ms for a 3.7 MB embedding). After a class is built we swap, in
    its already-built serialization machines, each machine of a ``uint8[]``/``byte[]`` field for
    :class:`BulkOctetSequenceMachine`, which writes ``uint32 length`` + the raw bytes with one
    ``memcpy``. The class's *type annotations* stay ``sequence[uint8]``, so the XTypes type
    information our readers/writers advertise is exactly what the stock binding advertises, and
    the wire bytes are exactly ``sequence<uint8>`` (checked by the byte-identity tests against
    rosbags and by :func:`_bulk_self_check` at first use). This relies on binding internals
    (``IDL.v1_machine.members_machines``, ``Buffer.write_bytes``/``read_bytes``) that we pinned
    with ``cyclonedds==11.0.1``; another version gets a warning and the self-check, and if the
    internals are missing or the self-check fails the stock machine is kept (correct, slower).
    ``IVL_CYCLONE_BULK=0`` disables the bulk path.
"""

from __future__ import annotations

import dataclasses
import keyword
import logging
import os
import threading
from typing import Any

from ivl_embodied.transport import msgdefs

LOG = logging.getLogger(__name__)

PINNED_CYCLONEDDS = "11.0.1"
"""The binding version whose internals the bulk ``uint8[]`` path was verified against."""

CDR_LE_HEADER = b"\x00\x01\x00\x00"
"""Encapsulation header of plain CDR (XCDR1), little-endian, no options."""

_BULK_BASE_TYPES = ("uint8", "byte")
_LOCK = threading.RLock()
_CLASSES: dict[str, type] = {}
_BULK_STATE: dict[str, Any] = {}


class MessageDecodeError(ValueError):
    """CDR bytes that do not decode as the expected message type."""


def _cdr() -> Any:
    """The cyclonedds modules we build on (imported lazily: heavy, optional)."""
    import cyclonedds.idl as idl
    import cyclonedds.idl._machinery as machinery
    import cyclonedds.idl.types as types
    from cyclonedds.idl._support import Buffer, Endianness

    return idl, machinery, types, Buffer, Endianness


def cyclonedds_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cyclonedds")
    except PackageNotFoundError:  # pragma: no cover - source build without metadata
        return "unknown"


# --------------------------------------------------------------------------- bulk uint8[] path


def as_byte_view(value: Any) -> Any:
    """A C-contiguous byte view of ``value`` for a ``uint8[]`` field.

    Accepts ``bytes``, ``bytearray``, ``memoryview``, numpy ``uint8``/``int8`` arrays (any shape;
    made contiguous if needed), ``array.array('B')`` and plain sequences of ints 0..255.
    """
    if isinstance(value, (bytes, bytearray)):
        return value
    if type(value).__module__ == "numpy" or hasattr(value, "__array_interface__"):
        import numpy as np

        arr = np.asarray(value)
        if arr.dtype not in (np.uint8, np.int8):
            raise TypeError(f"uint8[] field needs a uint8 array, got dtype {arr.dtype} shape {arr.shape}")
        return memoryview(np.ascontiguousarray(arr)).cast("B")
    if isinstance(value, memoryview) or hasattr(value, "__buffer__") or type(value).__name__ == "array":
        mv = memoryview(value)
        if mv.itemsize != 1 and mv.format not in ("B", "b", "c"):
            raise TypeError(f"uint8[] field needs 1-byte items, got buffer format {mv.format!r}")
        return mv if mv.c_contiguous and mv.format == "B" and mv.ndim == 1 else memoryview(mv.tobytes())
    try:
        return bytes(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"uint8[] field needs bytes-like data, got {type(value).__name__}: {exc}") from exc


def _make_bulk_machine_class() -> type:
    _, machinery, _, _, _ = _cdr()

    class BulkOctetSequenceMachine(machinery.PlainCdrV2SequenceOfPrimitiveMachine):
        """``sequence<uint8>`` written/read as one block of bytes (same wire format)."""

        def serialize(self, buffer, value, serialize_kind=None, key_enabled=None):  # noqa: ARG002
            data = as_byte_view(value)
            n = data.nbytes if isinstance(data, memoryview) else len(data)
            if self.max_length is not None and n > self.max_length:
                raise ValueError(f"uint8[] of {n} bytes exceeds its bound {self.max_length}")
            buffer.align(4)
            buffer.write("I", 4, n)
            if n:
                buffer.write_bytes(data)

        def deserialize(self, buffer, deserialize_kind=None, key_enabled=None):  # noqa: ARG002
            buffer.align(4)
            n = buffer.read("I", 4)
            if n > buffer._size - buffer._pos:
                raise MessageDecodeError(
                    f"uint8[] length {n} exceeds the {buffer._size - buffer._pos} bytes left"
                )
            return buffer.read_bytes(n)

        def default_initialize(self):
            return b""

    return BulkOctetSequenceMachine


def _bulk_supported() -> bool:
    """Whether the bulk path may be installed (version pin, internals present, self-check)."""
    if "ok" in _BULK_STATE:
        return _BULK_STATE["ok"]
    ok = True
    if os.environ.get("IVL_CYCLONE_BULK", "1") == "0":
        LOG.info("IVL_CYCLONE_BULK=0: using the binding's stock uint8[] machine")
        ok = False
    else:
        found = cyclonedds_version()
        if found != PINNED_CYCLONEDDS:
            LOG.warning(
                "cyclonedds %s found but the bulk uint8[] path was verified with %s; "
                "running its self-check (pin cyclonedds==%s)",
                found, PINNED_CYCLONEDDS, PINNED_CYCLONEDDS,
            )
        _, machinery, _, Buffer, _ = _cdr()
        needed = [
            (machinery, "PlainCdrV2SequenceOfPrimitiveMachine"),
            (machinery, "StructMachine"),
            (Buffer, "write_bytes"),
            (Buffer, "read_bytes"),
        ]
        missing = [name for obj, name in needed if not hasattr(obj, name)]
        if missing:
            LOG.error("cyclonedds %s lacks %s: bulk uint8[] path disabled (slow stock path)", found, missing)
            ok = False
        else:
            _BULK_STATE["machine"] = _make_bulk_machine_class()
    _BULK_STATE["ok"] = ok
    if ok:
        try:
            _bulk_self_check()
        except Exception as exc:  # any failure here means: do not trust the internals
            LOG.error("bulk uint8[] self-check failed (%s): using the stock machine", exc)
            _BULK_STATE["ok"] = False
    return _BULK_STATE["ok"]


def _bulk_self_check() -> None:
    """Serialize one struct with the stock and the bulk machine; bytes must be identical."""
    idl, _, types, _, _ = _cdr()
    ns = {"a": types.uint16, "data": types.sequence[types.uint8], "b": types.float64}
    stock = idl.make_idl_struct("IvlBulkCheck", "ivl::BulkCheck_", ns)
    bulk = idl.make_idl_struct("IvlBulkCheck", "ivl::BulkCheck_", ns)
    _install_bulk(bulk, ["data"])
    payload = bytes(range(256)) * 3 + b"\x07"
    want = stock(a=7, data=list(payload), b=-0.5).serialize(use_version_2=False)
    got = bulk(a=7, data=payload, b=-0.5).serialize(use_version_2=False)
    if want != got:
        raise RuntimeError(f"bulk bytes differ from stock bytes ({len(got)} vs {len(want)} bytes)")
    back = bulk.deserialize(want)
    if back.data != payload or back.a != 7 or back.b != -0.5:
        raise RuntimeError("bulk machine does not read back the stock bytes")


def _install_bulk(cls: type, fields: list[str]) -> None:
    """Swap the machines of ``fields`` (uint8[] sequences) in ``cls``' built machines."""
    idl_info = cls.__idl__
    idl_info.populate()
    machine_cls = _BULK_STATE["machine"]
    for top in (idl_info.v1_machine, idl_info.v2_machine):
        members = top.members_machines
        for f in fields:
            old = members[f]
            if not isinstance(old, _cdr()[1].PlainCdrV2SequenceOfPrimitiveMachine) or old.size != 1:
                raise RuntimeError(f"unexpected machine {type(old).__name__} for uint8[] field {f!r}")
            members[f] = machine_cls(_cdr()[2].uint8, max_length=old.max_length)


# --------------------------------------------------------------------------- class generation


def dds_type_name(type_name: str) -> str:
    """``pkg/msg/Name`` → ``pkg::msg::dds_::Name_`` (rmw_cyclonedds' naming)."""
    pkg, _, name = msgdefs.normalize_type_name(type_name).split("/")
    return f"{pkg}::msg::dds_::{name}_"


def _base_annotation(base: str, bound: int, types: Any) -> Any:
    mapping = {
        "bool": bool,
        "byte": types.byte,
        "char": types.uint8,  # ROS 2 `char` is an unsigned 8-bit integer
        "int8": types.int8,
        "uint8": types.uint8,
        "int16": types.int16,
        "uint16": types.uint16,
        "int32": types.int32,
        "uint32": types.uint32,
        "int64": types.int64,
        "uint64": types.uint64,
        "float32": types.float32,
        "float64": types.float64,
    }
    if base == "string":
        return types.bounded_str[bound] if bound else str
    if base in mapping:
        return mapping[base]
    raise TypeError(f"ROS base type {base!r} is not supported by the Cyclone backend")


def _base_default(base: str) -> Any:
    if base == "string":
        return ""
    if base == "bool":
        return False
    if base.startswith("float"):
        return 0.0
    return 0


def _field_spec(fdef: Any, types: Any) -> tuple[Any, Any, bool]:
    """``(annotation, default_factory, is_bulk)`` for one rosbags field definition."""
    kind, detail = fdef
    kind = kind.name
    if kind == "BASE":
        base, bound = detail
        default = _base_default(base)
        return _base_annotation(base, bound, types), (lambda d=default: d), False
    if kind == "NAME":
        sub = msg_type(detail)
        return sub, sub, False
    (sub_kind, sub_detail), count = detail
    if sub_kind.name == "BASE":
        sub_ann = _base_annotation(sub_detail[0], sub_detail[1], types)
        sub_default = _base_default(sub_detail[0])
        byteish = sub_detail[0] in _BULK_BASE_TYPES
    else:
        sub_ann = msg_type(sub_detail)
        sub_default = None
        byteish = False
    if kind == "ARRAY":
        if byteish:  # the binding reads/writes fixed uint8 arrays as bytes already
            return types.array[sub_ann, count], (lambda n=count: bytes(n)), False
        if sub_default is None:
            return types.array[sub_ann, count], (lambda c=sub_ann, n=count: [c() for _ in range(n)]), False
        return types.array[sub_ann, count], (lambda d=sub_default, n=count: [d] * n), False
    if kind == "SEQUENCE":
        ann = types.sequence[sub_ann, count] if count else types.sequence[sub_ann]
        if byteish:
            return ann, bytes, True
        return ann, list, False
    raise TypeError(f"unsupported field definition {fdef!r}")


def _build_class(type_name: str) -> type:
    idl, _, types, _, _ = _cdr()
    consts, fields = msgdefs.field_defs(type_name)
    pkg, _, name = type_name.split("/")
    namespace = idl.IdlMeta.__prepare__(name, (idl.IdlStruct,), typename=dds_type_name(type_name))
    bulk_fields: list[str] = []
    for fname, fdef in fields:
        if keyword.iskeyword(fname):
            raise TypeError(f"{type_name} field {fname!r} is a Python keyword")
        ann, factory, is_bulk = _field_spec(fdef, types)
        namespace["__annotations__"][fname] = ann
        namespace[fname] = dataclasses.field(default_factory=factory)
        if is_bulk:
            bulk_fields.append(fname)
    namespace["__module__"] = f"ivl_embodied.transport.generated.{pkg}"
    namespace["__qualname__"] = name
    cls = idl.IdlMeta(name, (idl.IdlStruct,), namespace)
    cls = dataclasses.dataclass(cls)
    for cname, _ctype, cvalue in consts:
        setattr(cls, cname, cvalue)
    cls.__ros_type__ = type_name  # type: ignore[attr-defined]
    cls.__ros_constants__ = tuple(c[0] for c in consts)  # type: ignore[attr-defined]
    cls.__bulk_fields__ = tuple(bulk_fields)  # type: ignore[attr-defined]
    cls.__idl__.populate()
    if bulk_fields and _bulk_supported():
        _install_bulk(cls, bulk_fields)
    return cls


def msg_type(type_name: str) -> type:
    """The generated message class of ``pkg/msg/Name`` (``pkg/Name`` also accepted); cached."""
    name = msgdefs.normalize_type_name(type_name)
    cls = _CLASSES.get(name)
    if cls is not None:
        return cls
    with _LOCK:
        if name not in _CLASSES:
            _CLASSES[name] = _build_class(name)
        return _CLASSES[name]


def ros_type_name(msg_or_cls: Any) -> str:
    """``pkg/msg/Name`` of a generated message class or instance."""
    cls = msg_or_cls if isinstance(msg_or_cls, type) else type(msg_or_cls)
    try:
        return cls.__ros_type__
    except AttributeError:
        raise TypeError(f"{cls!r} is not a generated ROS message class (use msg_type())") from None


def _resolve(type_or_cls: Any) -> type:
    if isinstance(type_or_cls, str):
        return msg_type(type_or_cls)
    ros_type_name(type_or_cls)
    return type_or_cls


# --------------------------------------------------------------------------- (de)serialization


def _view_buffer_class() -> type:
    """A ``Buffer`` whose ``asbytes()`` returns a view of its bytes instead of two copies."""
    cls = _BULK_STATE.get("view_buffer")
    if cls is None:
        _, _, _, Buffer, _ = _cdr()

        class ViewBuffer(Buffer):
            # The stock asbytes() is bytes(bytearray[0:pos]): two full copies of the sample.
            def asbytes(self):  # type: ignore[override]
                return memoryview(self._bytes)[: self._pos]

        cls = _BULK_STATE["view_buffer"] = ViewBuffer
    return cls


def serialize_view(msg: Any) -> memoryview:
    """The bytes of :func:`serialize` as a read-only view of the serializer's own buffer.

    Saves :func:`serialize`'s final copy when the bytes are handed straight to a DDS writer
    (which copies them anyway). The view keeps its buffer alive while it is referenced.
    """
    cls = type(msg)
    ros_type_name(cls)
    _, _, _, _, Endianness = _cdr()
    # Pre-size the buffer for big byte fields so it does not grow by doubling (copies).
    extra = 0
    for f in cls.__bulk_fields__:
        v = getattr(msg, f)
        extra += v.nbytes if hasattr(v, "nbytes") else len(v)
    buf = _view_buffer_class()()
    if extra:
        buf._size = extra + 512  # serialize() re-allocates the buffer at this size (zero_out)
    try:
        view = cls.__idl__.serialize(msg, use_version_2=False, buffer=buf, endianness=Endianness.Little)
    except Exception as exc:
        cause = exc.__cause__ or exc
        raise ValueError(f"cannot serialize {cls.__ros_type__}: {exc}: {cause}") from exc
    return view.toreadonly()


def serialize(msg: Any) -> bytes:
    """Full CDR bytes of ``msg``: ``00 01 00 00`` + plain little-endian CDR (what rclpy publishes raw)."""
    return bytes(serialize_view(msg))


def _readable(data: bytes | bytearray | memoryview) -> bytes | memoryview:
    """``data`` in a form ``struct.unpack_from`` and slicing read in place (no copy of it all)."""
    if isinstance(data, bytes):
        return data  # a slice of bytes is bytes: read_bytes() copies each field exactly once
    mv = memoryview(data)
    if mv.ndim == 1 and mv.format == "B":
        return mv
    return mv.cast("B") if mv.c_contiguous else memoryview(mv.tobytes())


def deserialize(type_or_cls: Any, data: bytes | bytearray | memoryview) -> Any:
    """Decode full CDR bytes (with the 4-byte encapsulation header) as ``type_or_cls``.

    Raises :class:`MessageDecodeError` for anything that is not plain CDR of that type:
    wrong or missing header, truncated data, bad lengths, invalid UTF-8 strings.
    """
    cls = _resolve(type_or_cls)
    data = _readable(data)
    size = len(data)
    if size < 4:
        raise MessageDecodeError(f"{cls.__ros_type__}: {size} bytes is shorter than a CDR header")
    head = bytes(data[:4])
    if head[0] != 0 or head[1] not in (0, 1):
        raise MessageDecodeError(
            f"{cls.__ros_type__}: encapsulation {head.hex(' ')} is not plain CDR (00 00 / 00 01)"
        )
    _, _, _, Buffer, Endianness = _cdr()
    info = cls.__idl__
    info.populate()
    # Read in place: the stock Buffer(data) first copies the whole sample into a bytearray.
    buf = Buffer(None, align_offset=4)
    buf._bytes = data
    buf._size = size
    buf.set_endianness(Endianness.Little if head[1] == 1 else Endianness.Big)
    buf._align_max = 8  # XCDR1 aligns 8-byte values to 8
    buf.seek(4)
    try:
        msg = info.v1_machine.deserialize(buf)
    except MessageDecodeError as exc:
        raise MessageDecodeError(f"{cls.__ros_type__}: cannot decode {size} bytes: {exc}") from exc
    except Exception as exc:  # struct.error, UnicodeDecodeError, IndexError, ...
        raise MessageDecodeError(
            f"{cls.__ros_type__}: cannot decode {size} bytes: {type(exc).__name__}: {exc}"
        ) from exc
    left = size - buf.tell()
    if left < 0 or left > 3:  # writers pad the sample to a multiple of 4, nothing more
        raise MessageDecodeError(
            f"{cls.__ros_type__}: {size} bytes decode to a {buf.tell()}-byte message "
            f"({'truncated' if left < 0 else f'{left} trailing bytes'})"
        )
    return msg


def to_dict(msg: Any) -> dict[str, Any]:
    """A message as nested plain dicts/lists (bytes stay bytes)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(msg):
        v = getattr(msg, f.name)
        if dataclasses.is_dataclass(v):
            v = to_dict(v)
        elif isinstance(v, list):
            v = [to_dict(x) if dataclasses.is_dataclass(x) else x for x in v]
        out[f.name] = v
    return out
