"""refurbgrade's model contract: taxonomy, defect instances, device catalogue, model card, grading rules.

This package root imports no torch, so serving (which must never load torch) can use every contract
module. The network and its ONNX export live in torch-only modules (`model.network`, `model.export`)
that are imported explicitly by training code.
"""

from model.taxonomy import DefectType, DeviceKind, PhotoQuality, View, Zone

__all__ = ["DefectType", "DeviceKind", "PhotoQuality", "View", "Zone"]
