"""Explaining: Grad-CAM maps (``gradcam``), drawing them as overlays (``overlay``), and the occlusion
check of where they point (``occlusion``)."""
