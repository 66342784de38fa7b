"""The bundled scenarios: the transcript format users script clusters with (transcript.py), the
bundled transcripts (transcripts/), and the seed walk-through's measured outcome (seed.py)."""
