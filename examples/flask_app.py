"""A small Flask API instrumented by the trimtab agent (WSGI), served by gunicorn.

Run it (from the repository root; three sync workers sharing config and journal)::

    TRIMTAB_TOKENS=alice:write:change-me TRIMTAB_STATE_DIR=/tmp/trimtab-flask gunicorn -w 3 -b 127.0.0.1:8000 --chdir examples flask_app:app

Then ``curl 127.0.0.1:8000/items/7``, ``curl 127.0.0.1:8000/metrics`` and
``curl -H 'authorization: Bearer change-me' 127.0.0.1:8000/_trimtab/config``. Watch it
from the cockpit with a targets file naming ``http://127.0.0.1:8000/metrics``.

The agent's part is the last two lines: everything above is a plain Flask app.
"""

from __future__ import annotations

import os
import time

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/items/<int:id>")
def item(id: int):  # noqa: A002 - the URL rule names it id
    time.sleep(0.01)  # a database read, say
    response = jsonify({"id": id, "name": f"item {id}", "worker": os.getpid()})
    response.headers["Cache-Control"] = "public, max-age=60"  # cacheable by the agent
    return response


@app.get("/search")
def search():
    return jsonify({"q": request.args.get("q", ""), "hits": 3, "worker": os.getpid()})


@app.post("/orders")
def order():
    return jsonify({"order": 1, "items": request.get_json(silent=True) or []}), 201


from trimtab.agent.flask import instrument  # noqa: E402 - the agent's part, kept apart

instrument(app, instance=os.environ.get("TRIMTAB_INSTANCE", "flask-api"))
