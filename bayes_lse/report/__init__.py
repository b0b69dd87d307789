"""Stage 6, report: matplotlib figures (`plots`) and the self-contained HTML report
(`html`, Jinja2 template in `templates/`).
"""
