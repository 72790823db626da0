"""The plugin's logger: LF's (``lf.lf_logging``), named under LF's root so LF's handler and format apply."""


def get_logger(module_name: str):
    from . import lf

    return lf.lf_logging("llamafactory.minor." + module_name.split("llamafactory_minor.", 1)[-1])
