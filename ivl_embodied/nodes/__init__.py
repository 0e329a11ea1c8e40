"""ivl_embodied.nodes"""
