"""The app's registry database.

    from webui.db import get_db
    with get_db().read() as s:            # GET: a read-only transaction
        version = workflow.view_version(s, current_user.id, version_id)
        return render_template(...)       # render inside the block: lazy loads still work
    with get_db().unit_of_work() as s:    # POST: one transaction, audit entry included
        workflow.publish(s, current_user.id, version_id)
"""

from __future__ import annotations

from flask import current_app

from registry.db import Database

EXTENSION = "tanpu.db"


def get_db() -> Database:
    return current_app.extensions[EXTENSION]
