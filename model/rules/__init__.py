"""The grading rules engine: versioned YAML standards turn measured defect instances into grades."""

from model.rules.calibration import GradeCalibration, fit_grade_calibration
from model.rules.engine import GradeResult, grade, grade_probabilities
from model.rules.schema import Standard, StandardError, list_standards, load_standard, load_standard_file

__all__ = [
    "GradeCalibration",
    "GradeResult",
    "Standard",
    "StandardError",
    "fit_grade_calibration",
    "grade",
    "grade_probabilities",
    "list_standards",
    "load_standard",
    "load_standard_file",
]
