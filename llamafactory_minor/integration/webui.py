"""LlamaBoard additions (issue 5). Until they land, the web UI is LF's own."""


def patch_constants(module) -> None:
    pass


def patch_train_component(module) -> None:
    pass


def patch_runner(module) -> None:
    pass


def patch_locales(module) -> None:
    pass
