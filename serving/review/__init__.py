"""Quality review (issue 6): review pages under /review, disputes, and the export back into training.

events.py (append-only review events, current state = original + events), queue.py (the queue's SQL),
sessions.py (sessions, cookies, CSRF); the pages under /review: html.py (what they share), signin.py,
pages.py (queue, grading), images.py (photos), actions.py (the reviewer's POSTs); api.py (/v1 disputes
and export), schemas.py (their bodies), export.py (manifest).
"""
