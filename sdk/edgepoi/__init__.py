"""edgepoi: agent firmware SDK for small devices (portable core, MicroPython and CPython)."""
__version__ = "0.1.0"


def unload(name):
    """Forget module ``name`` (code needed only to set something up) so that its functions, tables and
    constants can be garbage collected; a later import loads it again. Small heaps call this after
    start-up. The module's qstrs (interned names) stay: MicroPython never frees those."""
    import sys
    sys.modules.pop(name, None)
    pkg, _, attr = name.rpartition(".")
    parent = sys.modules.get(pkg) if pkg else None
    if parent is not None and attr in dir(parent):
        delattr(parent, attr)
