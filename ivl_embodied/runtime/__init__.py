"""ivl_embodied.runtime"""
