"""Escalation Contacts: the runbook's table, from the stage config (CONTACT_*). Every failure
block prints the row that matches its kind."""
from __future__ import annotations

from tasks import ui
from tasks.base import Offline, operator_task
from tasks.messages import ESCALATION_LABEL


@operator_task(connects=False)
def contacts(o: Offline):
    """Escalation Contacts: who to call for database, infrastructure and security failures."""
    rows = []
    for kind in ("database", "infrastructure", "security"):
        c = o.settings.contact(kind)
        rows.append([ESCALATION_LABEL[kind], c.team, c.response, c.reach])
    ui.table(rows, ["issue", "contact", "response time", "how to reach"])
    ui.say("Failures on a service print the matching row: migration and database failures -> database; a changed SSH host key -> security; "
           "everything else -> infrastructure. Setup errors (configuration, an unknown host key on first contact, a host name that does not "
           "resolve, authentication, a refused connection) page nobody: the block says what to fix.")
