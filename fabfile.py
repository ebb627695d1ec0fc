"""ai-doc-qa deployment runbook as Fabric tasks. Wiring only: see tasks/ (one module per runbook
section) and README.md. `fab --list` shows every task; `fab --help TASK` its options."""
from invoke import Collection

from tasks.checklist import checklist
from tasks.cli import exit_2_on_usage_errors
from tasks.configtask import config, version
from tasks.daily import exec_task, logs, restart
from tasks.deploy import deploy
from tasks.diagnose import check_db, check_model_server, check_restarts, diagnose
from tasks.escalation import contacts
from tasks.locktasks import lock, unlock
from tasks.migrate import migrate
from tasks.plan import plan
from tasks.prepare import env_diff_task, prepare
from tasks.prune import prune
from tasks.rollback import rollback
from tasks.services import services
from tasks.status import history, status
from tasks.verify import smoke, verify

ns = Collection(
    deploy, checklist, prepare, env_diff_task, migrate, services, verify, smoke, rollback,
    diagnose, check_restarts, check_db, check_model_server, contacts,
    status, history, lock, unlock, plan,
    logs, exec_task, restart, prune, config, version,
)

# fab exits 1 on a command-line usage error; this tool documents 2 (see tasks/cli.py for how).
exit_2_on_usage_errors()
