"""SoftRas Blender extension."""
