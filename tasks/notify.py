"""Deploy notifications: a JSON POST to WEBHOOK_URL (redacted like everything else). A failing
webhook never fails a deploy; it is reported."""
from __future__ import annotations

import json

from commands.record import utc_now
from tasks.messages import operator
from tasks.session import Session

NOTIFY_TIMEOUT = 5.0      # seconds, in total: a hung webhook must not hold up a deploy


def notify(s: Session, event: str, data: dict | None = None) -> tuple[bool, str]:
    st = s.settings
    if not st.webhook_url:
        return False, "not configured (WEBHOOK_URL is empty)"
    if s.dry:
        return True, f"[dry] would POST {event} to the webhook"
    payload = {"service": "ai-doc-qa", "event": event, "stage": st.stage, "host": s.host, "who": operator(),
               "at": utc_now(), **(data or {})}
    body = json.dumps(s.redactor.obj(payload), sort_keys=True)
    a = s.request("POST", st.webhook_url, deadline=NOTIFY_TIMEOUT, data=body.encode(),
                  headers={"Content-Type": "application/json"})
    if a.error:
        return False, f"webhook POST failed: {a.error}"
    if a.ok:
        return True, f"posted {event} (HTTP {a.status})"
    return False, f"webhook answered HTTP {a.status}"
