"""Stage 1, data: the validated interaction log (`log`), readers of public formats
(`readers`) and the blog's toy logs (`examples`).
"""
