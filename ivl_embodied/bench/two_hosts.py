"""Two hosts over a lossy link: 3.7 MB embeddings between two Linux network namespaces.

Two namespaces stand in for the Jetson and the workstation of ``two_machine.xml``: a veth pair
whose ends are both named ``eth0`` inside their namespace, addresses 192.168.10.2 (sender,
"Jetson") and 192.168.10.1 (receiver, "workstation"), MTU 1500, and P % of the frames leaving
EACH end dropped at random (data one way, heartbeats/ACKNACKs both ways): ``tc netem loss P%`` on
the root qdisc, or, on kernels built without sch_netem, an nftables netdev-egress rule
(``numgen random``) that drops at the same place, after IP fragmentation. The shipped Cyclone
configs then work unmodified: their placeholder interface and peer addresses are exactly these.

A sender process publishes ``--count`` ``VisualEmbedding`` messages (7 tiles × 256 tokens × 1024
hidden bf16 = 3 670 016 B of data) at ``--rate`` Hz with QoS ``large_latest`` (reliable,
keep-last 1); the receiver checks every sample's size, shape and bytes, and records the one-way
latency (receiver's ``time.monotonic_ns()`` in its callback − sender's just before serialization;
CLOCK_MONOTONIC is one clock for all namespaces of a host).

Needs root, ``ip``/``tc`` (iproute2) and netem or ``nft`` (nftables). Host-wide state touched:
``net.core.rmem_max`` is raised to what the config asks for (it is global, not per namespace) and
put back afterwards; the ``net.ipv4.ipfrag_*`` sysctls are per namespace and die with it.

    sudo python3 -m ivl_embodied.bench.two_hosts --config lossy_link --loss 1          # one row
    sudo python3 -m ivl_embodied.bench.two_hosts --matrix --losses 0,1,3 --repeat 2 --link-rate 1gbit
    sudo python3 -m ivl_embodied.bench.two_hosts --matrix --losses 0,1,3 --repeat 3    # bare veth
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ivl_embodied.bench.lines import JsonLines

TOPIC = "/ivl/visual_embeddings"
TYPE = "ivl_embodied_msgs/msg/VisualEmbedding"
TOKENS = [256] * 7
HIDDEN = 1024
DATA_BYTES = sum(TOKENS) * HIDDEN * 2  # bf16
SENDER_ADDR, RECEIVER_ADDR = "192.168.10.2", "192.168.10.1"  # two_machine.xml's Jetson / workstation
IFNAME = "eth0"
REPO = Path(__file__).resolve().parents[2]

# Receiver-side IP reassembly limits (per network namespace) that keep 64 kB datagrams whole
# under loss: see lossy_link.xml for why.
IPFRAG_SYSCTLS = {"net.ipv4.ipfrag_high_thresh": "134217728", "net.ipv4.ipfrag_time": "3"}
SNMP_KEYS = ("OutRequests", "FragCreates", "ReasmReqds", "ReasmOKs", "ReasmFails", "InDatagrams", "RcvbufErrors")


def netns_unavailable() -> str | None:
    """Why network namespaces with injected loss cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (creates network namespaces, veth pairs and loss rules)"
    if shutil.which("ip") is None:
        return "`ip` not found (Debian: apt-get install iproute2)"
    probe = f"ivlprobe{uuid.uuid4().hex[:8]}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return f"`ip netns add` failed: {r.stderr.strip()}"
    try:
        _sh("ip", "netns", "exec", probe, "ip", "link", "add", "ivlp0", "type", "veth", "peer", "name", "ivlp1")
        _add_loss(probe, "ivlp0", 1.0)
    except RuntimeError as exc:
        return str(exc)
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


def _add_loss(ns: str, dev: str, loss_pct: float) -> str:
    """Drop ``loss_pct`` % of the frames leaving ``dev`` in ``ns``: ``tc netem`` when the kernel has
    it, else an nftables netdev egress rule (after IP fragmentation, like netem: every IP fragment
    is dropped on its own). Returns which one it used."""
    netem = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "handle", "1:",
                            "netem", "loss", f"{loss_pct:g}%"], capture_output=True, text=True, timeout=10)
    if netem.returncode == 0:
        return "tc netem"
    if shutil.which("nft") is None:
        raise RuntimeError(f"tc netem unavailable ({netem.stderr.strip()}) and no `nft` for the fallback "
                           "(Debian: apt-get install nftables)")
    ruleset = (f"table netdev ivl_loss {{\n chain egress {{\n"
               f'  type filter hook egress device "{dev}" priority 0; policy accept;\n'
               f"  numgen random mod 100000 < {round(loss_pct * 1000)} counter drop\n }}\n}}\n")
    r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset, capture_output=True, text=True,
                       timeout=10)
    if r.returncode != 0:
        raise RuntimeError(f"tc netem unavailable ({netem.stderr.strip()}); nftables egress drop failed too: "
                           f"{r.stderr.strip()}")
    return "nftables netdev egress (numgen random)"


def _sh(*argv: str) -> str:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def _sysctl_get(key: str) -> int:
    return int(Path("/proc/sys", *key.split(".")).read_text().split()[0])


class LossyLink:
    """Two namespaces joined by a veth pair dropping ``loss_pct`` % of the frames leaving each end.

    ``link_rate`` (tc units, e.g. ``1gbit``) limits each end with a token bucket, as a real link's
    bandwidth would (a bare veth is as fast as the CPU). ``ns_sysctls`` are set in both
    namespaces; ``rmem_max`` (bytes) raises the host-wide
    net.core.rmem_max for the lifetime of the link when it is lower. Everything is removed in
    :meth:`close` (also on a failed setup), including processes still running in the namespaces.
    """

    def __init__(self, loss_pct: float, ns_sysctls: dict[str, str] | None = None, rmem_max: int | None = None,
                 link_rate: str | None = None):
        tag = uuid.uuid4().hex[:8]
        self.sender_ns, self.receiver_ns = f"ivl{tag}s", f"ivl{tag}r"
        self.loss_pct = loss_pct
        self.ns_sysctls = dict(ns_sysctls or {})
        self.rmem_max = rmem_max
        self.link_rate = link_rate
        self._made: list[str] = []
        self._rmem_restore: tuple[int, int] | None = None  # (old, ours)
        self._tag = tag
        self.injector = "none"

    def __enter__(self) -> LossyLink:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _setup(self) -> None:
        if self.rmem_max and _sysctl_get("net.core.rmem_max") < self.rmem_max:
            old = _sysctl_get("net.core.rmem_max")
            _sh("sysctl", "-q", "-w", f"net.core.rmem_max={self.rmem_max}")
            self._rmem_restore = (old, self.rmem_max)
        for ns in (self.sender_ns, self.receiver_ns):
            _sh("ip", "netns", "add", ns)
            self._made.append(ns)
        va, vb = f"ivl{self._tag}a", f"ivl{self._tag}b"  # <= 15 chars, unique in the root namespace
        _sh("ip", "link", "add", va, "type", "veth", "peer", "name", vb)
        try:
            _sh("ip", "link", "set", va, "netns", self.sender_ns)
            _sh("ip", "link", "set", vb, "netns", self.receiver_ns)
        except RuntimeError:
            subprocess.run(["ip", "link", "del", va], capture_output=True, timeout=10)
            raise
        for ns, dev, addr in ((self.sender_ns, va, SENDER_ADDR), (self.receiver_ns, vb, RECEIVER_ADDR)):
            ex = ("ip", "netns", "exec", ns)
            _sh(*ex, "ip", "link", "set", dev, "name", IFNAME)
            _sh(*ex, "ip", "addr", "add", f"{addr}/24", "dev", IFNAME)
            _sh(*ex, "ip", "link", "set", IFNAME, "mtu", "1500", "up")
            _sh(*ex, "ip", "link", "set", "lo", "up")
            if self.loss_pct > 0:
                self.injector = _add_loss(ns, IFNAME, self.loss_pct)
            if self.link_rate:  # a wire's serialization time; under netem as its child, else at the root
                where = ("parent", "1:1") if self.injector == "tc netem" else ("root",)
                _sh(*ex, "tc", "qdisc", "add", "dev", IFNAME, *where, "tbf", "rate", self.link_rate, "burst", "256kb",
                    "latency", "200ms")
            for key, value in self.ns_sysctls.items():
                _sh(*ex, "sysctl", "-q", "-w", f"{key}={value}")

    def exec_argv(self, ns: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]

    def proc_net(self, ns: str, name: str) -> str:
        """/proc/net/``name`` as seen inside ``ns``."""
        return _sh("ip", "netns", "exec", ns, "cat", f"/proc/net/{name}")

    def snmp(self, ns: str) -> dict[str, int]:
        """The IP reassembly and UDP receive counters of ``ns`` (/proc/net/snmp)."""
        rows = [line.split() for line in self.proc_net(ns, "snmp").splitlines()]
        out: dict[str, int] = {}
        for head, vals in zip(rows[::2], rows[1::2], strict=True):
            if head[0] in ("Ip:", "Udp:"):
                table = dict(zip(head[1:], map(int, vals[1:]), strict=True))
                out.update({k: table[k] for k in SNMP_KEYS if k in table})
        return out

    def frag_memory(self, ns: str) -> int:
        """Bytes held by incomplete IP reassembly queues in ``ns`` (/proc/net/sockstat FRAG memory)."""
        m = re.search(r"^FRAG: inuse \d+ memory (\d+)", self.proc_net(ns, "sockstat"), re.M)
        return int(m.group(1)) if m else 0

    def close(self) -> None:
        for ns in self._made:
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10).stdout
            for pid in pids.split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
        for ns in reversed(self._made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)  # takes its veth end
        self._made.clear()
        if self._rmem_restore is not None:
            old, ours = self._rmem_restore
            if _sysctl_get("net.core.rmem_max") == ours:  # nobody changed it since
                subprocess.run(["sysctl", "-q", "-w", f"net.core.rmem_max={old}"], capture_output=True, timeout=10)
            self._rmem_restore = None


# --------------------------------------------------------------------------- configs


def config_path(profile: str) -> Path:
    """A shipped profile name (``two_machine``, ``lossy_link``) or a path to a Cyclone XML."""
    if profile.endswith(".xml") or os.sep in profile:
        return Path(profile).resolve()
    from ivl_embodied.transport.factory import cyclone_config_uri

    return Path(cyclone_config_uri(profile)[len("file://"):])


def variant(base: Path, out_dir: Path, fragment: int | None = None, max_message: int | None = None) -> Path:
    """A copy of ``base`` with FragmentSize / MaxMessageSize (and MaxRexmitMessageSize) replaced."""
    text = base.read_text()
    if fragment is not None:
        text, n = re.subn(r"<FragmentSize>[^<]*</FragmentSize>", f"<FragmentSize>{fragment}B</FragmentSize>", text)
        if n != 1:
            raise ValueError(f"no FragmentSize in {base}")
    if max_message is not None:
        text, n = re.subn(r"<MaxMessageSize>[^<]*</MaxMessageSize>", f"<MaxMessageSize>{max_message}B</MaxMessageSize>",
                          text)
        if n != 1:
            raise ValueError(f"no MaxMessageSize in {base}")
        text = re.sub(r"<MaxRexmitMessageSize>[^<]*</MaxRexmitMessageSize>",
                      f"<MaxRexmitMessageSize>{max_message}B</MaxRexmitMessageSize>", text)
    path = out_dir / f"{base.stem}_f{fragment}_m{max_message}.xml"
    path.write_text(text)
    return path


def required_rmem(config: Path) -> int:
    """Bytes of SocketReceiveBufferSize min= the config insists on (0 when none)."""
    m = re.search(r'<SocketReceiveBufferSize[^>]*\bmin="(\d+)\s*([kKmM]?)(i?B)?"', config.read_text())
    if not m:
        return 0
    scale = {"": 1, "k": 1024, "K": 1024, "m": 1 << 20, "M": 1 << 20}[m.group(2)]
    return int(m.group(1)) * scale


# --------------------------------------------------------------------------- the two roles


def make_embedding(seed: int = 2) -> Any:
    import numpy as np

    from ivl_embodied.transport import msg_type

    VE = msg_type(TYPE)
    data = np.random.default_rng(seed).integers(0, 256, DATA_BYTES, dtype=np.uint8)
    return VE(source_width=1344, source_height=896, grid_cols=3, grid_rows=2, has_thumbnail=True, tile_size=448,
              tokens_per_tile=TOKENS, hidden_size=HIDDEN, dtype=VE.DTYPE_BFLOAT16, encoder_id="two_hosts", data=data)


def _stop_requested() -> threading.Event:
    """Set when the parent writes ``stop`` or closes our stdin."""
    ev = threading.Event()

    def watch() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        ev.set()

    threading.Thread(target=watch, daemon=True).start()
    return ev


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _receiver(count: int, match_timeout: float) -> int:
    import numpy as np

    from ivl_embodied.transport import make_node
    from ivl_embodied.transport.convert import stamp_to_ns

    def u8(data: Any) -> Any:
        if isinstance(data, (bytes, bytearray, memoryview)):
            return np.frombuffer(data, dtype=np.uint8)
        return np.asarray(data, dtype=np.uint8)

    want = u8(make_embedding().data)
    got: dict[int, tuple[float, bool]] = {}
    bad: list[str] = []

    def on_msg(msg: Any) -> None:
        now = time.monotonic_ns()
        seq = int(msg.header.frame_id)
        data = u8(msg.data)
        problem = None
        if list(msg.tokens_per_tile) != TOKENS or msg.hidden_size != HIDDEN or msg.dtype != msg.DTYPE_BFLOAT16:
            problem = f"#{seq}: header {list(msg.tokens_per_tile)} {msg.hidden_size} {msg.dtype}"
        elif data.size != DATA_BYTES or data.view(np.uint16).reshape(sum(TOKENS), HIDDEN).shape != (1792, 1024):
            problem = f"#{seq}: {data.size} bytes"
        elif not np.array_equal(data, want):
            problem = f"#{seq}: bytes differ"
        if problem:
            bad.append(problem)
        got[seq] = ((now - stamp_to_ns(msg.header.stamp)) / 1e6, problem is None)

    node = make_node("two_hosts_receiver")
    node.create_subscription(TYPE, TOPIC, on_msg, "large_latest")
    stop = _stop_requested()
    _emit({"ready": True})
    try:
        node.wait_for_publishers(TOPIC, timeout=match_timeout)
        _emit({"matched": True})
    except TimeoutError as exc:
        _emit({"error": f"receiver: {exc}"})
    while not stop.is_set() and len(got) < count:
        node.spin_once(0.05)
    node.spin_until(lambda: False, 0.1)
    node.shutdown()
    _emit({"received": {str(k): v for k, v in sorted(got.items())}, "bad": bad, "cpu_s": round(time.process_time(), 2)})
    return 0


def _sender(count: int, rate: float, drain_s: float, match_timeout: float) -> int:
    from ivl_embodied.transport import make_node
    from ivl_embodied.transport.convert import ns_to_stamp

    emb = make_embedding()
    node = make_node("two_hosts_sender")
    pub = node.create_publisher(TYPE, TOPIC, "large_latest")
    try:
        node.wait_for_subscribers(TOPIC, timeout=match_timeout)
    except TimeoutError as exc:
        _emit({"error": f"sender: {exc}"})
        node.shutdown()
        return 1
    _emit({"matched": True})
    if sys.stdin.readline().strip() != "go":
        node.shutdown()
        return 1
    period = 1.0 / rate
    t0 = time.monotonic()
    for i in range(count):
        node.spin_until(lambda: False, max(0.0, t0 + i * period - time.monotonic()))
        emb.header.frame_id = str(i)
        emb.header.stamp = ns_to_stamp(time.monotonic_ns())
        pub.publish(emb)
    node.spin_until(lambda: False, drain_s)  # let the reliable protocol repair the last sample
    node.shutdown()
    _emit({"sent": count, "send_s": round(time.monotonic() - t0, 2), "cpu_s": round(time.process_time(), 2)})
    return 0


# --------------------------------------------------------------------------- orchestration


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return round(float(np.percentile(values, q)), 1)


def run_trial(config: Path, loss_pct: float, count: int = 40, rate: float = 2.0, ipfrag: bool = False,
              domain_id: int | None = None, match_timeout: float = 30.0, drain_s: float = 2.0,
              log_dir: Path | None = None, link_rate: str | None = None) -> dict[str, Any]:
    """One sender → one receiver run across a fresh :class:`LossyLink`; returns the figures.

    ``ipfrag``: apply :data:`IPFRAG_SYSCTLS` in both namespaces; ``link_rate``: see
    :class:`LossyLink`. Every wait has a timeout; the
    children's stderr goes to ``log_dir`` (by default a temporary folder, removed again when the
    trial succeeds) and is quoted in the error when a run fails; the namespaces and anything left
    in them are removed on the way out.
    """
    domain_id = domain_id if domain_id is not None else random.SystemRandom().randint(100, 200)
    env = dict(os.environ, CYCLONEDDS_URI=config.as_uri(), ROS_DOMAIN_ID=str(domain_id), IVL_TRANSPORT="cyclonedds",
               PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    me = [sys.executable, "-m", "ivl_embodied.bench.two_hosts"]
    own_logs = log_dir is None
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="two_hosts_"))
    t0 = time.monotonic()
    procs: list[subprocess.Popen] = []
    frag_peak = [0]
    streaming = threading.Event()
    with LossyLink(loss_pct, IPFRAG_SYSCTLS if ipfrag else None, rmem_max=required_rmem(config),
                   link_rate=link_rate) as link, \
            open(log_dir / "receiver.log", "w") as rlog, open(log_dir / "sender.log", "w") as slog:

        def sample_frag_memory() -> None:  # peak memory of half-reassembled datagrams, receiver side
            while not streaming.wait(0.5):
                try:
                    frag_peak[0] = max(frag_peak[0], link.frag_memory(link.receiver_ns))
                except (RuntimeError, subprocess.TimeoutExpired):
                    pass

        def start(ns: str, argv: list[str], log: Any) -> subprocess.Popen:
            proc = subprocess.Popen(link.exec_argv(ns, [*me, *argv]), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=log, text=True, env=env, cwd=REPO)
            procs.append(proc)
            return proc

        try:
            recv = start(link.receiver_ns, ["--role", "recv", "--count", str(count)], rlog)
            rlines = JsonLines(recv, "receiver")
            rlines.expect("ready", match_timeout)
            send = start(link.sender_ns, ["--role", "send", "--count", str(count), "--rate", str(rate),
                                          "--drain", str(drain_s)], slog)
            slines = JsonLines(send, "sender")
            slines.expect("matched", match_timeout)
            rlines.expect("matched", match_timeout)
            t_go = time.monotonic()
            send.stdin.write("go\n")
            send.stdin.flush()
            sampler = threading.Thread(target=sample_frag_memory, daemon=True)
            sampler.start()
            try:
                sent = slines.expect("sent", count / rate + drain_s + 30)
            finally:
                streaming.set()
                sampler.join(15)
            ip_rx, ip_tx = link.snmp(link.receiver_ns), link.snmp(link.sender_ns)
            try:
                recv.stdin.write("stop\n")  # the receiver also stops by itself once it has them all
                recv.stdin.flush()
            except BrokenPipeError:
                pass
            result = rlines.expect("received", 20)
            stream_s = time.monotonic() - t_go
            for proc in procs:
                proc.wait(10)
        except (RuntimeError, TimeoutError, subprocess.TimeoutExpired, OSError) as exc:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
            time.sleep(0.2)
            tails = {name: _tail(log_dir / f"{name}.log") for name in ("sender", "receiver")}
            raise RuntimeError(f"two_hosts trial failed: {exc}\n" + "\n".join(
                f"--- {name} stderr ({log_dir / name}.log):\n{tail}" for name, tail in tails.items())) from exc
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
        injector = link.injector
    if own_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    lat = [v[0] for v in result["received"].values() if v[1]]
    return {"config": config.name, "loss_pct": loss_pct, "loss_injector": injector, "link_rate": link_rate,
            "ipfrag_sysctls": IPFRAG_SYSCTLS if ipfrag else None,
            "sent": sent["sent"], "arrived_whole": len(lat), "bad": result["bad"],
            "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "max_ms": round(max(lat), 1) if lat else None,
            "sender_cpu_s": sent.get("cpu_s"), "receiver_cpu_s": result.get("cpu_s"),
            "sender_ip": ip_tx, "receiver_ip": ip_rx, "receiver_frag_memory_peak": frag_peak[0],
            "stream_s": round(stream_s, 1), "wall_s": round(time.monotonic() - t0, 1),
            "logs": None if own_logs else str(log_dir)}


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# Rows of the README table: (label, shipped profile, receiver ipfrag sysctls)
MATRIX = [
    ("two_machine.xml (64 kB fragments)", "two_machine", False),
    ("two_machine.xml + ipfrag sysctls", "two_machine", True),
    ("lossy_link.xml (1344 B fragments)", "lossy_link", False),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object per trial")
    parser.add_argument("--config", default="lossy_link", help="shipped profile or path (default lossy_link)")
    parser.add_argument("--loss", type=float, default=1.0, help="%% of frames dropped leaving each end (default 1)")
    parser.add_argument("--count", type=int, default=40, help="embeddings to send (default 40)")
    parser.add_argument("--rate", type=float, default=2.0, help="Hz (default 2)")
    parser.add_argument("--fragment", type=int, help="override FragmentSize (bytes)")
    parser.add_argument("--max-message", type=int, help="override MaxMessageSize and MaxRexmitMessageSize (bytes)")
    parser.add_argument("--ipfrag", action="store_true", help=f"apply {IPFRAG_SYSCTLS} in both namespaces")
    parser.add_argument("--matrix", action="store_true", help="the README rows, at each of --losses")
    parser.add_argument("--losses", default="0,1", help="loss %% list for --matrix (default 0,1)")
    parser.add_argument("--link-rate", help="limit each end to this rate with tc tbf, e.g. 1gbit (default: none, "
                                            "a bare veth)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="trials per row and loss, interleaved; the table shows arrivals summed and the "
                             "median of the per-trial p50/p95 (default 1)")


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _summary(label: str, loss: float, trials: list[dict]) -> str:
    import numpy as np

    arrived, sent = sum(t["arrived_whole"] for t in trials), sum(t["sent"] for t in trials)
    p50 = [t["p50_ms"] for t in trials if t["p50_ms"] is not None]
    p95 = [t["p95_ms"] for t in trials if t["p95_ms"] is not None]

    def med(v: list[float]) -> float | None:
        return float(np.median(v)) if v else None

    spread = f" ({min(p50):.0f}-{max(p50):.0f})" if len(p50) > 1 else ""
    return (f"| {label} | {loss:g} % | {arrived}/{sent} | {_fmt(med(p50))}{spread} | {_fmt(med(p95))} | "
            f"{max(t['receiver_frag_memory_peak'] for t in trials) / 1e6:.1f} |")


def run(args: argparse.Namespace) -> int:
    reason = netns_unavailable()
    if reason:
        print(f"two_hosts bench: {reason}", file=sys.stderr)
        return 2
    if args.matrix:
        rows = [(label, config_path(profile), ipf) for label, profile, ipf in MATRIX]
        losses = [float(x) for x in args.losses.split(",")]
    else:
        base = config_path(args.config)
        if args.fragment or args.max_message:
            base = variant(base, Path(tempfile.mkdtemp(prefix="two_hosts_cfg_")), args.fragment, args.max_message)
        rows = [(base.name + (" + ipfrag sysctls" if args.ipfrag else ""), base, args.ipfrag)]
        losses = [args.loss]
    trials: dict[tuple[str, float], list[dict]] = {}
    for _ in range(args.repeat):  # interleaved, so a busy moment on the host hits every row alike
        for loss in losses:
            for label, cfg, ipf in rows:
                r = run_trial(cfg, loss, args.count, args.rate, ipfrag=ipf, link_rate=args.link_rate)
                r["label"] = label
                trials.setdefault((label, loss), []).append(r)
                if args.json:
                    print(json.dumps(r), flush=True)
                else:
                    print(f"  {label} @ {loss:g} %: {r['arrived_whole']}/{r['sent']} whole, "
                          f"p50 {_fmt(r['p50_ms'])} ms, p95 {_fmt(r['p95_ms'])} ms", file=sys.stderr, flush=True)
    if not args.json:
        injectors = sorted({t["loss_injector"] for ts in trials.values() for t in ts} - {"none"}) or ["none"]
        print(f"{args.count} embeddings (3.7 MB) at {args.rate:g} Hz per trial, {args.repeat} trial(s) per row; "
              f"loss injected with {', '.join(injectors)}; link rate {args.link_rate or 'unlimited (bare veth)'}")
        print("| settings | loss each way | arrived whole | p50 ms | p95 ms | peak IP reassembly MB |")
        print("|---|---|---|---|---|---|")
        for label, _, _ in rows:
            for loss in losses:
                print(_summary(label, loss, trials[(label, loss)]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m ivl_embodied.bench.two_hosts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--role", choices=("send", "recv"), help=argparse.SUPPRESS)
    parser.add_argument("--drain", type=float, default=2.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "recv":
        return _receiver(args.count, match_timeout=30)
    if args.role == "send":
        return _sender(args.count, args.rate, args.drain, match_timeout=30)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
