"""The LLaMA-Factory glue: the patch functions the start-up hook applies (``llamafactory_minor._hook.PATCHES``).

Every LF / TRL / transformers internal these modules touch is named in ``llamafactory_minor.lf`` (the LF
boundary, checked by ``tests/unit/test_lf_boundary.py``); every objective they know of comes from
``llamafactory_minor.registry``.

- ``arguments.py``: LF's ``FinetuningArguments`` subclassed with the registry's keys and choices;
- ``validate.py``: the one validation entry point (CLI and LlamaBoard);
- ``dispatch.py``: plugin objectives run where LF calls ``run_sft`` / ``run_dpo`` (their carrier stages);
- ``data.py``: dataset errors and the key columns for score joins;
- ``webui.py``: LlamaBoard;  ``progress.py``: the scoring pass's log and progress bar.
"""

from importlib import metadata  # noqa: F401  (tests patch metadata.version)

from ..errors import PluginError  # noqa: F401  (re-exported: the plugin's configuration error)
from ..lf import SUPPORTED_LF, SUPPORTED_LF_TEXT, activate, check_lf_version  # noqa: F401
from ..log import get_logger  # noqa: F401
