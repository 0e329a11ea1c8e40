"""ament_python package ``ivl_embodied`` (also pip-installable without ROS 2)."""

import shutil
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# Top-level files the package reads at run time (ivl_embodied/resources.py: SHARED): an installed
# package carries copies under ivl_embodied/_share/, so it runs without the source tree.
SHARED = ("launch/graph.yaml", "config/ivl_embodied.yaml", "config/robots", "ivl_embodied_msgs/msg")


class BuildWithShared(build_py):
    def run(self):
        super().run()
        root = Path(__file__).resolve().parent
        for rel in SHARED:
            src, dst = root / rel, Path(self.build_lib) / "ivl_embodied" / "_share" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)

PACKAGE = "ivl_embodied"

NODES = {
    # console script -> module:main ; one per node (ROS 2 convention)
    "vision_node": "ivl_embodied.nodes.vision_node:main",
    "planner_node": "ivl_embodied.nodes.planner_node:main",
    "executor_node": "ivl_embodied.nodes.executor_node:main",
    "sim_node": "ivl_embodied.nodes.sim_node:main",
    "operator": "ivl_embodied.nodes.operator_cli:main",
    "recorder_node": "ivl_embodied.nodes.recorder_node:main",
    "console_node": "ivl_embodied.nodes.console_node:main",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["tests", "tests.*"]),
    package_data={PACKAGE: ["default_planner/*/*", "transport/cyclonedds/*.xml", "transport/fastdds/*.xml",
                             "sim/assets/*.xml", "sim/assets/tasks/*.jsonl",
                             "sim/assets/panda/*", "sim/assets/ur5e/*",
                             "console/static/*"]},
    cmdclass={"build_py": BuildWithShared},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py") + ["launch/graph.yaml"]),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/robots", glob("config/robots/*.yaml")),
        (f"share/{PACKAGE}/msg", glob("ivl_embodied_msgs/msg/*.msg")),
        (f"share/{PACKAGE}/sim", glob("ivl_embodied/sim/assets/*.xml")),
        (f"share/{PACKAGE}/sim/tasks", glob("ivl_embodied/sim/assets/tasks/*.jsonl")),
        (f"share/{PACKAGE}/sim/gazebo", glob("sim/gazebo/*.yaml")),
        (f"share/{PACKAGE}/trt_engines", glob("trt_engines/*.md") + glob("trt_engines/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,  # MuJoCo and the loaders read package data as real files
    maintainer="ivl_embodied maintainers",
    maintainer_email="maintainers@ivl-embodied.dev",
    description="ROS 2 embodied-agent stack on InternVL3.5's ideas (DvD, ViR, Cascade RL).",
    license="Apache-2.0",
    python_requires=">=3.10",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [f"{name} = {target}" for name, target in NODES.items()]
        + ["ivl-embodied = ivl_embodied.cli:main"],
    },
)
