"""The robot side of the graph as processes: sim_node (MuJoCo behind ROS topics) and
executor_node (safety gate → depth grounding → skills → JointTrajectory), driven by an
ActionPlan from this process. The task counts only if the simulator's own success
predicate says so."""

from __future__ import annotations

import subprocess

import pytest

from ivl_embodied.transport import msg_type

pytest.importorskip("mujoco")


def _oracle_plan(task, robot="ivl_arm6"):
    """The oracle plan for the scene sim_node builds (same task record, settled the same way)."""
    from ivl_embodied.sim.oracle import oracle_plan
    from ivl_embodied.sim.tasks import scene_for
    from ivl_embodied.sim.world import SimWorld, sim_arm

    world = SimWorld(scene_for(task), sim_arm(robot))
    try:
        world.step(int(0.2 / float(world.model.opt.timestep)))
        return oracle_plan(world, task.goal)
    finally:
        world.close()


def _start(python, env, module, *params):
    argv = [python, "-m", module, "--ros-args"]
    for p in params:
        argv += ["-p", p]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _stop(procs):
    for p in procs:
        if p.poll() is None:
            p.send_signal(2)
    return [p.communicate(timeout=30)[0] for p in procs]


@pytest.mark.slow
@pytest.mark.parametrize("task_index, robot, urdf", [
    (0, "ivl_arm6", False),  # val split: a place_in
    # a UR5e with a Robotiq 2F-85 (val split: a push_to / stack): the executor reads the gripper's opening from
    # its driven knuckle joint in /joint_states, through the robot file's opening table
    (1, "ur5e", False),
    # the Panda, the executor taking its description from the URDF on /robot_description (franka_description's,
    # as robot_state_publisher publishes it), the simulator from its MJCF
    (1, "panda", True),
])
def test_executor_and_sim_nodes_complete_a_task(loopback_dds, python, operator_plan, task_index, robot, urdf):
    from pathlib import Path

    from ivl_embodied.sim.tasks import load_split
    from ivl_embodied.transport import QosProfile, make_node

    task = load_split("val")[task_index]
    plan = _oracle_plan(task, robot)
    node = make_node("test_operator")
    if urdf:  # a robot_state_publisher's /robot_description: reliable, transient local, published once
        description = node.create_publisher("std_msgs/msg/String", "/robot_description",
                                            QosProfile("reliable", 1, "transient_local"))
        description.publish(msg_type("std_msgs/msg/String")(
            data=(Path(__file__).parents[1] / "data" / "panda_arm_hand.urdf").read_text()))
    procs = [
        _start(python, loopback_dds, "ivl_embodied.nodes.sim_node", "split:=val", f"task_index:={task_index}",
               "realtime_factor:=3.0", f"robot:={robot}"),
        _start(python, loopback_dds, "ivl_embodied.nodes.executor_node", f"robot:={robot}",
               *(["robot_description_topic:=/robot_description"] if urdf else [])),
    ]
    failure = None
    S = msg_type("ivl_embodied_msgs/msg/TaskStatus")
    try:
        last, reached = operator_plan(node, plan, task.instruction)
        assert last.state == S.STATE_SUCCEEDED, last.message
        assert reached, "sim says the goal is not met"
    except (AssertionError, TimeoutError) as e:
        failure = e
    finally:
        node.shutdown()
        outs = _stop(procs)
    assert failure is None, f"{failure}\n--- sim_node ---\n{outs[0][-3000:]}\n--- executor_node ---\n{outs[1][-3000:]}"
    assert all(p.returncode == 0 for p in procs), outs
    if urdf:
        assert "arm panda from the URDF on /robot_description" in outs[1], outs[1][-2000:]
