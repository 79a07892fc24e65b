"""SoftRas Blender extension: one reference image to a coloured mesh in the scene (bpy glue around ``softras``).

Registration only. Importing and registering never imports torch or the engine; see :mod:`.engine` for how the
engine is found (vendored beside this file in the extension build, else installed) and :mod:`.deps` for its
dependencies.
"""

from __future__ import annotations

import bpy
from bpy.app.handlers import persistent

from . import deps, engine, operators, prefs, props, runner, ui

_CLASSES = (props.SoftRasSceneProps, prefs.SoftRasPreferences, *operators.CLASSES, *ui.CLASSES)


@persistent
def _reset_job_state(_file: str) -> None:
    """A file saved while a job ran must not come back showing it as running."""
    for scene in bpy.data.scenes:
        scene.softras.running = False


def register() -> None:
    deps.activate()
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.softras = bpy.props.PointerProperty(type=props.SoftRasSceneProps)
    bpy.app.handlers.load_post.append(_reset_job_state)


def unregister() -> None:
    runner.stop_all()
    operators.stop_install(bpy.context)
    if _reset_job_state in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_reset_job_state)
    del bpy.types.Scene.softras
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
    engine.unload()
    deps.deactivate()
