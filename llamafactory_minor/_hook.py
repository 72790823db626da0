"""The start-up hook: patch LLaMA-Factory lazily, when (and only when) LF itself is imported.

The installed ``llamafactory_minor.pth`` runs ``install()`` in every Python process of the
environment (so ``llamafactory-cli train``, its torchrun workers and the web UI's training
subprocess all see the plugin without importing anything). ``install()`` imports nothing heavy: it
puts a finder on ``sys.meta_path`` that waits for the LF modules listed in ``PATCHES`` and, right
after each one has executed, calls the matching patch function in ``llamafactory_minor.integration``.

Switch it off with ``LLAMAFACTORY_MINOR_DISABLE=1`` (also disables ``import llamafactory_minor``'s
activation); LF then runs unpatched, and only a guard (``DISABLED_GUARD``) refuses configs that need the plugin.
"""

import importlib
import importlib.abc
import sys

from .env import DISABLE_ENV, disabled  # noqa: F401  (DISABLE_ENV re-exported)

# LF module -> "module:function" applied right after the LF module has been executed.
PATCHES = {
    "llamafactory.hparams.parser": "llamafactory_minor.integration.arguments:patch_parser",
    "llamafactory.data.loader": "llamafactory_minor.integration.data:patch_loader",
    "llamafactory.train.tuner": "llamafactory_minor.integration.dispatch:patch_tuner",
    "llamafactory.extras.constants": "llamafactory_minor.integration.webui:patch_constants",
    "llamafactory.webui.components.train": "llamafactory_minor.integration.webui:patch_train_component",
    "llamafactory.webui.runner": "llamafactory_minor.integration.webui:patch_runner",
    "llamafactory.webui.locales": "llamafactory_minor.integration.webui:patch_locales",
    "llamafactory.train.callbacks": "llamafactory_minor.integration.webui:patch_callbacks",
    "llamafactory.launcher": "llamafactory_minor.integration.dispatch:patch_launcher",
    "llamafactory.v1.launcher": "llamafactory_minor.integration.dispatch:patch_v1_launcher",
}

# With LLAMAFACTORY_MINOR_DISABLE=1 only this guard is installed: it checks the raw config (no patching of
# LF's behaviour) and stops a config that names a plugin-only stage, loss or key, which LF would otherwise
# train as something else (e.g. `pref_loss: minordpo` as plain sigmoid DPO) or reject with a traceback.
DISABLED_GUARD = {
    "llamafactory.hparams.parser": "llamafactory_minor.integration.validate:guard_disabled_parser",
    "llamafactory.launcher": "llamafactory_minor.integration.dispatch:patch_launcher",
}

_applied = set()


def _targets() -> dict:
    return DISABLED_GUARD if disabled() else PATCHES


def _apply(name: str, module) -> None:
    if name in _applied:
        return
    _applied.add(name)
    target = _targets()[name]
    mod_name, func_name = target.split(":")
    getattr(importlib.import_module(mod_name), func_name)(module)


class _Loader(importlib.abc.Loader):
    def __init__(self, loader, name):
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _apply(self._name, module)

    def __getattr__(self, item):  # get_source, get_code, is_package, ... for tools that ask
        return getattr(self._loader, item)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _targets() or fullname in _applied:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader, fullname)
                return spec
        return None


def install() -> None:
    """Register the lazy hook (idempotent); patch the LF modules that are already imported.

    Disabled (``LLAMAFACTORY_MINOR_DISABLE=1``): only the raw-config guard ``DISABLED_GUARD`` is registered.
    """
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    for name in _targets():
        if name in sys.modules:
            _apply(name, sys.modules[name])
