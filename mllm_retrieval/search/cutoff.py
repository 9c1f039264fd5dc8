"""When a meaning-only result (no query word in its text) is shown by `mllmret search`, the page and the demo.

It must be at least MIN_SIMILARITY similar to the query (cosine) and at least MIN_RELATIVE times as similar
as the query's most similar image. Chosen with bench/calibrate_cutoff.py on the COCO and VOC evaluation sets
(see the README, "Keyword, semantic and hybrid search"); the rest is one flag or button away.
"""

MIN_SIMILARITY = 0.4
MIN_RELATIVE = 0.7
