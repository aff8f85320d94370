"""The grading service: ONNX Runtime predictor, FastAPI app, storage, review pages, batch grader.

Never imports torch or `training` (DESIGN.md section 3; a test checks it).
"""
