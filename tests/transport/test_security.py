"""DDS Security for the graph: the keystore ``ivl-embodied security create`` writes, and its enforcement by a
Cyclone DDS with the security plugins (Debian 12's ``libddsc0debian``; the pip wheel has none): only the executor
writes the arm's commands, only operators the e-stop, and a participant without our CA's identity gets nothing
delivered."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ivl_embodied.transport.security import create_keystore, cyclone_security_xml

HARNESS = Path(__file__).parent / "security_harness"
PLUGINS = Path("/usr/lib/x86_64-linux-gnu/libddsc0debian")


def _grants(enclave_dir: Path) -> tuple[set[str], set[str]]:
    root = ET.parse(enclave_dir / "permissions.xml").getroot()
    rule = root.find("permissions/grant/allow_rule")
    return ({t.text for t in rule.findall("publish/topics/topic")},
            {t.text for t in rule.findall("subscribe/topics/topic")})


def test_keystore_grants_follow_the_graph_and_documents_are_signed(tmp_path):
    enclaves = {p.name: p for p in create_keystore(tmp_path / "ks", operators=["alice", "bob"])}
    assert set(enclaves) == {"vision_node", "planner_node", "executor_node", "sim_node", "alice", "bob"}
    writers = {name: _grants(d)[0] for name, d in enclaves.items()}
    arm = "rt/arm_controller/joint_trajectory"
    assert [n for n, w in writers.items() if arm in w] == ["executor_node"]
    assert [n for n, w in writers.items() if "rt/gripper_controller/commands" in w] == ["executor_node"]
    assert [n for n, w in writers.items() if "rt/ivl/plan" in w] == ["planner_node"]
    assert sorted(n for n, w in writers.items() if "rt/ivl/estop" in w) == ["alice", "bob"]
    assert arm in _grants(enclaves["sim_node"])[1]
    for d in enclaves.values():
        subject = subprocess.run(["openssl", "x509", "-in", str(d / "cert.pem"), "-noout", "-subject"],
                                 capture_output=True, text=True, check=True).stdout
        assert f"CN = /{d.name}" in subject
        for doc in ("governance.p7s", "permissions.p7s"):
            subprocess.run(["openssl", "smime", "-verify", "-in", str(d / doc), "-CAfile",
                            str(d / "permissions_ca.cert.pem"), "-out", "/dev/null"], check=True, capture_output=True)
        assert (d / "key.pem").stat().st_mode & 0o077 == 0  # private keys are private
    with pytest.raises(ValueError, match="enclave names"):
        create_keystore(tmp_path / "bad", operators=["../evil"])
    xml = cyclone_security_xml(enclaves["executor_node"], str(PLUGINS))
    assert f"file:{enclaves['executor_node'].resolve()}/permissions.p7s" in xml and "libdds_security_ac.so" in xml


def _build_harness(out: Path) -> Path:
    for tool in ("gcc", "idlc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (scripts/test.sh installs cyclonedds-dev, cyclonedds-tools, gcc)")
    if not Path("/usr/include/dds/dds.h").is_file() or not (PLUGINS / "libdds_security_ac.so").is_file():
        pytest.skip("Debian's Cyclone DDS with security plugins (cyclonedds-dev, libddsc0debian) is not installed")
    subprocess.run(["idlc", str(HARNESS / "Msg.idl")], cwd=out, check=True, capture_output=True)
    subprocess.run(["gcc", "-O1", "-o", "harness", str(HARNESS / "harness.c"), "Msg.c", "-I.", "-lddsc"], cwd=out,
                   check=True, capture_output=True)
    return out / "harness"


def _config(path: Path, domain: int, enclave: Path | None) -> str:
    security = cyclone_security_xml(enclave, str(PLUGINS)) if enclave is not None else ""
    path.write_text(f"""<CycloneDDS><Domain Id="{domain}"><General><Interfaces>
<NetworkInterface name="lo" multicast="false"/></Interfaces><AllowMulticast>false</AllowMulticast></General>
<Discovery><ParticipantIndex>auto</ParticipantIndex><Peers><Peer address="127.0.0.1"/></Peers></Discovery>
{security}</Domain></CycloneDDS>""")
    return f"file://{path}"


@pytest.mark.slow
def test_only_authorised_participants_write_to_the_arm_and_the_estop(tmp_path):
    harness = _build_harness(tmp_path)
    ours = {p.name: p for p in create_keystore(tmp_path / "ks", operators=["alice"])}
    theirs = {p.name: p for p in create_keystore(tmp_path / "forged", operators=["alice"])}  # another CA
    arm, estop = "rt/arm_controller/joint_trajectory", "rt/ivl/estop"
    cases = {  # name: (reader enclave, writer enclave or None for an unsecured participant, topic, delivered?)
        "executor -> arm": (ours["sim_node"], ours["executor_node"], arm, True),
        "operator -> arm": (ours["sim_node"], ours["alice"], arm, False),
        "planner -> arm": (ours["sim_node"], ours["planner_node"], arm, False),
        "no security -> arm": (ours["sim_node"], None, arm, False),
        "forged CA 'executor' -> arm": (ours["sim_node"], theirs["executor_node"], arm, False),
        "operator -> e-stop": (ours["executor_node"], ours["alice"], estop, True),
        "planner -> e-stop": (ours["executor_node"], ours["planner_node"], estop, False),
        "no security -> e-stop": (ours["executor_node"], None, estop, False),
    }
    procs = {}
    for i, (name, (reader, writer, topic, _)) in enumerate(cases.items()):
        domain = 200 + i  # each case alone on its domain, all at once
        env_r = {"CYCLONEDDS_URI": _config(tmp_path / f"r{i}.xml", domain, reader), "PATH": "/usr/bin:/bin"}
        env_w = {"CYCLONEDDS_URI": _config(tmp_path / f"w{i}.xml", domain, writer), "PATH": "/usr/bin:/bin"}
        procs[name] = (subprocess.Popen([str(harness), "sub", topic, "12"], env=env_r, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True),
                       subprocess.Popen([str(harness), "pub", topic, "9"], env=env_w, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True))
    results = {}
    for name, (sub, pub) in procs.items():
        results[name] = (sub.communicate(timeout=60)[0].strip().splitlines()[-1],
                         pub.communicate(timeout=60)[0].strip().splitlines()[-1])
    for name, (_, _, _, delivered) in cases.items():
        received = int(results[name][0].split()[-1]) if results[name][0].startswith("received") else -1
        assert received >= 0, (name, results[name])  # the authorised reader itself always runs
        assert (received > 0) == delivered, (name, results[name])
    assert results["operator -> arm"][1] == "topic: Not Allowed By Security"  # refused at the writer already
