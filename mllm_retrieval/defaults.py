"""Captioning defaults, each chosen by measurement (bench/caption_cost.py; README "How long will my
library take?"). A module of constants only, so the CLI can show them without importing a model stack."""

# Tiles per model call. Tiles of several photos share a batch. On the SmolVLM-256M shape (2-core CPU,
# float32, full + 2x2 tiles, 32 tokens) on a quiet machine: 37.4 s/photo at batch 1, 23.8 at 8, 20.3 at
# 16, for 116 MB more peak memory than batch 8 (see README).
CAPTION_BATCH = 16

# The default prompt's answer: <= 20 tags and a caption of one or two sentences. Two sentences of
# LLaVA-1.5 descriptions (vlm_captions, 2,000 rows) are 33 words at the median, 48 at p99; with 20 tags
# that is about 130 tokens at p99. Generation stops earlier once the answer is complete
# (captioners/stopping.py), so this bounds only answers that never end.
MAX_NEW_TOKENS = 160
