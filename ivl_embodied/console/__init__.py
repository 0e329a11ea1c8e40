"""The operator console: a web page to type tasks, watch them and the camera, cancel and e-stop.

:mod:`~ivl_embodied.console.state` holds what it shows and checks what a browser asks (ROS-free);
:mod:`~ivl_embodied.console.server` serves it (aiohttp, one websocket); the node that joins it to the
graph is :mod:`ivl_embodied.nodes.console_node` (``ivl-embodied console``).
"""
