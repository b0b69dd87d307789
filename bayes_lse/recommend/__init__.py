"""Stage 7, recommend: lesson-sequence ranking over posterior draws and placing a
new student (`sequences`).
"""
