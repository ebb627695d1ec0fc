"""Deploy notifications: a JSON POST to WEBHOOK_URL (redacted like everything else). A failing
webhook never fails a deploy; it is reported."""
from __future__ import annotations

import json

import requests

from commands.record import utc_now
from tasks.session import Session, operator


def notify(s: Session, event: str, data: dict | None = None) -> tuple[bool, str]:
    st = s.settings
    if not st.webhook_url:
        return False, "not configured (WEBHOOK_URL is empty)"
    if s.dry:
        return True, f"[dry] would POST {event} to the webhook"
    payload = {"service": "ai-doc-qa", "event": event, "stage": st.stage, "host": s.host, "who": operator(),
               "at": utc_now(), **(data or {})}
    body = json.dumps(s.redactor.obj(payload), sort_keys=True)
    try:
        r = requests.post(st.webhook_url, data=body.encode(), headers={"Content-Type": "application/json"},
                          timeout=5)
    except requests.RequestException as exc:
        return False, f"webhook POST failed: {exc.__class__.__name__}"
    if 200 <= r.status_code < 300:
        return True, f"posted {event} (HTTP {r.status_code})"
    return False, f"webhook answered HTTP {r.status_code}"
