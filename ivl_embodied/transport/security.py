"""DDS Security for the node graph, SROS2-compatible: ``ivl-embodied security create KEYSTORE``.

A keystore in SROS2's layout (``public/`` CA certificates, ``private/`` CA keys, ``enclaves/<name>/``
with each participant's identity and signed documents)::

    public/identity_ca.cert.pem  public/permissions_ca.cert.pem   (one CA signs both here)
    private/ca.key.pem
    enclaves/<enclave>/cert.pem key.pem identity_ca.cert.pem permissions_ca.cert.pem
                       governance.p7s permissions.p7s permissions.xml

Governance (every domain): unauthenticated participants may not join, discovery and liveliness are
encrypted, every topic is read- and write-access controlled and its data encrypted. Permissions
(one grant per enclave, default DENY) follow the graph's data flow (:data:`GRAPH_RULES`): only the
executor may write the arm's and the gripper's command topics, only the planner the plans, and only
the named operators' enclaves may write ``/ivl/estop`` (engage *and* reset: DDS cannot tell the
value apart) and tasks. Documents are signed S/MIME (PKCS#7, detached, text) by the permissions CA,
as the OMG DDS Security specification and SROS2 do; identities are ECDSA P-256.

:func:`cyclone_security_xml` gives the ``<Security>`` element of a Cyclone DDS configuration for one
enclave. ROS 2's own Cyclone (``rmw_cyclonedds``) and Debian 12's ``libddsc0debian`` ship the
security plugins; the ``cyclonedds`` wheel on PyPI does not, so our Python nodes run secured only on a
Cyclone built with them (``tests/transport/test_security.py`` checks enforcement with Debian's).
"""

from __future__ import annotations

import argparse
import datetime
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from xml.sax.saxutils import escape

from ivl_embodied.transport.naming import dds_topic

# enclave -> (topics it may publish, topics it may subscribe to), ROS names
GRAPH_RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "vision_node": (
        ("/ivl/visual_embeddings", "/ivl/visual_embeddings_mirrored"),
        ("/camera/color/image_raw", "/ivl/vision/mirror_request"),
    ),
    "planner_node": (
        ("/ivl/plan", "/ivl/task_status", "/ivl/planner/heartbeat", "/ivl/vision/mirror_request"),
        ("/ivl/visual_embeddings", "/ivl/visual_embeddings_mirrored", "/ivl/task", "/ivl/task_status",
         "/ivl/executor/heartbeat"),
    ),
    "executor_node": (
        ("/arm_controller/joint_trajectory", "/gripper_controller/commands", "/ivl/task_status", "/ivl/task",
         "/ivl/estop_state", "/ivl/executor/heartbeat"),
        ("/ivl/plan", "/ivl/estop", "/camera/color/image_raw", "/camera/depth/image_raw",
         "/camera/color/camera_info", "/joint_states", "/tf_static", "/ivl/task_status", "/ivl/planner/heartbeat"),
    ),
    "sim_node": (  # the robot side: camera driver, joint states, controllers
        ("/camera/color/image_raw", "/camera/depth/image_raw", "/camera/color/camera_info", "/joint_states",
         "/tf_static", "/clock", "/ivl/sim/goal_reached", "/ivl/sim/task_instruction"),
        ("/arm_controller/joint_trajectory", "/gripper_controller/commands", "/ivl/estop", "/ivl/estop_state",
         "/ivl/executor/heartbeat"),
    ),
}
OPERATOR_RULES = (("/ivl/task", "/ivl/estop"), ("/ivl/task_status", "/ivl/estop_state"))
COMMON = (("/rosout",), ())  # every node may log
DISCOVERY_TOPIC = "ros_discovery_info"  # rmw's graph topic, not ROS-mangled
VALID_YEARS = 10


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _name(cn: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _ca(keystore: Path):
    """The keystore's CA (created on first use): (certificate, private key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    cert_path, key_path = keystore / "public" / "identity_ca.cert.pem", keystore / "private" / "ca.key.pem"
    if cert_path.is_file() and key_path.is_file():
        return (x509.load_pem_x509_certificate(cert_path.read_bytes()),
                serialization.load_pem_private_key(key_path.read_bytes(), None))
    (keystore / "public").mkdir(parents=True, exist_ok=True)
    (keystore / "private").mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(_name("ivl_embodied CA")).issuer_name(_name("ivl_embodied CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365 * VALID_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(key_path, key)
    cert_path.write_bytes(_pem(cert))
    shutil.copyfile(cert_path, keystore / "public" / "permissions_ca.cert.pem")
    return cert, key


def _smime_sign(data: bytes, cert, key) -> bytes:
    """``data`` signed S/MIME (detached, text), as DDS Security's governance and permissions files are."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7

    return (pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(cert, key, hashes.SHA256())
            .sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Text]))


def governance_xml(domains: tuple[int, int] = (0, 230)) -> str:
    lo, hi = domains
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
     xsi:noNamespaceSchemaLocation="http://www.omg.org/spec/DDS-SECURITY/20170901/omg_shared_ca_governance.xsd">
  <domain_access_rules>
    <domain_rule>
      <domains><id_range><min>{lo}</min><max>{hi}</max></id_range></domains>
      <allow_unauthenticated_participants>false</allow_unauthenticated_participants>
      <enable_join_access_control>true</enable_join_access_control>
      <discovery_protection_kind>ENCRYPT</discovery_protection_kind>
      <liveliness_protection_kind>ENCRYPT</liveliness_protection_kind>
      <rtps_protection_kind>SIGN</rtps_protection_kind>
      <topic_access_rules>
        <topic_rule>
          <topic_expression>*</topic_expression>
          <enable_discovery_protection>true</enable_discovery_protection>
          <enable_liveliness_protection>true</enable_liveliness_protection>
          <enable_read_access_control>true</enable_read_access_control>
          <enable_write_access_control>true</enable_write_access_control>
          <metadata_protection_kind>ENCRYPT</metadata_protection_kind>
          <data_protection_kind>ENCRYPT</data_protection_kind>
        </topic_rule>
      </topic_access_rules>
    </domain_rule>
  </domain_access_rules>
</dds>
"""


def dds_topics(ros_topics: Iterable[str]) -> list[str]:
    return [dds_topic(t) for t in ros_topics]


def permissions_xml(enclave: str, publish: Iterable[str], subscribe: Iterable[str], not_before: datetime.datetime,
                    not_after: datetime.datetime, domains: tuple[int, int] = (0, 230)) -> str:
    """One grant for ``enclave`` (subject ``CN=/enclave``): these DDS topics and the graph topic, else DENY."""
    def topics(names: Iterable[str]) -> str:
        return "".join(f"<topic>{escape(n)}</topic>" for n in [*names, DISCOVERY_TOPIC])

    lo, hi = domains
    fmt = "%Y-%m-%dT%H:%M:%S"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
     xsi:noNamespaceSchemaLocation="http://www.omg.org/spec/DDS-SECURITY/20170901/omg_shared_ca_permissions.xsd">
  <permissions>
    <grant name="/{escape(enclave)}">
      <subject_name>CN=/{escape(enclave)}</subject_name>
      <validity><not_before>{not_before.strftime(fmt)}</not_before><not_after>{not_after.strftime(fmt)}</not_after></validity>
      <allow_rule>
        <domains><id_range><min>{lo}</min><max>{hi}</max></id_range></domains>
        <publish><topics>{topics(publish)}</topics></publish>
        <subscribe><topics>{topics(subscribe)}</topics></subscribe>
      </allow_rule>
      <default>DENY</default>
    </grant>
  </permissions>
</dds>
"""


def create_enclave(keystore: Path, enclave: str, publish: Iterable[str], subscribe: Iterable[str]) -> Path:
    """An identity (``CN=/enclave``) and signed permissions for ``enclave`` (ROS topic names)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    if not enclave or not all(c.isalnum() or c in "_-" for c in enclave):
        raise ValueError(f"enclave names are letters, digits, '_' and '-', got {enclave!r}")
    ca_cert, ca_key = _ca(keystore)
    out = keystore / "enclaves" / enclave
    out.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = now + datetime.timedelta(days=365 * VALID_YEARS)
    cert = (x509.CertificateBuilder().subject_name(_name(f"/{enclave}")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    _write_key(out / "key.pem", key)
    (out / "cert.pem").write_bytes(_pem(cert))
    for name in ("identity_ca.cert.pem", "permissions_ca.cert.pem"):
        shutil.copyfile(keystore / "public" / name, out / name)
    gov = governance_xml().encode()
    (out / "governance.xml").write_bytes(gov)
    (out / "governance.p7s").write_bytes(_smime_sign(gov, ca_cert, ca_key))
    perms = permissions_xml(enclave, dds_topics(publish), dds_topics(subscribe),
                            now - datetime.timedelta(days=1), not_after).encode()
    (out / "permissions.xml").write_bytes(perms)
    (out / "permissions.p7s").write_bytes(_smime_sign(perms, ca_cert, ca_key))
    return out


def create_keystore(keystore: Path, operators: Iterable[str] = ("operator",),
                    rules: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = GRAPH_RULES) -> list[Path]:
    """A CA and one enclave per node of the graph and per named operator."""
    keystore = Path(keystore)
    out = []
    for enclave, (pub, sub) in rules.items():
        out.append(create_enclave(keystore, enclave, [*pub, *COMMON[0]], [*sub, *COMMON[1]]))
    for name in operators:
        if name in rules:
            raise ValueError(f"operator {name!r} has a node's name")
        out.append(create_enclave(keystore, name, [*OPERATOR_RULES[0], *COMMON[0]], OPERATOR_RULES[1]))
    return out


def cyclone_security_xml(enclave_dir: Path, plugin_dir: str = "") -> str:
    """The ``<Security>`` element of a Cyclone DDS configuration for one enclave. ``plugin_dir``: where
    ``libdds_security_{auth,ac,crypto}.so`` are, if not on the library path."""
    d = Path(enclave_dir).resolve()
    lib = (lambda name: f"{plugin_dir.rstrip('/')}/lib{name}.so") if plugin_dir else (lambda name: name)
    return f"""<Security>
  <Authentication>
    <Library path="{lib('dds_security_auth')}" initFunction="init_authentication"
             finalizeFunction="finalize_authentication"/>
    <IdentityCertificate>file:{d}/cert.pem</IdentityCertificate>
    <IdentityCA>file:{d}/identity_ca.cert.pem</IdentityCA>
    <PrivateKey>file:{d}/key.pem</PrivateKey>
  </Authentication>
  <AccessControl>
    <Library path="{lib('dds_security_ac')}" initFunction="init_access_control"
             finalizeFunction="finalize_access_control"/>
    <PermissionsCA>file:{d}/permissions_ca.cert.pem</PermissionsCA>
    <Governance>file:{d}/governance.p7s</Governance>
    <Permissions>file:{d}/permissions.p7s</Permissions>
  </AccessControl>
  <Cryptographic>
    <Library path="{lib('dds_security_crypto')}" initFunction="init_crypto"
             finalizeFunction="finalize_crypto"/>
  </Cryptographic>
</Security>"""


# -- command line -------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    c = sub.add_parser("create", help="a keystore with a CA, one enclave per node and per named operator")
    c.add_argument("keystore", type=Path)
    c.add_argument("--operators", nargs="+", default=["operator"],
                   help="operator enclaves: the only ones that may send tasks and write /ivl/estop")
    x = sub.add_parser("cyclone-xml", help="print the <Security> element of a Cyclone DDS config for an enclave")
    x.add_argument("enclave_dir", type=Path)
    x.add_argument("--plugin-dir", default="", help="directory of libdds_security_*.so (default: library path)")


def run(args: argparse.Namespace) -> int:
    if args.action == "create":
        for path in create_keystore(args.keystore, args.operators):
            print(path)
        return 0
    if not (args.enclave_dir / "permissions.p7s").is_file():
        print(f"error: {args.enclave_dir} is not an enclave of a keystore (no permissions.p7s)")
        return 2
    print(cyclone_security_xml(args.enclave_dir, args.plugin_dir))
    return 0
