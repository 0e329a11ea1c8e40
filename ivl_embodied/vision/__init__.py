"""Camera side (edge GPU): tiling, the InternViT encoder, the Visual Resolution Router and the
projectors that turn a camera frame into LLM-space visual embeddings (:mod:`.encoder`)."""
