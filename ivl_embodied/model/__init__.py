"""ivl_embodied.model"""
