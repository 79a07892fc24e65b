"""Data-making tools: training views and procedural shape packs, written to ``cache/``.

Repository tools, not part of the engine or the Blender extension. Run them from the repository root as
``python -m datagen.<tool>``.
"""
