"""Quality review (issue 6): review pages under /review, disputes, and the export back into training.

events.py (append-only review events, current state = original + events, the queue), sessions.py
(sign-in, cookies, CSRF), web.py (the pages), api.py (/v1 disputes and export), export.py (manifest).
"""
