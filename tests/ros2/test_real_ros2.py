"""Our stack against a real ROS 2 (Jazzy's rclpy on Fast DDS): the rclpy backend run for real,
mixed graphs, what ROS 2 tools see of a Cyclone-backed graph, ROS arguments, ROS parameters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("mujoco")
pytestmark = pytest.mark.ros2


def _demo(python: str, env: dict, out, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "ivl_embodied.cli", "demo", "--out", str(out), *extra], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_every_node_on_real_rclpy_completes_a_task(ros2, tmp_path):
    """sim, vision, planner (the default planner) and executor, each on rclpy + Fast DDS."""
    # half real time: a loaded 2-core machine then still delivers each command well within its robot-time budget
    res = _demo(ros2.python, ros2.env, tmp_path, "--tasks", "1", "--require-success", "--realtime-factor", "0.5")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-5000:]
    for name in ("sim_node", "vision_node", "planner_node", "executor_node"):
        assert f"{name} running on rclpy" in out, out[-3000:]
    (task,) = json.loads((tmp_path / "summary.json").read_text())["tasks"]
    assert task["ok"] and task["goal_reached"] and task["status"] == "SUCCEEDED"


@pytest.mark.slow
def test_real_rclpy_sees_a_cyclone_graph_and_a_mixed_graph_completes_a_task(ros2, cyclone_here, tmp_path):
    """sim and vision on our Cyclone backend, planner and executor on rclpy (Fast DDS), the operator
    on Cyclone in this process; a plain rclpy program lists the four nodes with their endpoints and
    decodes every topic they publish while the task runs."""
    from ivl_embodied.demo import Driver, run_task
    from ivl_embodied.sim.tasks import load_split

    cyc = [ros2.node("ivl_embodied.nodes.sim_node", "-p", "split:=heldout", "-p", "task_index:=1", cyclone=True),
           ros2.node("ivl_embodied.nodes.vision_node", cyclone=True)]
    rcl = [ros2.node(f"ivl_embodied.nodes.{n}") for n in ("planner_node", "executor_node")]
    probe = ros2.probe("graph", "/sim_node", "/vision_node", "/planner_node", "/executor_node", "--decode")
    driver = None
    try:
        line = probe.stdout.readline().strip()
        assert line == "READY", (line, probe.communicate(timeout=30), ros2.stop(*cyc, *rcl))
        driver = Driver()
        task = load_split("heldout")[1]
        result = run_task(driver, task, "mixed1", "default", timeout=240)
    finally:
        if driver is not None:
            driver.node.shutdown()
        logs = ros2.stop(*cyc, *rcl)
    assert result["ok"], (result["status"], result["message"], logs)
    report = ros2.result(probe)
    nodes = report["nodes"]
    assert set(nodes) == {"/sim_node", "/vision_node", "/planner_node", "/executor_node"}
    assert nodes["/executor_node"]["publishers"]["/arm_controller/joint_trajectory"] == [
        "trajectory_msgs/msg/JointTrajectory"]
    assert nodes["/executor_node"]["subscriptions"]["/ivl/plan"] == ["ivl_embodied_msgs/msg/ActionPlan"]
    assert nodes["/vision_node"]["publishers"]["/ivl/visual_embeddings"] == ["ivl_embodied_msgs/msg/VisualEmbedding"]
    assert "/rosout" in nodes["/sim_node"]["publishers"]  # our Cyclone nodes log on /rosout too
    decoded = report["decoded"]
    # Sent only when asked (the planner asks for the mirrored view when a plan is refused; this task's
    # first plan is not): same types as /ivl/visual_embeddings and a std_msgs/Header.
    # The ExecuteTask action's feedback and status exist while a goal runs (this task came as a topic); the
    # executor sends on /ivl/task only to ask for an alternative or a retry.
    on_demand = {"/ivl/vision/mirror_request", "/ivl/visual_embeddings_mirrored", "/parameter_events",
                 "/ivl/execute_task/_action/feedback", "/ivl/execute_task/_action/status", "/ivl/task"}
    assert on_demand - {"/parameter_events"} <= set(report["published_topics"])
    missing = sorted(set(report["published_topics"]) - set(decoded) - on_demand)
    assert not missing, f"published but never decoded by rclpy: {missing}"
    assert decoded["/camera/color/image_raw"]["first"] == [640, 480, "rgb8"]
    assert decoded["/camera/depth/image_raw"]["first"][:2] == [640, 480]
    tokens, hidden, nbytes = decoded["/ivl/visual_embeddings"]["first"]
    assert nbytes == tokens * hidden * 2  # bf16


@pytest.mark.slow
def test_real_rclpy_lists_the_four_nodes_of_a_cyclone_graph(ros2):
    """`ros2 node list` / `ros2 node info` as a real rclpy sees our Cyclone backend's graph."""
    mods = ("sim_node", "vision_node", "planner_node", "executor_node")
    procs = [ros2.node(f"ivl_embodied.nodes.{m}", cyclone=True) for m in mods]
    try:
        report = ros2.result(ros2.probe("graph", *(f"/{m}" for m in mods)), timeout=180)
    finally:
        logs = ros2.stop(*procs)
    assert report["ok"], (report, logs)
    nodes = report["nodes"]
    assert nodes["/planner_node"]["subscriptions"]["/ivl/visual_embeddings"] == [
        "ivl_embodied_msgs/msg/VisualEmbedding"]
    assert nodes["/planner_node"]["publishers"]["/ivl/plan"] == ["ivl_embodied_msgs/msg/ActionPlan"]
    assert nodes["/sim_node"]["publishers"]["/camera/color/image_raw"] == ["sensor_msgs/msg/Image"]
    assert nodes["/sim_node"]["subscriptions"]["/arm_controller/joint_trajectory"] == [
        "trajectory_msgs/msg/JointTrajectory"]
    assert nodes["/executor_node"]["subscriptions"]["/ivl/estop"] == ["std_msgs/msg/Bool"]
    for name in nodes:
        assert "/rosout" in nodes[name]["publishers"], name


def test_ros_arguments_rename_namespace_and_remap_on_both_backends(ros2, tmp_path):
    """`-r __ns:=/robot1 -r __node:=... -r joint_states:=/arm/joint_states`: a real rclpy sees each
    executor under its namespace and name, on /robot1/... topics and the remapped one."""
    args = ("-r", "__ns:=/robot1", "-r", "joint_states:=/arm/joint_states", "--log-level", "debug")
    procs = [ros2.node("ivl_embodied.nodes.executor_node", *args, "-r", "__node:=executor_cyclone", cyclone=True),
             ros2.node("ivl_embodied.nodes.executor_node", *args, "-r", "__node:=executor_rclpy")]
    probe = ros2.probe("graph", "/robot1/executor_cyclone", "/robot1/executor_rclpy")
    try:
        report = ros2.result(probe, timeout=120)
    finally:
        logs = ros2.stop(*procs)
    assert report["ok"], (report, logs)
    for name in ("/robot1/executor_cyclone", "/robot1/executor_rclpy"):
        subs, pubs = report["nodes"][name]["subscriptions"], report["nodes"][name]["publishers"]
        assert "/robot1/ivl/plan" in subs and "/arm/joint_states" in subs, (name, subs)
        assert "/joint_states" not in subs and "/ivl/plan" not in subs
        assert "/robot1/ivl/task_status" in pubs and "/robot1/arm_controller/joint_trajectory" in pubs, pubs
        assert "/tf_static" in subs  # absolute names stay as they are
    assert "[DEBUG]" in logs  # --log-level debug


def test_unknown_ros_arguments_are_an_error(ros2):
    for python, env in ((sys.executable, ros2.cyclone_env), (ros2.python, ros2.env)):
        res = subprocess.run([python, "-m", "ivl_embodied.nodes.executor_node", "--ros-args", "--frobnicate"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and "'--frobnicate'" in res.stderr, res.stderr[-2000:]
        res = subprocess.run([python, "-m", "ivl_embodied.nodes.executor_node", "stray"], env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and "'stray'" in res.stderr, res.stderr[-2000:]


def test_parameters_of_an_rclpy_node_are_ros_parameters(ros2):
    """`ros2 param get/set` through the node's parameter services; /parameter_events flows; a value
    of the wrong type is refused."""
    node = ros2.node("ivl_embodied.nodes.executor_node", "-p", "max_attempts:=3")
    try:
        report = ros2.result(ros2.probe("params", "/executor_node", "max_attempts", "2", '"many"'), timeout=120)
    finally:
        logs = ros2.stop(node)
    assert report["ok"], (report, logs)
    assert report["before"] == 3 and report["set_ok"] and report["after"] == 2
    assert not report["bad_ok"] and "INTEGER" in report["bad_reason"], report  # rclpy's own type check
    assert {"max_attempts", "plan_topic", "use_sim_time"} <= set(report["names"])
    assert ["max_attempts"] in report["events_changed"]


@pytest.mark.slow
def test_tasks_as_a_ros2_action_complete_and_a_cancel_stops_the_arm(ros2):
    """A real rclpy ActionClient: one goal runs to a verified success with feedback; another is
    cancelled while its first step moves the arm, and after the cancel is accepted no trajectory
    but the hold is commanded and the arm stays still."""
    from ivl_embodied.sim.tasks import load_split

    tasks = load_split("heldout")
    # the simulator's /clock is the graph's time, as the launcher sets it for a graph with the simulator: a
    # restarted simulator's clock goes back, and the planner refuses the last scene's embeddings (stamped
    # ahead of it) until the new scene's are encoded
    sim_time = ("-p", "use_sim_time:=true")
    resident = [ros2.node(f"ivl_embodied.nodes.{n}", *sim_time) for n in ("vision_node", "planner_node",
                                                                           "executor_node")]

    def start_sim(index: int):
        return ros2.node("ivl_embodied.nodes.sim_node", "-p", "split:=heldout", "-p", f"task_index:={index}",
                         *sim_time)

    sim = start_sim(1)
    try:
        done = ros2.result(ros2.probe("action", tasks[1].instruction), timeout=400)
        ros2.stop(sim)
        # the operator CLI on rclpy sends its task as a goal too, and prints the feedback, at the instant the
        # simulator restarts: the executor's camera subscription can match the new simulator seconds after the
        # vision node's (Fast DDS discovery); a plan made from a frame the executor never received is planned
        # again from a frame it has. The simulator restarts into the same scene: a restart into another scene can
        # still mix the two scenes' views at that instant (open: the README's "Known gap")
        sim = start_sim(1)
        operator = subprocess.run([ros2.python, "-m", "ivl_embodied.nodes.operator_cli", tasks[1].instruction],
                                  env=ros2.env, capture_output=True, text=True, timeout=400)
        ros2.stop(sim)
        sim = start_sim(0)
        cancelled = ros2.result(ros2.probe("action", tasks[0].instruction, "--cancel-at-step", "1"), timeout=400)
    finally:
        logs = ros2.stop(sim, *resident)
    assert done["ok"] and done["status"] == 4, (done, logs)  # action_msgs GoalStatus.STATUS_SUCCEEDED
    assert done["success"] and done["verified"] and done["task_id"].startswith("goal_")
    states = [f[0] for f in done["feedback"]]
    assert "PLANNING" in states and "EXECUTING" in states, states
    assert any(f[0] == "EXECUTING" and f[1] >= 1 and f[3] for f in done["feedback"])  # step and plan
    assert cancelled["ok"] and cancelled.get("cancel_accepted"), (cancelled, logs)
    assert cancelled["status"] == 5 and cancelled["reason"] == "cancelled", cancelled  # STATUS_CANCELED
    assert not cancelled["success"]
    # after the acceptance: at most the hold (sent before it, possibly heard after it), nothing else
    assert all(n == 1 and speed == 0.0 for n, speed in cancelled["trajectories_after_cancel"]), cancelled
    assert cancelled["max_speed_1s_after"] is not None and cancelled["max_speed_1s_after"] < 0.05, cancelled
    assert cancelled["motion_after_1s"] < 0.01, cancelled  # rad: the arm stays where it stopped
    assert operator.returncode == 0, operator.stdout[-3000:] + operator.stderr[-3000:]
    assert "[PLANNING]" in operator.stdout and "step 1/2" in operator.stdout, operator.stdout
    assert "[SUCCEEDED]" in operator.stdout.splitlines()[-1], operator.stdout
